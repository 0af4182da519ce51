//! Opening an item's audio for the player: media's decoded source, converted to the device's
//! channels and rate so the timeline can count its frames, and wrapped so that a decoder panic
//! ends the item (as failed) instead of killing the device's audio thread.
//!
//! The chain is one concrete type (decoder → [`Convert`] → [`Guarded`]), handed to the timeline
//! as a block [`Feed`]: the audio thread makes one dynamic call per buffer, and the conversion
//! works through whole decoded buffers. (rodio's `UniformSourceIterator` did the same job a
//! sample at a time, through a queue per frame: it cost more CPU than decoding the MP3, issue 6.)

use std::num::NonZero;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let converted = Convert::new(decoded, channels.get(), rate.get());
    Ok(Prepared {
        samples: Box::new(Guarded {
            inner: Some(converted),
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
    // Whole frames: a short block means the end.
    let mut block = vec![0.0_f32; 4096 * usize::from(channels.max(1))];
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

impl<S: Feed> Feed for Guarded<S> {
    fn fill(&mut self, out: &mut [f32]) -> usize {
        let Some(inner) = self.inner.as_mut() else {
            return 0;
        };
        let mut written = 0;
        let filled = catch_unwind(AssertUnwindSafe(|| written = inner.fill(out)));
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

/// A decoded file in the device's channels and rate, converted a decoded buffer at a time.
///
/// Rate: linear interpolation between neighbouring input frames, with the position kept as an
/// exact fraction (input frames × device rate), so a long file does not drift. A file of `n`
/// frames at `from` Hz gives `ceil(n × to / from)` frames. Channels as rodio maps them: output
/// channel `c` is input channel `c` if there is one, a mono input is copied to the second
/// channel too, and other extra channels are silent. A change of format between decoded buffers
/// (chained streams) is followed from the next buffer on.
pub(super) struct Convert {
    source: media::DecodedSource,
    out_channels: usize,
    to: u64,
    /// The input's rate, as of the last buffer taken.
    from: u64,
    /// Input frames in output channels: the last frame of the previous buffer, then the
    /// current buffer.
    frames: Vec<f32>,
    /// The input frame just before (or at) the next output frame.
    pos: usize,
    /// Where the next output frame lies between frame `pos` and the one after it, in units of
    /// 1/`to` of a frame.
    phase: u64,
    /// The source has no more buffers.
    drained: bool,
}

impl Convert {
    fn new(source: media::DecodedSource, channels: u16, rate: u32) -> Self {
        Convert {
            source,
            out_channels: usize::from(channels.max(1)),
            to: u64::from(rate.max(1)),
            from: u64::from(rate.max(1)),
            frames: Vec::new(),
            pos: 0,
            phase: 0,
            drained: false,
        }
    }

    fn frame_count(&self) -> usize {
        self.frames.len() / self.out_channels
    }

    /// Make sure frame `pos` and the one after it are in `frames`, unless the input has ended.
    fn top_up(&mut self) {
        let width = self.out_channels;
        while !self.drained && self.pos + 1 >= self.frame_count() {
            let keep = self.pos.min(self.frame_count());
            self.frames.drain(..keep * width);
            self.pos -= keep;
            let Some(chunk) = self.source.next_chunk() else {
                self.drained = true;
                break;
            };
            self.from = u64::from(chunk.sample_rate.get());
            let in_channels = usize::from(chunk.channels.get());
            let samples = chunk.samples;
            match (in_channels, width) {
                (i, o) if i == o => self.frames.extend_from_slice(samples),
                (1, 2) => self.frames.extend(samples.iter().flat_map(|&s| [s, s])),
                (i, o) => {
                    for input in samples.chunks_exact(i) {
                        self.frames.extend((0..o).map(|c| match input.get(c) {
                            Some(sample) => *sample,
                            None if c == 1 && i == 1 => input[0],
                            None => 0.0,
                        }));
                    }
                }
            }
        }
    }
}

impl Convert {
    /// Output frames into `out` for as long as both input frames around each are in `frames`.
    /// Returns the samples written. The hot loop: no allocation, no call, one branch per frame.
    fn interpolate(&mut self, out: &mut [f32]) -> usize {
        let width = self.out_channels;
        let (from, to) = (self.from, self.to);
        let per_to = 1.0 / to as f32;
        let (mut pos, mut phase) = (self.pos, self.phase);
        let mut written = 0;
        for frame in out.chunks_exact_mut(width) {
            while phase >= to {
                phase -= to;
                pos += 1;
            }
            let at = pos * width;
            let Some(pair) = self.frames.get(at..at + 2 * width) else {
                break;
            };
            let (a, b) = pair.split_at(width);
            let t = phase as f32 * per_to;
            for ((slot, a), b) in frame.iter_mut().zip(a).zip(b) {
                *slot = a + (b - a) * t;
            }
            written += width;
            phase += from;
        }
        (self.pos, self.phase) = (pos, phase);
        written
    }
}

impl Feed for Convert {
    fn fill(&mut self, out: &mut [f32]) -> usize {
        let width = self.out_channels;
        let mut written = 0;
        while written + width <= out.len() {
            written += self.interpolate(&mut out[written..]);
            if written + width > out.len() {
                break;
            }
            while self.phase >= self.to {
                self.phase -= self.to;
                self.pos += 1;
            }
            self.top_up();
            if (self.pos + 2) * width <= self.frames.len() {
                continue;
            }
            // The input has ended: its last frame is played as it is, then nothing.
            let at = self.pos * width;
            let Some(last) = self.frames.get(at..at + width) else {
                break;
            };
            out[written..written + width].copy_from_slice(last);
            written += width;
            self.phase += self.from;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp_wav(path: &Path, frames: u32, rate: u32) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wav = hound::WavWriter::create(path, spec).unwrap_or_else(|e| panic!("{e}"));
        for n in 0..frames {
            let value = ((n % 500) * 60) as i16;
            wav.write_sample(value).unwrap_or_else(|e| panic!("{e}"));
        }
        wav.finalize().unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn mono_44k1_becomes_stereo_48k_by_interpolation_without_losing_length() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ramp.wav");
        ramp_wav(&path, 44_100, 44_100);
        let Prepared { mut samples, .. } = prepare(&path, 0.0, 2, 48_000).unwrap();
        let mut out = vec![0.0_f32; 2 * 50_000];
        let got = samples.fill(&mut out);
        assert_eq!(got, 2 * 48_000, "one second stays one second");
        let frames: Vec<&[f32]> = out[..got].chunks(2).collect();
        assert!(frames.iter().all(|f| f[0] == f[1]), "mono on both channels");
        // A ramp stays a ramp: interpolated values lie between their neighbours.
        assert!(frames[..500].windows(2).all(|w| w[1][0] >= w[0][0]));
        let step = 60.0 / 32768.0;
        let expected = 100.0 * 44_100.0 / 48_000.0 * step;
        assert!(
            (frames[100][0] - expected).abs() < 1e-5,
            "{}",
            frames[100][0]
        );
        assert_eq!(measure(&path, 2, 48_000).ok(), Some(Duration::from_secs(1)));
    }
}
