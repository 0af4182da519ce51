//! Probing an untrusted file: decode every packet to learn its true length, its format and its
//! EBU R128 loudness, optionally on a throwaway thread with a time budget and a panic catcher.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use ebur128::{EbuR128, Mode};
use symphonia::core::audio::SignalSpec;

use super::decode::{self, interleave};
use super::{MediaError, ProbeInfo};

/// The sample rates accepted: 1 kHz (below any speech codec) to 384 kHz (the highest studio rate).
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 384_000;

/// Decode the whole file at `path` and report what it is.
///
/// The container is recognised from the first bytes (the name and extension are ignored), every
/// packet is decoded (headers lie about length), and loudness is measured on the decoded samples.
/// Reads the file a packet at a time; memory does not grow with the file. Runs on the calling
/// thread for as long as decoding takes and may panic inside a decoder on hostile input: for
/// uploads use [`probe_isolated`].
///
/// Errors: `Io` (missing or unreadable), `Empty` (zero bytes), `NotAudio` (no known audio
/// signature, no audio track, a codec we do not decode), `Undecodable` (damaged header, nothing
/// decodes, or more than half of the packets fail).
pub fn probe(path: &Path) -> Result<ProbeInfo, MediaError> {
    let mut stream = decode::open(path)?;
    let mut first: Option<SignalSpec> = None;
    let mut meter: Option<EbuR128> = None;
    let mut length = Length::default();
    let mut samples: Vec<f32> = Vec::new();
    while stream.advance()? {
        let buffer = stream.buffer();
        let spec = *buffer.spec();
        // Outside what any real recording uses, a rate is a broken or hostile header: refused
        // before it reaches the loudness meter (which asserts on absurd rates) or the mixer.
        if !(MIN_RATE..=MAX_RATE).contains(&spec.rate) {
            return Err(MediaError::Undecodable(format!(
                "the decoder reports a sample rate of {} Hz (accepted: {MIN_RATE} to {MAX_RATE} Hz)",
                spec.rate
            )));
        }
        length.add(buffer.frames() as u64, spec.rate);
        let first_spec = *first.get_or_insert_with(|| {
            meter = EbuR128::new(spec.channels.count() as u32, spec.rate, Mode::I).ok();
            spec
        });
        // Loudness is measured on the part in the first format; a change of rate or channels
        // mid-stream (a rare, broken file) would need a second meter for little gain.
        if spec == first_spec {
            if let Some(m) = meter.as_mut() {
                interleave(&buffer, &mut samples);
                if m.add_frames_f32(&samples).is_err() {
                    meter = None;
                }
            }
        }
    }
    stream.verdict(true)?;
    let Some(spec) = first else {
        return Err(MediaError::Undecodable(format!(
            "no audio could be decoded from the {} {} stream",
            stream.container().name(),
            stream.codec()
        )));
    };
    let channels = u16::try_from(spec.channels.count()).map_err(|_| {
        MediaError::Undecodable(format!("{} channels is too many", spec.channels.count()))
    })?;
    // -inf (or an error) means nothing to measure: shorter than one 400 ms block, or silent.
    let loudness_lufs = meter
        .and_then(|m| m.loudness_global().ok())
        .filter(|lufs| lufs.is_finite())
        .map(|lufs| (lufs * 100.0).round() / 100.0);
    Ok(ProbeInfo {
        container: stream.container().name().to_owned(),
        codec: stream.codec().to_owned(),
        sample_rate: spec.rate,
        channels,
        duration_ms: length.millis(),
        loudness_lufs,
    })
}

/// Decoded length, counted in frames per run of one sample rate so that rounding happens once
/// per run, not once per packet (a 2 s file is 2000 ms, not 1999).
#[derive(Default)]
struct Length {
    rate: u32,
    frames: u64,
    /// Earlier runs at other rates, in nanoseconds.
    before: u128,
}

impl Length {
    fn add(&mut self, frames: u64, rate: u32) {
        if rate != self.rate {
            self.before += self.run_nanos();
            self.rate = rate;
            self.frames = 0;
        }
        self.frames = self.frames.saturating_add(frames);
    }

    fn run_nanos(&self) -> u128 {
        match self.rate {
            0 => 0,
            rate => u128::from(self.frames) * 1_000_000_000 / u128::from(rate),
        }
    }

    /// Rounded to the nearest millisecond.
    fn millis(&self) -> u64 {
        let nanos = self.before + self.run_nanos();
        u64::try_from((nanos + 500_000) / 1_000_000).unwrap_or(u64::MAX)
    }
}

/// [`probe`] on a fresh worker thread, for untrusted uploads: a decoder that panics gives
/// `Panicked`, one that has not answered within `budget` gives `Timeout(budget)`. The worker is
/// then left to finish on its own (it only reads the file; its answer is dropped). May be called
/// from any thread; it blocks the caller for at most `budget` (use `spawn_blocking` in async
/// code). `Io` if the thread cannot be started.
pub fn probe_isolated(path: PathBuf, budget: Duration) -> Result<ProbeInfo, MediaError> {
    isolated(budget, move || probe(&path))
}

/// Run `work` on its own thread with a time budget, turning a panic into `Panicked`.
fn isolated<F>(budget: Duration, work: F) -> Result<ProbeInfo, MediaError>
where
    F: FnOnce() -> Result<ProbeInfo, MediaError> + Send + 'static,
{
    // Room for the one answer, so the worker never blocks on a caller that gave up waiting.
    let (answer, answered) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("media-probe".to_owned())
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned())
            });
            // Fails only if the caller stopped waiting (timeout): nobody wants the answer then.
            let _ = answer.send(outcome);
        })?;
    match answered.recv_timeout(budget) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(MediaError::Panicked(panic)),
        Err(RecvTimeoutError::Timeout) => Err(MediaError::Timeout(budget)),
        Err(RecvTimeoutError::Disconnected) => Err(MediaError::Panicked(
            "the probe thread ended without an answer".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_adds_runs_at_each_rate() {
        let mut length = Length::default();
        for _ in 0..100 {
            length.add(441, 44_100);
        }
        assert_eq!(length.millis(), 1000);
        length.add(24_000, 48_000);
        assert_eq!(length.millis(), 1500);
        length.add(1, 48_000);
        assert_eq!(length.millis(), 1500);
    }

    #[test]
    fn a_panicking_decoder_is_reported_not_propagated() {
        let result = isolated(Duration::from_secs(5), || panic!("mkv overflow"));
        match result {
            Err(MediaError::Panicked(why)) => assert_eq!(why, "mkv overflow"),
            other => panic!("expected Panicked, got {other:?}"),
        }
    }

    #[test]
    fn a_slow_decoder_times_out_and_is_left_running() {
        let started = std::time::Instant::now();
        let result = isolated(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(500));
            Err(MediaError::Empty)
        });
        assert!(matches!(result, Err(MediaError::Timeout(d)) if d == Duration::from_millis(50)));
        assert!(started.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn an_answer_within_budget_is_passed_through() {
        let result = isolated(Duration::from_secs(5), || Err(MediaError::Empty));
        assert_eq!(result.map_err(|e| e.code()), Err("empty_file"));
    }
}
