//! A cpal output stream with no hardware behind it that still keeps real time: a thread asks the
//! data callback for exactly 10 ms of f32 audio every 10 ms, against fixed deadlines, and hands
//! each buffer to a sink (discard it, write it to a file...).
//!
//! It exists because ALSA's `null` and `file` plugins consume audio hundreds of times faster than
//! real time, so a test or a demo box on them cannot tell how long anything took. It holds the
//! crate's single `unsafe` block (cpal's only constructor for `Data`, `Data::from_parts`); the
//! rest of the crate denies unsafe code.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::StreamTrait;
use cpal::{
    Data, Error, ErrorKind, FrameCount, OutputCallbackInfo, OutputStreamTimestamp, SampleFormat,
    StreamInstant,
};

/// How often the data callback runs. 10 ms is what a sound card with a small buffer would do,
/// and it keeps the worst-case delay of a stop or a start small.
pub const TICK: Duration = Duration::from_millis(10);

/// If the thread wakes up later than this behind its deadline (the machine was suspended or
/// badly overloaded), it reports an xrun and starts counting from now instead of calling the
/// callback in a burst to catch up, which is what a real device does after an underrun.
const MAX_LAG: Duration = Duration::from_millis(200);

/// The stream's format: f32 samples, interleaved.
#[derive(Debug, Clone)]
pub struct PacedConfig {
    pub sample_rate: u32,
    pub channels: u16,
    /// Name of the pacing thread (shows up in `top -H` and in panics).
    pub thread_name: String,
}

impl PacedConfig {
    /// Frames per tick: one hundredth of the sample rate (at least one).
    pub fn frames_per_tick(&self) -> usize {
        (self.sample_rate as usize / 100).max(1)
    }
}

struct Controls {
    exit: AtomicBool,
    paused: AtomicBool,
}

/// A running paced stream. Starts paused (as cpal expects); `play()` starts the callbacks.
/// Dropping it stops the thread and waits for it, so the sink has finished (a file is complete)
/// when the drop returns.
pub struct PacedStream {
    controls: Arc<Controls>,
    start: Instant,
    frames: FrameCount,
    handle: Option<JoinHandle<()>>,
}

impl PacedStream {
    /// Start the pacing thread.
    ///
    /// `sink` receives every buffer after the data callback has filled it, with the instant its
    /// first frame is due (the tick's deadline: when this fake device "plays" it). If it returns an
    /// error, the error goes to `error_callback` once (as `StreamInvalidated`) and the sink is
    /// not called again; the stream itself keeps time, so whoever owns it decides what to do.
    /// If the data callback panics, the panic is reported the same way and the thread ends.
    ///
    /// Errors: only if the OS refuses to start a thread.
    pub fn spawn<D, E, S>(
        config: PacedConfig,
        mut data_callback: D,
        mut error_callback: E,
        mut sink: S,
    ) -> std::io::Result<PacedStream>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
        S: FnMut(&[f32], Instant) -> Result<(), String> + Send + 'static,
    {
        let controls = Arc::new(Controls {
            exit: AtomicBool::new(false),
            paused: AtomicBool::new(true),
        });
        let start = Instant::now();
        let frames = config.frames_per_tick();
        let thread_controls = Arc::clone(&controls);
        let handle = std::thread::Builder::new()
            .name(config.thread_name.clone())
            .spawn(move || {
                let mut buffer = vec![0.0_f32; frames * usize::from(config.channels.max(1))];
                let mut sink_ok = true;
                let mut deadline = start + TICK;
                while !thread_controls.exit.load(Ordering::Acquire) {
                    // Fixed absolute deadlines: a late wake-up shortens the next sleep instead of
                    // adding up, so over a minute the stream is as exact as the OS clock.
                    let now = Instant::now();
                    if let Some(wait) = deadline.checked_duration_since(now) {
                        std::thread::sleep(wait);
                    } else if now.duration_since(deadline) > MAX_LAG {
                        error_callback(Error::with_message(
                            ErrorKind::Xrun,
                            format!(
                                "paced stream woke {:?} late; skipping ahead",
                                now.duration_since(deadline)
                            ),
                        ));
                        deadline = now;
                    }
                    let due = deadline;
                    let playback = stream_instant(deadline.saturating_duration_since(start));
                    deadline += TICK;
                    if thread_controls.paused.load(Ordering::Acquire) {
                        continue;
                    }

                    buffer.fill(0.0);
                    let callback = stream_instant(start.elapsed());
                    let info =
                        OutputCallbackInfo::new(OutputStreamTimestamp { callback, playback });
                    let len = buffer.len();
                    // SAFETY: the pointer is the first sample of `buffer`, `len` is its length in
                    // samples, and the samples are f32 as declared. The `Data` lives only for this
                    // call on this thread: the callback gets `&mut Data` and, being `'static`,
                    // cannot keep it; no other `Data` exists on this thread to swap it with.
                    #[allow(unsafe_code)]
                    let mut data = unsafe {
                        Data::from_parts(buffer.as_mut_ptr().cast(), len, SampleFormat::F32)
                    };
                    let called = catch_unwind(AssertUnwindSafe(|| data_callback(&mut data, &info)));
                    if called.is_err() {
                        error_callback(Error::with_message(
                            ErrorKind::StreamInvalidated,
                            "the audio callback panicked; the stream has stopped",
                        ));
                        break;
                    }

                    if sink_ok {
                        if let Err(message) = sink(&buffer, due) {
                            sink_ok = false;
                            error_callback(Error::with_message(
                                ErrorKind::StreamInvalidated,
                                message,
                            ));
                        }
                    }
                }
            })?;
        Ok(PacedStream {
            controls,
            start,
            frames: FrameCount::try_from(frames).unwrap_or(FrameCount::MAX),
            handle: Some(handle),
        })
    }
}

fn stream_instant(since_start: Duration) -> StreamInstant {
    StreamInstant::new(since_start.as_secs(), since_start.subsec_nanos())
}

impl StreamTrait for PacedStream {
    fn play(&self) -> Result<(), Error> {
        self.controls.paused.store(false, Ordering::Release);
        Ok(())
    }

    fn pause(&self) -> Result<(), Error> {
        self.controls.paused.store(true, Ordering::Release);
        Ok(())
    }

    fn now(&self) -> StreamInstant {
        stream_instant(self.start.elapsed())
    }

    fn buffer_size(&self) -> Result<FrameCount, Error> {
        Ok(self.frames)
    }
}

impl Drop for PacedStream {
    fn drop(&mut self) {
        self.controls.exit.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            // A panic on the pacing thread was already reported through the error callback.
            let _ = handle.join();
        }
    }
}
