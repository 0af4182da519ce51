//! Opening an item's audio for the player: media's decoded source, converted to the device's
//! channels and rate so the timeline can count its frames, and wrapped so that a decoder panic
//! ends the item (as failed) instead of killing the device's audio thread.
//!
//! The chain is one concrete type (decoder → rodio's converter → [`Guarded`]), handed to the
//! timeline as a block [`Feed`]: the audio thread makes one dynamic call per buffer, and the
//! per-sample steps inline into each other.

use std::num::NonZero;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rodio::source::UniformSourceIterator;

use super::lock;
use super::timeline::{Feed, Samples};
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
    let (Some(channels), Some(rate)) = (NonZero::new(channels), NonZero::new(rate)) else {
        return Err(format!(
            "the device reports {channels} channels at {rate} Hz"
        ));
    };
    let decoded = media::open_source(path, gain_db).map_err(|e| e.to_string())?;
    let health = Health {
        crashed: Arc::default(),
        decoder: Some(decoded.decode_error()),
    };
    let uniform = UniformSourceIterator::new(decoded, channels, rate);
    Ok(Prepared {
        samples: Box::new(Guarded {
            inner: Some(uniform),
            health: health.clone(),
        }),
        health,
        length: None,
    })
}

/// How long `path` plays on a device of `channels` at `rate`, by decoding it all (for chimes:
/// seconds of audio; the caller remembers the answer). Errors as for [`prepare`].
pub(super) fn measure(path: &Path, channels: u16, rate: u32) -> Result<Duration, String> {
    let Prepared { mut samples, .. } = prepare(path, 0.0, channels, rate)?;
    let mut block = vec![0.0_f32; 8192];
    let mut total = 0_usize;
    loop {
        let got = samples.fill(&mut block);
        total += got;
        if got < block.len() {
            break;
        }
    }
    let frames = total.div_ceil(usize::from(channels.max(1)));
    Ok(Duration::from_secs_f64(
        frames as f64 / f64::from(rate.max(1)),
    ))
}

/// Samples whose panics end them instead of unwinding through the audio thread (the reason goes
/// to `health`). Guards a whole block at a time, so the samples inside inline.
pub(super) struct Guarded<S> {
    /// `None` once the inner samples panicked: they are never touched again.
    inner: Option<S>,
    health: Health,
}

impl<S: Iterator<Item = f32> + Send> Feed for Guarded<S> {
    fn fill(&mut self, out: &mut [f32]) -> usize {
        let Some(inner) = self.inner.as_mut() else {
            return 0;
        };
        let mut written = 0;
        let filled = catch_unwind(AssertUnwindSafe(|| {
            for slot in out.iter_mut() {
                match inner.next() {
                    Some(sample) => *slot = sample,
                    None => break,
                }
                written += 1;
            }
        }));
        if let Err(panic) = filled {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            self.inner = None;
            self.health.fail(format!("the decoder crashed: {why}"));
        }
        written
    }
}
