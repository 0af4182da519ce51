//! Opening an item's audio for the player: media's decoded source, wrapped so that a decoder
//! panic ends the item (as failed) instead of killing the device's audio thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rodio::source::SeekError;
use rodio::{ChannelCount, Sample, SampleRate, Source};

use super::lock;
use crate::media;

/// Why an item's audio ended early, if it did. Written on the audio thread, read by the player.
#[derive(Clone, Default)]
pub(super) struct Health(Arc<Mutex<Option<String>>>);

impl Health {
    fn fail(&self, why: String) {
        lock(&self.0).get_or_insert(why);
    }

    /// The error that cut the audio short, if any.
    pub(super) fn error(&self) -> Option<String> {
        lock(&self.0).clone()
    }
}

/// An item's audio, ready to append to a rodio `Player`.
pub(super) struct Opened {
    pub source: Guarded<Box<dyn Source + Send>>,
    pub health: Health,
    /// As far as the source knows; `None` when it cannot tell.
    pub length: Option<Duration>,
}

/// Open a stored file through `media`. Errors: media's sentence (missing file, not audio...).
pub(super) fn open(path: &Path, gain_db: f32) -> Result<Opened, String> {
    let decoded = media::open_source(path, gain_db).map_err(|e| e.to_string())?;
    let health = Health::default();
    let decode_failed = decoded.decode_error();
    let length = decoded.total_duration();
    let source: Box<dyn Source + Send> = Box::new(decoded);
    Ok(Opened {
        source: Guarded {
            inner: Some(source),
            health: health.clone(),
            decode_failed: Some(decode_failed),
        },
        health,
        length,
    })
}

/// A source whose panics end it instead of unwinding through the audio thread, and whose end
/// records the decoder's own "ended early" flag in `health`.
pub(super) struct Guarded<S> {
    /// `None` once the inner source panicked: it is never touched again.
    inner: Option<S>,
    health: Health,
    decode_failed: Option<media::DecodeErrorFlag>,
}

impl<S: Source> Guarded<S> {
    fn check_decoder(&mut self) {
        if let Some(flag) = self.decode_failed.take() {
            if let Some(error) = flag.get() {
                self.health.fail(error);
            }
        }
    }
}

impl<S: Source> Iterator for Guarded<S> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        let inner = self.inner.as_mut()?;
        match catch_unwind(AssertUnwindSafe(|| inner.next())) {
            Ok(Some(sample)) => Some(sample),
            Ok(None) => {
                self.check_decoder();
                None
            }
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
