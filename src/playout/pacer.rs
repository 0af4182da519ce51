//! A cpal output stream with no hardware behind it that still keeps real time: a thread asks the
//! data callback for exactly 10 ms of f32 audio every 10 ms, against fixed deadlines, and hands
//! each buffer to a sink (discard it, write it to a file...).
//!
//! It exists because ALSA's `null` and `file` plugins consume audio hundreds of times faster than
//! real time, so a test or a demo box on them cannot tell how long anything took. It holds the
//! crate's single `unsafe` block (cpal's only constructor for `Data`, `Data::from_parts`); the
//! rest of the crate denies unsafe code.
//!
//! A stream given an [`IdleGate`] stops ticking while whoever fills it has nothing to play (the
//! gate says so from inside the data callback) and starts again the moment audio is queued: an
//! idle output then costs no wake-ups at all, instead of a hundred a second of silence.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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

/// Lets the source of a paced stream put its thread to sleep while there is nothing to play, and
/// wakes it when there is. Shared by the stream's thread, the source (on that thread, inside the
/// data callback) and whoever queues audio (any thread).
///
/// The handshake cannot lose a wake-up: the source asks to idle only after it has looked for
/// queued audio, and a [`kick`](IdleGate::kick) that came after that look but before the ask
/// cancels the ask.
#[derive(Debug, Default)]
pub struct IdleGate {
    state: Mutex<GateState>,
    wake: Condvar,
    /// How many times a stream has slept on this gate (the source re-counts its frames after).
    sleeps: AtomicU64,
}

#[derive(Debug, Default)]
struct GateState {
    /// The source has nothing to play: the thread may sleep after this buffer.
    idle: bool,
    /// Audio was queued since the source last asked to idle.
    kicked: bool,
    /// The stream is being dropped.
    exit: bool,
}

impl IdleGate {
    /// Called by the source inside the data callback, after it found nothing queued: the stream
    /// may sleep once this buffer is done. Refused (false) if audio was queued since the last
    /// ask; the source asks again at its next buffer.
    pub fn request_idle(&self) -> bool {
        let mut state = lock(&self.state);
        if std::mem::take(&mut state.kicked) {
            state.idle = false;
            return false;
        }
        state.idle = true;
        true
    }

    /// Audio has been queued (call after queuing it): wake the stream now. Any thread; cheap.
    pub fn kick(&self) {
        let mut state = lock(&self.state);
        state.kicked = true;
        if std::mem::take(&mut state.idle) {
            self.wake.notify_all();
        }
    }

    /// How many times a stream has slept on this gate so far.
    pub fn sleeps(&self) -> u64 {
        self.sleeps.load(Ordering::Acquire)
    }

    /// The stream's thread, between buffers: sleep while the source is idle. True if it slept.
    fn wait_while_idle(&self) -> bool {
        let mut state = lock(&self.state);
        if !state.idle || state.exit {
            return false;
        }
        // Counted before sleeping: the source reads it on the first buffer after the wake.
        self.sleeps.fetch_add(1, Ordering::AcqRel);
        while state.idle && !state.exit {
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        true
    }

    fn shut(&self) {
        lock(&self.state).exit = true;
        self.wake.notify_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running paced stream. Starts paused (as cpal expects); `play()` starts the callbacks.
/// Dropping it stops the thread and waits for it, so the sink has finished (a file is complete)
/// when the drop returns.
pub struct PacedStream {
    controls: Arc<Controls>,
    gate: Option<Arc<IdleGate>>,
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
    /// With a `gate`, the thread sleeps between buffers while the source says it is idle (no
    /// ticks, no callbacks, nothing for the sink) and, once kicked, calls the callback at once
    /// and counts its deadlines from then: the device "plays" the first frame the moment it
    /// wakes, which is what the callback is told.
    ///
    /// Errors: only if the OS refuses to start a thread.
    pub fn spawn<D, E, S>(
        config: PacedConfig,
        gate: Option<Arc<IdleGate>>,
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
        let thread_gate = gate.clone();
        let handle = std::thread::Builder::new()
            .name(config.thread_name.clone())
            .spawn(move || {
                // Zeroed once; the callback writes every sample of it each time (cpal's contract).
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

                    if thread_gate.as_ref().is_some_and(|g| g.wait_while_idle()) {
                        // Woken because audio is queued: the next buffer is due now.
                        deadline = Instant::now();
                    }
                }
            })?;
        Ok(PacedStream {
            controls,
            gate,
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
        if let Some(gate) = &self.gate {
            gate.shut();
        }
        if let Some(handle) = self.handle.take() {
            // A panic on the pacing thread was already reported through the error callback.
            let _ = handle.join();
        }
    }
}
