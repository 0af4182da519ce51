//! Opening an item's audio for the player: media's decoded source, wrapped so that a decoder
//! panic ends the item (as failed) instead of killing the device's audio thread, and converted
//! to the device's channels and rate so the timeline can count its frames.

use std::num::NonZero;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rodio::source::{SeekError, UniformSourceIterator};
use rodio::{ChannelCount, Sample, SampleRate, Source};

use super::lock;
use super::timeline::Samples;
use crate::media;

/// Why an item's audio ended early, if it did: the decoder crashed (written on the audio thread
/// by [`Guarded`]) or gave up (media's own flag). Read by the player once the audio has ended.
///
/// The decoder's flag is read directly rather than when the source returns its last sample:
/// rodio's converters stop asking an ended source for samples once its span length is zero.
#[derive(Clone, Default)]
pub(super) struct Health {
    crashed: Arc<Mutex<Option<String>>>,
    decoder: Option<media::DecodeErrorFlag>,
}

impl Health {
    fn fail(&self, why: String) {
        lock(&self.crashed).get_or_insert(why);
    }

    /// The error that cut the audio short, if any.
    pub(super) fn error(&self) -> Option<String> {
        let crashed = lock(&self.crashed).clone();
        crashed.or_else(|| self.decoder.as_ref().and_then(|flag| flag.get()))
    }
}

/// An item's audio as decoded, in the file's own format.
struct Opened {
    source: Guarded<Box<dyn Source + Send>>,
    health: Health,
}

/// A file's audio in the device's format (interleaved, `channels` at `rate`), for the timeline.
pub(super) struct Prepared {
    pub samples: Samples,
    pub health: Health,
    /// How long it plays, when known (the player fills it in: measured for chimes, the
    /// upload's measured duration for items); `None` from here.
    pub length: Option<Duration>,
}

/// Open `path` for streaming: only its first packet is decoded now (on the caller's thread), the
/// rest as the device pulls it. Errors: media's sentence (missing file, not audio...).
pub(super) fn prepare(
    path: &Path,
    gain_db: f32,
    channels: u16,
    rate: u32,
) -> Result<Prepared, String> {
    let opened = open(path, gain_db)?;
    let (Some(channels), Some(rate)) = (NonZero::new(channels), NonZero::new(rate)) else {
        return Err(format!(
            "the device reports {channels} channels at {rate} Hz"
        ));
    };
    let uniform = UniformSourceIterator::new(opened.source, channels, rate);
    Ok(Prepared {
        samples: Box::new(uniform),
        health: opened.health,
        length: None,
    })
}

/// How long `path` plays on a device of `channels` at `rate`, by decoding it all (for chimes:
/// seconds of audio; the caller remembers the answer). Errors as for [`prepare`].
pub(super) fn measure(path: &Path, channels: u16, rate: u32) -> Result<Duration, String> {
    let Prepared { samples, .. } = prepare(path, 0.0, channels, rate)?;
    let frames = samples.count().div_ceil(usize::from(channels.max(1)));
    Ok(Duration::from_secs_f64(
        frames as f64 / f64::from(rate.max(1)),
    ))
}

/// Open a stored file through `media`. Errors: media's sentence (missing file, not audio...).
fn open(path: &Path, gain_db: f32) -> Result<Opened, String> {
    let decoded = media::open_source(path, gain_db).map_err(|e| e.to_string())?;
    let health = Health {
        crashed: Arc::default(),
        decoder: Some(decoded.decode_error()),
    };
    let source: Box<dyn Source + Send> = Box::new(decoded);
    Ok(Opened {
        source: Guarded {
            inner: Some(source),
            health: health.clone(),
        },
        health,
    })
}

/// A source whose panics end it instead of unwinding through the audio thread (the reason goes
/// to `health`).
pub(super) struct Guarded<S> {
    /// `None` once the inner source panicked: it is never touched again.
    inner: Option<S>,
    health: Health,
}

impl<S: Source> Iterator for Guarded<S> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        let inner = self.inner.as_mut()?;
        match catch_unwind(AssertUnwindSafe(|| inner.next())) {
            Ok(sample) => sample,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                self.inner = None;
                self.health.fail(format!("the decoder crashed: {why}"));
                None
            }
        }
    }
}

impl<S: Source> Source for Guarded<S> {
    fn current_span_len(&self) -> Option<usize> {
        match &self.inner {
            Some(inner) => inner.current_span_len(),
            None => Some(0),
        }
    }

    fn channels(&self) -> ChannelCount {
        match &self.inner {
            Some(inner) => inner.channels(),
            None => ChannelCount::MIN,
        }
    }

    fn sample_rate(&self) -> SampleRate {
        match &self.inner {
            Some(inner) => inner.sample_rate(),
            None => SampleRate::MIN,
        }
    }

    fn total_duration(&self) -> Option<Duration> {
        self.inner.as_ref().and_then(|inner| inner.total_duration())
    }

    fn try_seek(&mut self, pos: Duration) -> Result<(), SeekError> {
        match &mut self.inner {
            Some(inner) => inner.try_seek(pos),
            None => Err(SeekError::NotSupported {
                underlying_source: std::any::type_name::<Self>(),
            }),
        }
    }
}
