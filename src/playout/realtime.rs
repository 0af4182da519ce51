//! The null and wav outputs: a cpal custom device with no hardware behind it that still keeps
//! real time (48 kHz stereo f32, 10 ms per callback, paced by `pacer`), discarding the
//! audio or writing it to a 16-bit WAV file. Both also note where sound begins and ends, to the
//! frame ([`SoundLog`]), so tests and the timing benchmark can see when sound reached the device.
//!
//! ALSA's own `null` and `file` plugins run hundreds of times faster than real time, so a test or
//! a demo on them says nothing about timing; this device's timing is honest.
//!
//! The null device sleeps while its output has nothing to play (see `pacer::IdleGate`), so an
//! idle box costs no CPU; the wav device keeps writing silence, so its file stays a real-time
//! record of the output from the moment it opened.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use super::lock;
use super::pacer::{IdleGate, PacedConfig, PacedStream};
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

/// Below this (about -80 dBFS) a sample counts as silence for [`RunDetector`].
pub const SILENCE_THRESHOLD: f32 = 1e-4;
/// Sound begins again only after at least this much silence (shorter dips are inside a run).
pub const RUN_GAP: Duration = Duration::from_millis(50);
/// The most runs a [`SoundLog`] keeps (the oldest are forgotten first).
const SOUND_LOG_CAP: usize = 10_000;

/// One stretch of sound as it reached a device.
///
/// `start` is the instant of its first non-silent frame and `end` the instant just after its last
/// one (`None` while it still sounds), on the device's own clock: the 10 ms tick's deadline plus
/// the frame's index over the rate. That is the clock the player schedules against.
///
/// The null and wav devices have no buffer: a tick hands its 10 ms over when its thread runs,
/// which on a loaded machine can be after the deadline (it then catches up). `start_late` and
/// `end_late` say how much later than their instants those frames were really handed over (zero
/// when on time), so [`SoundRun::heard_start`] and [`SoundRun::heard_end`] are the conservative
/// answer to "when did it really reach the device".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoundRun {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub start_late: Duration,
    pub end_late: Duration,
}

impl SoundRun {
    /// `start`, plus however late the device thread handed that frame over.
    pub fn heard_start(&self) -> DateTime<Utc> {
        self.start + TimeDelta::from_std(self.start_late).unwrap_or(TimeDelta::zero())
    }

    /// `end`, plus however late the device thread handed the last frame over.
    pub fn heard_end(&self) -> Option<DateTime<Utc>> {
        let late = TimeDelta::from_std(self.end_late).unwrap_or(TimeDelta::zero());
        self.end.map(|end| end + late)
    }
}

/// Where a stream of frames turns from silence to sound and back, to the frame.
///
/// A run starts at the first frame with a sample above [`SILENCE_THRESHOLD`] after at least
/// [`RUN_GAP`] of silence, and ends after the last such frame once [`RUN_GAP`] of silence has
/// followed. Each buffer comes with the instant its first frame is due at the device, so a frame's
/// instant is that plus its index over the rate: sub-tick precision. Used by the null and wav
/// devices and by the timing benchmark's stand-in sound card, so both are measured the same way.
#[derive(Debug, Clone)]
pub struct RunDetector {
    channels: usize,
    frame_ns: f64,
    min_silence: u64,
    silent: u64,
    in_run: bool,
    /// Instant just after the last loud frame, and how late that frame was handed over.
    last_loud_end: Option<(Instant, Duration)>,
}

/// A change found by [`RunDetector::feed`]: the instant on the device's clock, and how much
/// later than that the frame was really handed over (zero when on time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEdge {
    Start(Instant, Duration),
    End(Instant, Duration),
}

impl RunDetector {
    pub fn new(channels: u16, rate: u32) -> Self {
        let rate = rate.max(1);
        let min_silence = (RUN_GAP.as_secs_f64() * f64::from(rate)).ceil() as u64;
        RunDetector {
            channels: usize::from(channels.max(1)),
            frame_ns: 1e9 / f64::from(rate),
            min_silence,
            silent: min_silence,
            in_run: false,
            last_loud_end: None,
        }
    }

    /// Look at interleaved `samples` whose first frame is due at the device at `first_frame_at`
    /// and was handed over at `handed_at` (the same instant, or later if the device thread woke
    /// late); report each start and end of a run to `edge`, in order.
    pub fn feed(
        &mut self,
        samples: &[f32],
        first_frame_at: Instant,
        handed_at: Instant,
        mut edge: impl FnMut(RunEdge),
    ) {
        // Instants are worked out only at edges and once per buffer: this runs on every buffer
        // of a real-time device, so the per-frame work is a comparison.
        let mut last_loud: Option<usize> = None;
        for (index, frame) in samples.chunks_exact(self.channels).enumerate() {
            let loud = frame.iter().any(|s| s.abs() > SILENCE_THRESHOLD);
            if loud {
                if !self.in_run {
                    self.in_run = true;
                    let at = self.at(first_frame_at, index as u64);
                    edge(RunEdge::Start(at, handed_at.saturating_duration_since(at)));
                }
                self.silent = 0;
                last_loud = Some(index);
            } else {
                self.silent = self.silent.saturating_add(1);
                if self.in_run && self.silent >= self.min_silence {
                    self.in_run = false;
                    if let Some(index) = last_loud.take() {
                        self.last_loud_end = Some(self.loud_end(first_frame_at, handed_at, index));
                    }
                    if let Some((end, late)) = self.last_loud_end {
                        edge(RunEdge::End(end, late));
                    }
                }
            }
        }
        if let Some(index) = last_loud {
            self.last_loud_end = Some(self.loud_end(first_frame_at, handed_at, index));
        }
    }

    /// The instant just after loud frame `index` of a buffer, and how late it was handed over.
    fn loud_end(&self, first: Instant, handed_at: Instant, index: usize) -> (Instant, Duration) {
        let at = self.at(first, index as u64);
        (
            self.at(first, index as u64 + 1),
            handed_at.saturating_duration_since(at),
        )
    }

    fn at(&self, first: Instant, frame: u64) -> Instant {
        first + Duration::from_nanos((frame as f64 * self.frame_ns).round() as u64)
    }
}

/// The runs of sound a real-time device has played, newest last (see [`RunDetector`]). Shared
/// between the device's pacing thread, which records, and whoever reads (any thread).
#[derive(Debug, Clone, Default)]
pub struct SoundLog(Arc<Mutex<VecDeque<SoundRun>>>);

impl SoundLog {
    /// Every run still kept, oldest first.
    pub fn runs(&self) -> Vec<SoundRun> {
        lock(&self.0).iter().copied().collect()
    }

    fn record(&self, edge: RunEdge) {
        let mut runs = lock(&self.0);
        match edge {
            RunEdge::Start(at, late) => {
                if runs.len() >= SOUND_LOG_CAP {
                    runs.pop_front();
                }
                runs.push_back(SoundRun {
                    start: wall(at),
                    end: None,
                    start_late: late,
                    end_late: Duration::ZERO,
                });
            }
            RunEdge::End(at, late) => {
                if let Some(run) = runs.back_mut() {
                    run.end = Some(wall(at));
                    run.end_late = late;
                }
            }
        }
    }
}

/// The wall-clock (UTC) time of a monotonic instant, taken fresh each time so that a wall clock
/// stepped or slewed since the stream started does not skew it.
fn wall(at: Instant) -> DateTime<Utc> {
    let (now, wall_now) = (Instant::now(), Utc::now());
    let delta = match at.checked_duration_since(now) {
        Some(ahead) => TimeDelta::from_std(ahead).unwrap_or(TimeDelta::zero()),
        None => -TimeDelta::from_std(now.duration_since(at)).unwrap_or(TimeDelta::zero()),
    };
    wall_now + delta
}

/// What a device built by a backend reports back: where sound began and ended (null and wav),
/// and the gate a device that can sleep while idle listens to (null). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct DeviceTaps {
    pub sounds: SoundLog,
    pub(super) idle: Option<Arc<IdleGate>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Capture {
    Discard,
    Wav(PathBuf),
}

/// A real-time device without hardware. Cheap to clone; each stream built from it starts its
/// own pacing thread (and, for wav, creates or truncates the file).
#[derive(Debug, Clone)]
pub(super) struct RealtimeDevice {
    output: String,
    capture: Capture,
    sounds: SoundLog,
    /// Null only: sleep while the output has nothing to play.
    idle: Option<Arc<IdleGate>>,
}

// A device is who it is (output and capture), not what it has recorded.
impl PartialEq for RealtimeDevice {
    fn eq(&self, other: &Self) -> bool {
        (&self.output, &self.capture) == (&other.output, &other.capture)
    }
}

impl Eq for RealtimeDevice {}

impl std::hash::Hash for RealtimeDevice {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.output, &self.capture).hash(state);
    }
}

impl RealtimeDevice {
    pub(super) fn null(output: &str, taps: &DeviceTaps) -> Self {
        RealtimeDevice {
            output: output.to_owned(),
            capture: Capture::Discard,
            sounds: taps.sounds.clone(),
            idle: taps.idle.clone(),
        }
    }

    pub(super) fn wav(output: &str, path: PathBuf, taps: &DeviceTaps) -> Self {
        RealtimeDevice {
            output: output.to_owned(),
            capture: Capture::Wav(path),
            sounds: taps.sounds.clone(),
            idle: None,
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
        let mut detector = RunDetector::new(CHANNELS, SAMPLE_RATE);
        let sounds = self.sounds.clone();
        // Due at the tick's deadline; handed over now, which is later if the thread woke late.
        let mut watch = move |samples: &[f32], due: Instant| {
            detector.feed(samples, due, Instant::now(), |edge| sounds.record(edge));
        };
        let spawned = match &self.capture {
            Capture::Discard => PacedStream::spawn(
                paced,
                self.idle.clone(),
                data_callback,
                error_callback,
                move |samples: &[f32], due| {
                    watch(samples, due);
                    Ok(())
                },
            ),
            Capture::Wav(path) => {
                let mut wav = WavCapture::create(path)?;
                PacedStream::spawn(
                    paced,
                    None,
                    data_callback,
                    error_callback,
                    move |samples, due| {
                        watch(samples, due);
                        wav.write(samples)
                    },
                )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_starts_on_its_first_loud_frame_and_needs_a_real_silence_before_the_next() {
        let mut detector = RunDetector::new(2, 48_000);
        let t0 = Instant::now();
        let mut edges = Vec::new();
        // 10 ms of silence, then sound from frame 100 of the second buffer for 30 ms, a 20 ms
        // dip (too short to end the run), 10 ms more, then silence.
        let mut buffers = vec![vec![0.0_f32; 960]; 20];
        let loud = |buffers: &mut Vec<Vec<f32>>, from: usize, to: usize| {
            for frame in from..to {
                let (b, i) = (frame / 480, frame % 480);
                buffers[b][2 * i + 1] = 0.5;
            }
        };
        loud(&mut buffers, 480 + 100, 480 + 100 + 1440);
        loud(
            &mut buffers,
            480 + 100 + 1440 + 960,
            480 + 100 + 1440 + 960 + 480,
        );
        for (n, buffer) in buffers.iter().enumerate() {
            let at = t0 + Duration::from_millis(10 * n as u64);
            detector.feed(buffer, at, at, |e| edges.push(e));
        }
        let frame = |n: u64| t0 + Duration::from_nanos((n as f64 * 1e9 / 48_000.0).round() as u64);
        assert_eq!(
            edges,
            [
                RunEdge::Start(frame(580), Duration::ZERO),
                RunEdge::End(frame(580 + 1440 + 960 + 480), Duration::ZERO),
            ]
        );
    }
}
