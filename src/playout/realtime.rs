//! The null and wav outputs: a cpal custom device with no hardware behind it that still keeps
//! real time (48 kHz stereo f32, 10 ms per callback, paced by `pacer`), discarding the
//! audio or writing it to a 16-bit WAV file.
//!
//! ALSA's own `null` and `file` plugins run hundreds of times faster than real time, so a test or
//! a demo on them says nothing about timing; this device's timing is honest.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::pacer::{PacedConfig, PacedStream};
use cpal::platform::CustomDevice;
use cpal::traits::DeviceTrait;
use cpal::{
    Data, DeviceDescription, DeviceDescriptionBuilder, DeviceDirection, DeviceId, Error, ErrorKind,
    FrameCount, InputCallbackInfo, OutputCallbackInfo, SampleFormat, StreamConfig,
    SupportedBufferSize, SupportedStreamConfig, SupportedStreamConfigRange,
};

/// The only rate the null and wav devices offer; rodio resamples every source to it.
pub const SAMPLE_RATE: u32 = 48_000;
/// The only channel count the null and wav devices offer.
pub const CHANNELS: u16 = 2;

/// How often (in frames: one second) a wav output rewrites its header, so the file is readable
/// while it grows.
const WAV_FLUSH_FRAMES: usize = SAMPLE_RATE as usize;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Capture {
    Discard,
    Wav(PathBuf),
}

/// A real-time device without hardware. Cheap to clone; each stream built from it starts its
/// own pacing thread (and, for wav, creates or truncates the file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RealtimeDevice {
    output: String,
    capture: Capture,
}

impl RealtimeDevice {
    pub(super) fn null(output: &str) -> Self {
        RealtimeDevice {
            output: output.to_owned(),
            capture: Capture::Discard,
        }
    }

    pub(super) fn wav(output: &str, path: PathBuf) -> Self {
        RealtimeDevice {
            output: output.to_owned(),
            capture: Capture::Wav(path),
        }
    }

    pub(super) fn into_cpal(self) -> cpal::Device {
        cpal::Device::from(CustomDevice::from_device(self))
    }

    fn label(&self) -> String {
        match &self.capture {
            Capture::Discard => format!("hokrajai null ({})", self.output),
            Capture::Wav(path) => format!("hokrajai wav {} ({})", path.display(), self.output),
        }
    }

    fn buffer_size() -> SupportedBufferSize {
        let frames = FrameCount::try_from(SAMPLE_RATE / 100).unwrap_or(480);
        SupportedBufferSize::Range {
            min: frames,
            max: frames,
        }
    }
}

impl std::fmt::Display for RealtimeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl DeviceTrait for RealtimeDevice {
    type SupportedInputConfigs = std::iter::Empty<SupportedStreamConfigRange>;
    type SupportedOutputConfigs = std::iter::Once<SupportedStreamConfigRange>;
    type Stream = PacedStream;

    fn description(&self) -> Result<DeviceDescription, Error> {
        Ok(DeviceDescriptionBuilder::new(self.label())
            .driver("hokrajai")
            .direction(DeviceDirection::Output)
            .build())
    }

    fn id(&self) -> Result<DeviceId, Error> {
        Ok(DeviceId::new(cpal::HostId::Custom, self.label()))
    }

    fn supported_input_configs(&self) -> Result<Self::SupportedInputConfigs, Error> {
        Ok(std::iter::empty())
    }

    fn supported_output_configs(&self) -> Result<Self::SupportedOutputConfigs, Error> {
        Ok(std::iter::once(SupportedStreamConfigRange::new(
            CHANNELS,
            SAMPLE_RATE,
            SAMPLE_RATE,
            Self::buffer_size(),
            SampleFormat::F32,
        )))
    }

    fn default_input_config(&self) -> Result<SupportedStreamConfig, Error> {
        Err(Error::with_message(
            ErrorKind::UnsupportedConfig,
            "a playout device has no input",
        ))
    }

    fn default_output_config(&self) -> Result<SupportedStreamConfig, Error> {
        Ok(SupportedStreamConfig::new(
            CHANNELS,
            SAMPLE_RATE,
            Self::buffer_size(),
            SampleFormat::F32,
        ))
    }

    fn build_input_stream_raw<D, E>(
        &self,
        _: StreamConfig,
        _: SampleFormat,
        _: D,
        _: E,
        _: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        Err(Error::with_message(
            ErrorKind::UnsupportedConfig,
            "a playout device has no input",
        ))
    }

    /// The requested buffer size is ignored: callbacks always carry 10 ms (rate/100 frames).
    fn build_output_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        if sample_format != SampleFormat::F32
            || config.channels != CHANNELS
            || config.sample_rate != SAMPLE_RATE
        {
            return Err(Error::with_message(
                ErrorKind::UnsupportedConfig,
                format!(
                    "{} plays only {SAMPLE_RATE} Hz, {CHANNELS} channels, f32 \
                     (asked for {} Hz, {} channels, {sample_format})",
                    self.label(),
                    config.sample_rate,
                    config.channels
                ),
            ));
        }
        let paced = PacedConfig {
            sample_rate: SAMPLE_RATE,
            channels: CHANNELS,
            thread_name: format!("device-{}", self.output),
        };
        let spawned = match &self.capture {
            Capture::Discard => {
                PacedStream::spawn(paced, data_callback, error_callback, |_: &[f32]| Ok(()))
            }
            Capture::Wav(path) => {
                let mut wav = WavCapture::create(path)?;
                PacedStream::spawn(paced, data_callback, error_callback, move |samples| {
                    wav.write(samples)
                })
            }
        };
        spawned.map_err(|e| {
            Error::with_message(
                ErrorKind::ResourceExhausted,
                format!("cannot start the thread for {}: {e}", self.label()),
            )
        })
    }
}

/// The wav output's file. Finalized (header with the true length) when dropped, which happens
/// when the pacing thread ends, i.e. when the stream is dropped.
struct WavCapture {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    frames_since_flush: usize,
}

impl WavCapture {
    fn create(path: &Path) -> Result<Self, Error> {
        let spec = hound::WavSpec {
            channels: CHANNELS,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| {
            Error::with_message(
                ErrorKind::DeviceNotAvailable,
                format!("cannot create the wav file {}: {e}", path.display()),
            )
        })?;
        Ok(WavCapture {
            path: path.to_owned(),
            writer: Some(writer),
            frames_since_flush: 0,
        })
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), String> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let written: Result<(), hound::Error> = samples
            .iter()
            .try_for_each(|&s| writer.write_sample(to_i16(s)));
        self.frames_since_flush += samples.len() / usize::from(CHANNELS);
        let flushed = if self.frames_since_flush >= WAV_FLUSH_FRAMES {
            self.frames_since_flush = 0;
            writer.flush()
        } else {
            Ok(())
        };
        written
            .and(flushed)
            .map_err(|e| format!("cannot write the wav file {}: {e}", self.path.display()))
    }
}

fn to_i16(sample: f32) -> i16 {
    // `as` saturates (and maps NaN to 0), so this cannot overflow.
    (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16
}

impl Drop for WavCapture {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(error) = writer.finalize() {
                tracing::error!(path = %self.path.display(), %error, "cannot finish the wav file");
            }
        }
    }
}
