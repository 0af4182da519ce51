//! The backend table (alsa, null, wav) and the one path every backend's device takes to become
//! a running stream: wrapped so its clock is known ([`ClockedDevice`]), opened in its default
//! format with the output's [`Timeline`] filling each buffer.
//!
//! Why not rodio's `DeviceSinkBuilder` and mixer: the timeline is the only source, and the mixer
//! pulls it one sample at a time through two boxed iterators, which cost more CPU than decoding
//! the MP3 (issue 6). The stream is configured the way rodio's builder does it (the device's
//! default format, a fixed buffer of about 50 ms), and every sample format rodio plays is
//! converted the same way (cpal's `FromSample`).

use std::num::NonZero;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};

use super::pacer::IdleGate;
use super::realtime::{DeviceTaps, RealtimeDevice, SoundLog};
use super::timeline::{ClockedDevice, DeviceClock, DeviceEvent, Timeline, TimelineHandle};
use super::{lock, Command, OutputKind, OutputSpec};

/// One kind of output: knows how to find the cpal device an [`OutputSpec`] names. Opening it,
/// mixing and playing are the same for every kind.
pub trait Backend: Send + Sync {
    /// The cpal device for `spec`, found but not yet opened. A device that can tell where sound
    /// begins and ends (null, wav) records it in `taps.sounds`; one that can sleep while nothing
    /// plays (null) listens to `taps.idle`; others ignore both.
    ///
    /// Called on the output's player thread, every time the player (re)opens its device, never
    /// on a hot path. Errors: a sentence naming the device (e.g. "no ALSA output device named
    /// 'tower'"), which the player logs and shows in the output's status before retrying.
    fn device(&self, spec: &OutputSpec, taps: &DeviceTaps) -> Result<cpal::Device, String>;
}

/// The system's sound cards, through cpal's default host (ALSA on Linux).
pub struct AlsaBackend;

/// Discards the audio, in real time. Demo runs, tests, and a box whose sound card died.
pub struct NullBackend;

/// Writes the audio to a 16-bit 48 kHz stereo WAV file (`device` = path), in real time.
pub struct WavBackend;

/// Every output kind, by the name the config uses. Adding a kind is one file and one row.
pub static BACKENDS: &[(&str, &dyn Backend)] = &[
    ("alsa", &AlsaBackend),
    ("null", &NullBackend),
    ("wav", &WavBackend),
];

/// The backend for `kind` from [`BACKENDS`].
pub fn backend_for(kind: OutputKind) -> Option<&'static dyn Backend> {
    BACKENDS
        .iter()
        .find(|(name, _)| *name == kind.as_str())
        .map(|(_, backend)| *backend)
}

impl Backend for AlsaBackend {
    fn device(&self, spec: &OutputSpec, _taps: &DeviceTaps) -> Result<cpal::Device, String> {
        let host = system_host()?;
        let wanted = spec.device.as_deref().unwrap_or("default");
        if wanted == "default" {
            return host
                .default_output_device()
                .ok_or_else(|| "there is no default ALSA output device".to_owned());
        }
        // cpal cannot open a PCM by name; it lists devices whose id is the PCM name. Ask by id
        // first (cpal canonicalises "hw:0" forms), then compare ids and names by hand.
        if let Some(device) = host.device_by_id(&cpal::DeviceId::new(host.id(), wanted)) {
            return Ok(device);
        }
        let devices = host
            .output_devices()
            .map_err(|e| format!("cannot list ALSA output devices: {e}"))?;
        let mut seen = Vec::new();
        for device in devices {
            let id = device.id().map(|id| id.id().to_owned()).ok();
            let name = device.description().map(|d| d.name().to_owned()).ok();
            if id.as_deref() == Some(wanted) || name.as_deref() == Some(wanted) {
                return Ok(device);
            }
            if let Some(id) = id {
                seen.push(id);
            }
        }
        let seen = if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        };
        Err(format!(
            "no ALSA output device named '{wanted}' (devices found: {seen})"
        ))
    }
}

/// ALSA, asked for explicitly so a broken ALSA setup is an error and not a panic inside
/// `cpal::default_host()`.
#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
fn system_host() -> Result<cpal::Host, String> {
    cpal::host_from_id(cpal::HostId::Alsa).map_err(|e| format!("ALSA is not available: {e}"))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
fn system_host() -> Result<cpal::Host, String> {
    Ok(cpal::default_host())
}

impl Backend for NullBackend {
    fn device(&self, spec: &OutputSpec, taps: &DeviceTaps) -> Result<cpal::Device, String> {
        Ok(RealtimeDevice::null(&spec.name, taps).into_cpal())
    }
}

impl Backend for WavBackend {
    fn device(&self, spec: &OutputSpec, taps: &DeviceTaps) -> Result<cpal::Device, String> {
        match spec.device.as_deref() {
            Some(path) if !path.is_empty() => {
                Ok(RealtimeDevice::wav(&spec.name, path.into(), taps).into_cpal())
            }
            _ => Err(format!(
                "output '{}' is a wav output without a file path (device = \"...\")",
                spec.name
            )),
        }
    }
}

/// What the status shows as the output's device.
pub(super) fn describe(spec: &OutputSpec) -> String {
    match (spec.kind, spec.device.as_deref()) {
        (OutputKind::Alsa, None) => "default".to_owned(),
        (OutputKind::Null, _) => "null".to_owned(),
        (_, Some(device)) => device.to_owned(),
        (OutputKind::Wav, None) => "(no file)".to_owned(),
    }
}

/// What an opened device reports to its player thread: timeline events and stream failures go
/// into the player's command channel; the null and wav devices note runs of sound in `sounds`.
pub(super) struct DeviceHooks {
    pub events: Sender<Command>,
    pub sounds: SoundLog,
}

/// An open device with its timeline. Dropping it closes the device.
pub(super) struct OpenOutput {
    /// Where the player queues audio; declared before `_stream` so it goes first.
    pub timeline: TimelineHandle,
    /// Never read, only kept: dropping it stops the stream and closes the device.
    _stream: cpal::Stream,
    /// What the status shows as the device.
    pub description: String,
    /// Set when the alsa device could not be used and this is the null device instead.
    pub fallback_reason: Option<String>,
    /// Set by the stream's error callback (on the audio thread) when the device is gone.
    fatal: Arc<Mutex<Option<String>>>,
}

impl OpenOutput {
    /// The error that killed the stream, if one did.
    pub fn fatal_error(&self) -> Option<String> {
        lock(&self.fatal).clone()
    }
}

/// Open `spec`'s device through rodio; with `fallback_to_null`, fall back to the null device
/// (with a warning) when the configured one cannot be found or opened. Player thread only.
pub(super) fn open(spec: &OutputSpec, hooks: &DeviceHooks) -> Result<OpenOutput, String> {
    let backend = backend_for(spec.kind)
        .ok_or_else(|| format!("no backend for output kind '{}'", spec.kind.as_str()))?;
    let hardware = spec.kind == OutputKind::Alsa;
    match open_with(backend, spec, hooks, hardware) {
        Ok(output) => Ok(output),
        Err(error) if spec.fallback_to_null && spec.kind != OutputKind::Null => {
            tracing::warn!(
                output = %spec.name,
                %error,
                "ใช้อุปกรณ์เสียงไม่ได้ จะเล่นแบบไม่มีเสียงออกแทน / device unavailable, \
                 falling back to the null output (nobody will hear this output)"
            );
            let mut output = open_with(&NullBackend, spec, hooks, false)?;
            output.description = format!("null (fallback for {})", describe(spec));
            output.fallback_reason = Some(error);
            Ok(output)
        }
        Err(error) => Err(error),
    }
}

fn open_with(
    backend: &dyn Backend,
    spec: &OutputSpec,
    hooks: &DeviceHooks,
    hardware: bool,
) -> Result<OpenOutput, String> {
    let clock = DeviceClock::new();
    let gate = Arc::new(IdleGate::default());
    let taps = DeviceTaps {
        sounds: hooks.sounds.clone(),
        idle: Some(Arc::clone(&gate)),
    };
    let device = ClockedDevice::wrap(backend.device(spec, &taps)?, Arc::clone(&clock), hardware);
    let supported = device
        .default_output_config()
        .map_err(|e| format!("cannot configure {}: {}", describe(spec), chain(&e)))?;
    let (Some(channels), Some(rate)) = (
        NonZero::new(supported.channels()),
        NonZero::new(supported.sample_rate()),
    ) else {
        return Err(format!(
            "cannot configure {}: it reports {} channels at {} Hz",
            describe(spec),
            supported.channels(),
            supported.sample_rate()
        ));
    };
    let mut config = supported.config();
    // As rodio's builder: about 50 ms, a power of two.
    config.buffer_size = cpal::BufferSize::Fixed(nearest_power_of_two(rate.get() / 20));
    let fatal = Arc::new(Mutex::new(None));
    let on_error = {
        let fatal = Arc::clone(&fatal);
        let output = spec.name.clone();
        let events = hooks.events.clone();
        move |error: cpal::Error| on_stream_error(&output, &fatal, &events, error)
    };
    let events = hooks.events.clone();
    let (timeline, handle) = Timeline::new(
        channels,
        rate,
        clock,
        gate,
        Box::new(move |event| {
            // The player may be gone (shutting down): nobody to tell.
            let _ = events.send(Command::Device(event));
        }),
    );
    let stream = build_stream(
        &device,
        config,
        supported.sample_format(),
        timeline,
        on_error,
    )
    .map_err(|e| format!("cannot open {}: {}", describe(spec), chain(&e)))?;
    stream
        .play()
        .map_err(|e| format!("cannot start {}: {}", describe(spec), chain(&e)))?;
    Ok(OpenOutput {
        timeline: handle,
        _stream: stream,
        description: describe(spec),
        fallback_reason: None,
        fatal,
    })
}

/// `n` rounded to the nearer power of two (rodio's rule for its 50 ms buffer).
fn nearest_power_of_two(n: u32) -> u32 {
    if n <= 1 {
        return 1;
    }
    let next = n.checked_next_power_of_two().unwrap_or(1 << 31);
    let previous = next >> 1;
    if n - previous <= next.saturating_sub(n) {
        previous
    } else {
        next
    }
}

/// The output stream with `timeline` filling every buffer: directly for f32, through a scratch
/// buffer and cpal's conversion for the other formats.
fn build_stream<E>(
    device: &cpal::Device,
    config: StreamConfig,
    format: SampleFormat,
    mut timeline: Timeline,
    on_error: E,
) -> Result<cpal::Stream, cpal::Error>
where
    E: FnMut(cpal::Error) + Send + 'static,
{
    match format {
        SampleFormat::F32 => device.build_output_stream::<f32, _, _>(
            config,
            move |data: &mut [f32], _| timeline.fill(data),
            on_error,
            None,
        ),
        SampleFormat::F64 => converted::<f64, E>(device, config, timeline, on_error),
        SampleFormat::I8 => converted::<i8, E>(device, config, timeline, on_error),
        SampleFormat::I16 => converted::<i16, E>(device, config, timeline, on_error),
        SampleFormat::I24 => converted::<cpal::I24, E>(device, config, timeline, on_error),
        SampleFormat::I32 => converted::<i32, E>(device, config, timeline, on_error),
        SampleFormat::I64 => converted::<i64, E>(device, config, timeline, on_error),
        SampleFormat::U8 => converted::<u8, E>(device, config, timeline, on_error),
        SampleFormat::U16 => converted::<u16, E>(device, config, timeline, on_error),
        SampleFormat::U24 => converted::<cpal::U24, E>(device, config, timeline, on_error),
        SampleFormat::U32 => converted::<u32, E>(device, config, timeline, on_error),
        SampleFormat::U64 => converted::<u64, E>(device, config, timeline, on_error),
        other => Err(cpal::Error::with_message(
            cpal::ErrorKind::UnsupportedConfig,
            format!("the device's sample format {other} is not supported"),
        )),
    }
}

fn converted<T, E>(
    device: &cpal::Device,
    config: StreamConfig,
    mut timeline: Timeline,
    on_error: E,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
    E: FnMut(cpal::Error) + Send + 'static,
{
    let mut scratch: Vec<f32> = Vec::new();
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _| {
            scratch.resize(data.len(), 0.0);
            timeline.fill(&mut scratch);
            for (out, sample) in data.iter_mut().zip(&scratch) {
                *out = T::from_sample(*sample);
            }
        },
        on_error,
        None,
    )
}

/// Runs on the audio thread: remember errors that mean the device is gone (and wake the player),
/// log the rest.
fn on_stream_error(
    output: &str,
    fatal: &Mutex<Option<String>>,
    events: &Sender<Command>,
    error: cpal::Error,
) {
    use cpal::ErrorKind;
    match error.kind() {
        ErrorKind::DeviceNotAvailable | ErrorKind::StreamInvalidated => {
            tracing::error!(output, %error, "audio stream failed");
            lock(fatal).get_or_insert_with(|| error.to_string());
            let _ = events.send(Command::Device(DeviceEvent::StreamFailed));
        }
        ErrorKind::Xrun => tracing::debug!(output, %error, "audio underrun"),
        _ => tracing::warn!(output, %error, "audio stream error"),
    }
}

/// An error and its sources, one sentence ("cannot open: Error opening the stream: no such file").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
