//! A stored file decoded lazily, a packet at a time, as a rodio `Source` with gain applied: what
//! the player thread pulls while the tower is on air.

use std::num::NonZero;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rodio::{ChannelCount, SampleRate, Source};

use super::decode::{self, interleave, Stream};
use super::MediaError;

/// Why a [`DecodedSource`] ended before the end of its file, if it did. Cloned out of the source
/// before it is handed to rodio, read by the player once the source has ended: `None` means the
/// whole file played ("completed"), `Some(why)` that decoding stopped early ("failed"). Cheap to
/// clone; may be read from any thread at any time.
#[derive(Debug, Clone, Default)]
pub struct DecodeErrorFlag(Arc<Mutex<Option<String>>>);

impl DecodeErrorFlag {
    /// The error that ended the source early, if any.
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keep the first error: it is the cause, what follows is consequence.
    fn set(&self, why: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(why);
    }
}

/// A decoded stored file, gain applied, as a rodio source: interleaved f32 samples in [-1, 1].
///
/// Decodes one packet when the previous one's samples are used up, on whatever thread pulls the
/// samples (rodio's mixer on the player thread). A packet that fails to decode is skipped, as the
/// probe skips it; the source ends early, with the reason in [`DecodedSource::decode_error`],
/// when more than half of the packets fail or the file cannot be read further.
///
/// `current_span_len()` is the length in samples of the decoded buffer being played, a multiple
/// of `channels()`. The next buffer is decoded as soon as the last sample of the current one is
/// taken, so at every span boundary `current_span_len()`, `channels()` and `sample_rate()`
/// already describe the next span: rodio's resampler (which asks at boundaries) follows a change
/// of rate or channels exactly. `Some(0)` once the source has ended. `total_duration()` is
/// `None`: headers lie, and the truth (`ProbeInfo::duration_ms`) was measured at upload.
pub struct DecodedSource {
    stream: Stream,
    /// The current decoded buffer, interleaved, gain applied; `position` is the next sample.
    samples: Vec<f32>,
    position: usize,
    channels: ChannelCount,
    sample_rate: SampleRate,
    gain: f32,
    ended: bool,
    error: DecodeErrorFlag,
    /// For messages: which file this is.
    name: String,
}

/// A run of decoded samples from [`DecodedSource::next_chunk`], with its format.
#[derive(Debug)]
pub struct Chunk<'a> {
    /// Interleaved, `channels` per frame, gain applied.
    pub samples: &'a [f32],
    pub channels: ChannelCount,
    pub sample_rate: SampleRate,
}

/// Open the stored file at `path` for playout at `gain_db` (0.0 = as recorded; a sample that
/// the gain pushes past full scale is clipped to [-1, 1]).
///
/// Decodes the first buffer here, so that a file that cannot play fails now rather than on air.
/// Errors: `Io` (missing, unreadable), `Empty`, `NotAudio`, `Undecodable` (as for `probe`, or no
/// audio at its start). A gain that is not a finite number is taken as 0 dB. Call from any
/// thread; the result is `Send` and may be moved to the player thread.
pub fn open_source(path: &Path, gain_db: f32) -> Result<DecodedSource, MediaError> {
    let name = path.display().to_string();
    let gain = 10f32.powf(gain_db / 20.0);
    let gain = if gain.is_finite() {
        gain
    } else {
        tracing::warn!(file = %name, gain_db, "gain is not a finite number; playing at 0 dB");
        1.0
    };
    let mut source = DecodedSource {
        stream: decode::open(path)?,
        samples: Vec::new(),
        position: 0,
        channels: ChannelCount::MIN,
        sample_rate: SampleRate::MIN,
        gain,
        ended: false,
        error: DecodeErrorFlag::default(),
        name,
    };
    if !source.stream.advance()? {
        source.stream.verdict(true)?;
        return Err(MediaError::Undecodable(format!(
            "no audio could be decoded from the start of {}",
            source.name
        )));
    }
    source.take_buffer()?;
    Ok(source)
}

impl DecodedSource {
    /// A handle on why this source ended early, if it does; see [`DecodeErrorFlag`]. Take it
    /// before giving the source to rodio.
    pub fn decode_error(&self) -> DecodeErrorFlag {
        self.error.clone()
    }

    /// Copy the stream's newest buffer into `samples`, with gain, and adopt its format.
    fn take_buffer(&mut self) -> Result<(), MediaError> {
        let buffer = self.stream.buffer();
        let spec = *buffer.spec();
        let channels = u16::try_from(spec.channels.count())
            .ok()
            .and_then(NonZero::new);
        let (Some(channels), Some(sample_rate)) = (channels, NonZero::new(spec.rate)) else {
            return Err(MediaError::Undecodable(format!(
                "the decoder reports {} channels at {} Hz",
                spec.channels.count(),
                spec.rate
            )));
        };
        interleave(&buffer, &mut self.samples);
        let gain = self.gain;
        for sample in &mut self.samples {
            let louder = *sample * gain;
            *sample = if louder.is_nan() {
                0.0
            } else {
                louder.clamp(-1.0, 1.0)
            };
        }
        self.position = 0;
        self.channels = channels;
        self.sample_rate = sample_rate;
        Ok(())
    }

    /// Decode the next buffer, or end the source (recording why, if it is an error).
    fn refill(&mut self) {
        let outcome = match self.stream.advance() {
            Ok(true) => self.take_buffer(),
            Ok(false) => {
                self.finish();
                self.stream.verdict(true)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            self.error
                .set(format!("decoding {} stopped early: {e}", self.name));
            self.finish();
        }
    }

    /// The samples of the current decoded buffer not yet taken (interleaved, gain applied) and
    /// their format, all taken at once; the next call decodes the next buffer. `None` at the end.
    ///
    /// For a consumer that converts whole buffers instead of pulling samples one by one (the
    /// player's audio thread); it may be mixed with `next()`.
    pub fn next_chunk(&mut self) -> Option<Chunk<'_>> {
        if self.position >= self.samples.len() {
            if self.ended {
                return None;
            }
            self.refill();
            if self.samples.is_empty() {
                return None;
            }
        }
        let from = self.position;
        self.position = self.samples.len();
        Some(Chunk {
            samples: &self.samples[from..],
            channels: self.channels,
            sample_rate: self.sample_rate,
        })
    }

    fn finish(&mut self) {
        self.ended = true;
        self.samples.clear();
        self.position = 0;
    }
}

impl Iterator for DecodedSource {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        let sample = *self.samples.get(self.position)?;
        self.position += 1;
        if self.position >= self.samples.len() && !self.ended {
            // Eagerly, so the span facts are about the next buffer when rodio asks (see above).
            self.refill();
        }
        Some(sample)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.samples.len().saturating_sub(self.position), None)
    }
}

impl Source for DecodedSource {
    fn current_span_len(&self) -> Option<usize> {
        Some(self.samples.len())
    }

    fn channels(&self) -> ChannelCount {
        self.channels
    }

    fn sample_rate(&self) -> SampleRate {
        self.sample_rate
    }

    fn total_duration(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_static<T: Send + 'static>() {}

    #[test]
    fn decoded_source_can_move_to_the_player_thread() {
        assert_send_static::<DecodedSource>();
        assert_send_static::<DecodeErrorFlag>();
    }

    #[test]
    fn the_first_error_is_kept() {
        let flag = DecodeErrorFlag::default();
        assert_eq!(flag.get(), None);
        flag.set("cause".to_owned());
        flag.set("consequence".to_owned());
        assert_eq!(flag.clone().get().as_deref(), Some("cause"));
    }
}
