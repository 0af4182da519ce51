//! Sample-accurate playout: the device's own clock, and the one rodio source that plays an
//! output's segments (chime, items, outro, alert...) each starting on an exact frame.
//!
//! Why: appending to a rodio `Player` when the start instant arrives puts the first sample at
//! the *next* device callback (0–10 ms late) and makes gaps depend on how often someone polls
//! for the end of the previous sound. Here the player queues a segment ahead of time with its
//! start condition (an instant, or "n frames after the previous segment ended"), and the
//! [`Timeline`], which the device pulls frame by frame, emits exact silence until that frame.
//!
//! How it knows which instant a frame reaches the device: every device is wrapped in a
//! [`ClockedDevice`] that, before each data callback, publishes the wall instant (`Instant`) at
//! which the buffer's first frame leaves the device. It comes from cpal's callback timestamp:
//!
//! - our real-time null/wav devices report `playback` = the tick's deadline (the instant the
//!   fake DAC consumes the buffer), which lies slightly *before* the callback time;
//! - ALSA reports `playback = callback + snd_pcm_delay` (the frames already queued ahead of this
//!   period): the output latency as the driver reports it. Where a driver reports no delay at all
//!   (some plugins), the latency is estimated as the configured buffer size.
//!
//! Frame `n` of a buffer then reaches the device at `first + n / rate`. Gaps between segments are
//! counted in frames, not measured against a clock, so they are exact by construction.
//!
//! Threads: [`Timeline`] runs on the device's audio thread; [`TimelineHandle`] is used by the
//! player thread. They talk through a channel plus an atomic flag the audio thread checks at the
//! start of every buffer, so a push or a clear takes effect at the next buffer the device asks
//! for (on a real-time device: at once, if it was asleep; see below).
//!
//! Cost: the device's data callback calls [`Timeline::fill`] once per buffer, which writes runs of
//! silence with `fill(0.0)` and asks the segment on air for whole blocks of samples ([`Feed`]),
//! so the per-sample work is the decoder's and the resampler's, not ours.
//!
//! Idle: once nothing has played for [`IDLE_AFTER`] and nothing is queued, the timeline tells the
//! device's [`IdleGate`] it may sleep (the null device then stops ticking; other devices ignore
//! it), and every push or clear wakes it. A device that slept did not ask for the frames of its
//! sleep; the timeline counts them anyway from the device clock when it wakes, so "n frames after
//! the previous sound" stays true across a sleep.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::DeviceTrait;
use cpal::{
    Data, DeviceDescription, DeviceId, Error, InputCallbackInfo, OutputCallbackInfo, SampleFormat,
    StreamConfig, SupportedStreamConfig,
};
use rodio::{ChannelCount, SampleRate};

use super::pacer::IdleGate;

/// After this much silence with nothing queued, the device may sleep.
pub(super) const IDLE_AFTER: Duration = Duration::from_millis(500);

/// Audio in device format (the stream's channels and rate, interleaved), pulled in blocks.
pub(super) trait Feed: Send {
    /// Write the next samples into `out` from its start and say how many were written. Fewer
    /// than `out.len()` means the audio has ended; it is not asked again. Called on the audio
    /// thread: must not block.
    fn fill(&mut self, out: &mut [f32]) -> usize;
}

/// Any iterator of samples is a feed (tests, and sources without a block path).
impl<I: Iterator<Item = f32> + Send> Feed for I {
    fn fill(&mut self, out: &mut [f32]) -> usize {
        let mut written = 0;
        for slot in out.iter_mut() {
            match self.next() {
                Some(sample) => *slot = sample,
                None => break,
            }
            written += 1;
        }
        written
    }
}

/// Samples in device format, as the timeline plays them.
pub(super) type Samples = Box<dyn Feed>;

/// The wall instant at which the current buffer's first frame reaches the device. Written by
/// [`ClockedDevice`]'s callback wrapper and read by the [`Timeline`], both on the audio thread;
/// the player thread reads `ticks` to see that the device is alive.
pub(super) struct DeviceClock {
    anchor: Instant,
    ticks: AtomicU64,
    /// Nanoseconds from `anchor` (negative if before it).
    first_frame_ns: AtomicI64,
}

impl DeviceClock {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(DeviceClock {
            anchor: Instant::now(),
            ticks: AtomicU64::new(0),
            first_frame_ns: AtomicI64::new(0),
        })
    }

    fn publish(&self, first_frame: Instant) {
        let ns = signed_nanos(self.anchor, first_frame);
        self.first_frame_ns.store(ns, Ordering::Relaxed);
        self.ticks.fetch_add(1, Ordering::Release);
    }

    /// How many buffers the device has asked for so far.
    pub(super) fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }

    fn read(&self) -> (u64, Instant) {
        let ticks = self.ticks.load(Ordering::Acquire);
        let ns = self.first_frame_ns.load(Ordering::Relaxed);
        (ticks, offset(self.anchor, ns))
    }
}

/// `to - from` in nanoseconds, signed, saturating.
fn signed_nanos(from: Instant, to: Instant) -> i64 {
    match to.checked_duration_since(from) {
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        None => -i64::try_from(from.duration_since(to).as_nanos()).unwrap_or(i64::MAX),
    }
}

fn offset(anchor: Instant, ns: i64) -> Instant {
    let magnitude = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        anchor + magnitude
    } else {
        anchor.checked_sub(magnitude).unwrap_or(anchor)
    }
}

/// Any cpal output device, with its data callback wrapped so that [`DeviceClock`] learns when
/// each buffer reaches the device. Everything else is passed through unchanged.
#[derive(Clone)]
pub(super) struct ClockedDevice {
    inner: cpal::Device,
    clock: Arc<DeviceClock>,
    /// Hardware devices: when the driver reports no output latency, assume the configured buffer
    /// is full ahead of us. Our own real-time devices report the truth and leave this off.
    estimate_latency: bool,
}

// cpal wants devices comparable, hashable and printable: the wrapped device is what counts.
impl PartialEq for ClockedDevice {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for ClockedDevice {}

impl std::hash::Hash for ClockedDevice {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl std::fmt::Debug for ClockedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClockedDevice").field(&self.inner).finish()
    }
}

impl std::fmt::Display for ClockedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

impl ClockedDevice {
    pub(super) fn wrap(
        inner: cpal::Device,
        clock: Arc<DeviceClock>,
        estimate_latency: bool,
    ) -> cpal::Device {
        cpal::Device::from(cpal::platform::CustomDevice::from_device(ClockedDevice {
            inner,
            clock,
            estimate_latency,
        }))
    }
}

impl DeviceTrait for ClockedDevice {
    type SupportedInputConfigs = cpal::SupportedInputConfigs;
    type SupportedOutputConfigs = cpal::SupportedOutputConfigs;
    type Stream = cpal::Stream;

    fn description(&self) -> Result<DeviceDescription, Error> {
        self.inner.description()
    }

    fn id(&self) -> Result<DeviceId, Error> {
        self.inner.id()
    }

    fn supported_input_configs(&self) -> Result<Self::SupportedInputConfigs, Error> {
        self.inner.supported_input_configs()
    }

    fn supported_output_configs(&self) -> Result<Self::SupportedOutputConfigs, Error> {
        self.inner.supported_output_configs()
    }

    fn default_input_config(&self) -> Result<SupportedStreamConfig, Error> {
        self.inner.default_input_config()
    }

    fn default_output_config(&self) -> Result<SupportedStreamConfig, Error> {
        self.inner.default_output_config()
    }

    fn build_input_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        error_callback: E,
        timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        self.inner.build_input_stream_raw(
            config,
            sample_format,
            data_callback,
            error_callback,
            timeout,
        )
    }

    fn build_output_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        mut data_callback: D,
        error_callback: E,
        timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let clock = Arc::clone(&self.clock);
        let estimate = match (self.estimate_latency, config.buffer_size) {
            (true, cpal::BufferSize::Fixed(frames)) if config.sample_rate > 0 => {
                Duration::from_secs_f64(f64::from(frames) / f64::from(config.sample_rate))
            }
            _ => Duration::ZERO,
        };
        let wrapped = move |data: &mut Data, info: &OutputCallbackInfo| {
            let now = Instant::now();
            let stamp = info.timestamp();
            let first_frame = match stamp.playback.checked_duration_since(stamp.callback) {
                Some(ahead) if !ahead.is_zero() => now + ahead,
                Some(_) => now + estimate,
                // Our real-time devices: the tick's deadline, which has just passed.
                None => now
                    .checked_sub(stamp.callback.duration_since(stamp.playback))
                    .unwrap_or(now),
            };
            clock.publish(first_frame);
            data_callback(data, info);
        };
        self.inner
            .build_output_stream_raw(config, sample_format, wrapped, error_callback, timeout)
    }
}

/// When a queued segment may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// On the first frame that reaches the device at or after this instant (at once if past).
    At(Instant),
    /// On the next frame.
    Asap,
    /// This many frames of silence after the previous segment ended (at once if already past).
    After(u64),
}

/// A piece of audio for the timeline.
pub(super) struct Segment {
    pub id: u64,
    pub start: Start,
    pub samples: Samples,
}

/// What the timeline tells the player (on the audio thread; instants are device arrival times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeviceEvent {
    /// The segment's first frame reaches the device at `at`.
    Started { id: u64, at: Instant },
    /// The frame after the segment's last one reaches the device at `at`: the instant its sound
    /// ends. `cut`: it was cleared before its end.
    Ended { id: u64, at: Instant, cut: bool },
    /// A clear removed the segment before it started.
    Dropped { id: u64 },
    /// A clear has been carried out (every segment it removed has been reported).
    Cleared,
    /// The stream reported that the device is gone (sent by the error callback).
    StreamFailed,
}

enum Control {
    Push(Segment),
    Clear,
    Remove(u64),
}

/// The player thread's side of a [`Timeline`].
pub(super) struct TimelineHandle {
    control: Sender<Control>,
    pending: Arc<AtomicBool>,
    gate: Arc<IdleGate>,
    clock: Arc<DeviceClock>,
    channels: u16,
    rate: u32,
}

impl TimelineHandle {
    /// Queue a segment after those already queued. Never blocks.
    pub(super) fn push(&self, segment: Segment) {
        self.send(Control::Push(segment));
    }

    /// Drop everything: the segment on air ends at the next frame (`Ended { cut: true }`), queued
    /// ones are reported `Dropped`, then `Cleared`. Never blocks.
    pub(super) fn clear(&self) {
        self.send(Control::Clear);
    }

    /// Take one segment out: on air, it ends at the next frame (`Ended { cut: true }`) and the
    /// segment after it starts as it was queued to (a pause after this end); still queued, it is
    /// reported `Dropped` and the segment after it, if it was to follow it, starts when it would
    /// have. Unknown ids are ignored. Never blocks.
    pub(super) fn remove(&self, id: u64) {
        self.send(Control::Remove(id));
    }

    fn send(&self, control: Control) {
        // A closed channel means the stream is gone; the player learns that from the device.
        let _ = self.control.send(control);
        self.pending.store(true, Ordering::Release);
        // After the flag: a device that looks for work after this kick finds it.
        self.gate.kick();
    }

    pub(super) fn channels(&self) -> u16 {
        self.channels
    }

    pub(super) fn rate(&self) -> u32 {
        self.rate
    }

    /// Frames in `length` at the device rate (rounded to the nearest frame).
    pub(super) fn frames(&self, length: Duration) -> u64 {
        (length.as_secs_f64() * f64::from(self.rate)).round() as u64
    }

    pub(super) fn device_ticks(&self) -> u64 {
        self.clock.ticks()
    }
}

/// What the device plays: silence, or the segment whose time has come.
pub(super) struct Timeline {
    control: Receiver<Control>,
    pending: Arc<AtomicBool>,
    clock: Arc<DeviceClock>,
    gate: Arc<IdleGate>,
    /// The gate's sleep count when last looked at.
    sleeps_seen: u64,
    events: Box<dyn FnMut(DeviceEvent) + Send>,
    channels: usize,
    /// Nanoseconds per frame, as f64 for sub-nanosecond accumulation.
    frame_ns: f64,
    /// [`IDLE_AFTER`] in frames.
    idle_after: u64,

    /// The next frame to render, counted since the timeline was created.
    frame: u64,
    /// The buffer the device is filling: its number, its first frame, and when that arrives.
    tick_seen: u64,
    tick_first_frame: u64,
    tick_at: Instant,

    queue: VecDeque<Segment>,
    current: Option<(u64, Samples)>,
    /// The first frame after the last segment ended (for `Start::After`).
    last_end: u64,

    /// One frame, for the per-sample [`Iterator`] view.
    out: Vec<f32>,
    out_pos: usize,
}

impl Timeline {
    /// A timeline for a stream of `channels` at `rate`, and the handle that feeds it. `events`
    /// is called on the audio thread and must not block. `gate` is the device's (a device that
    /// cannot sleep ignores it).
    pub(super) fn new(
        channels: ChannelCount,
        rate: SampleRate,
        clock: Arc<DeviceClock>,
        gate: Arc<IdleGate>,
        events: Box<dyn FnMut(DeviceEvent) + Send>,
    ) -> (Timeline, TimelineHandle) {
        let (control, receiver) = mpsc::channel();
        let pending = Arc::new(AtomicBool::new(false));
        let handle = TimelineHandle {
            control,
            pending: Arc::clone(&pending),
            gate: Arc::clone(&gate),
            clock: Arc::clone(&clock),
            channels: channels.get(),
            rate: rate.get(),
        };
        let width = usize::from(channels.get());
        let (tick, at) = clock.read();
        let sleeps_seen = gate.sleeps();
        let timeline = Timeline {
            control: receiver,
            pending,
            clock,
            gate,
            sleeps_seen,
            events,
            channels: width,
            frame_ns: 1e9 / f64::from(rate.get()),
            idle_after: (IDLE_AFTER.as_secs_f64() * f64::from(rate.get())).round() as u64,
            frame: 0,
            tick_seen: tick,
            tick_first_frame: 0,
            tick_at: at,
            queue: VecDeque::new(),
            current: None,
            last_end: 0,
            out: vec![0.0; width],
            out_pos: width,
        };
        (timeline, handle)
    }

    /// When `frame` reaches the device.
    fn instant_of(&self, frame: u64) -> Instant {
        let frames = frame.saturating_sub(self.tick_first_frame);
        self.tick_at + Duration::from_nanos((frames as f64 * self.frame_ns).round() as u64)
    }

    /// Render the device's next buffer (interleaved, whole frames) into `out`. Audio thread.
    pub(super) fn fill(&mut self, out: &mut [f32]) {
        let width = self.channels;
        self.observe_tick();
        if self.pending.load(Ordering::Acquire) {
            self.pending.store(false, Ordering::Release);
            self.take_controls();
        }
        let frames = out.len() / width;
        let mut done = 0;
        while done < frames {
            let left = frames - done;
            if self.current.is_none() {
                let wait = self.frames_until_due(left);
                let silent = wait.unwrap_or(left).min(left);
                out[done * width..(done + silent) * width].fill(0.0);
                done += silent;
                self.frame += silent as u64;
                if done == frames || wait.is_none() {
                    break;
                }
                self.start_head();
            }
            let Some((id, samples)) = self.current.as_mut() else {
                break;
            };
            let id = *id;
            let region = &mut out[done * width..frames * width];
            let want = region.len();
            let got = samples.fill(region).min(want);
            if got == want {
                self.frame += left as u64;
                break;
            }
            // Ended: after its last (possibly partial, zero-padded) frame. The next segment may
            // start on the frame after that, in this same buffer.
            let used = got.div_ceil(width);
            region[got..used * width].fill(0.0);
            done += used;
            self.frame += used as u64;
            self.current = None;
            self.last_end = self.frame;
            let at = self.instant_of(self.frame);
            (self.events)(DeviceEvent::Ended { id, at, cut: false });
        }
        out[frames * width..].fill(0.0);
        let quiet = self.current.is_none()
            && self.queue.is_empty()
            && self.frame >= self.last_end.saturating_add(self.idle_after);
        if quiet {
            self.gate.request_idle();
        }
    }

    /// A new buffer: re-anchor frame instants on the device clock. If the device slept since the
    /// last buffer, the frames of its sleep are counted as played (silence).
    fn observe_tick(&mut self) {
        let (tick, at) = self.clock.read();
        if tick == self.tick_seen {
            return;
        }
        let sleeps = self.gate.sleeps();
        if sleeps != self.sleeps_seen {
            self.sleeps_seen = sleeps;
            let expected = self.instant_of(self.frame);
            if let Some(slept) = at.checked_duration_since(expected) {
                self.frame += (slept.as_nanos() as f64 / self.frame_ns).round() as u64;
            }
        }
        self.tick_seen = tick;
        self.tick_first_frame = self.frame;
        self.tick_at = at;
    }

    fn take_controls(&mut self) {
        while let Ok(control) = self.control.try_recv() {
            match control {
                Control::Push(segment) => self.queue.push_back(segment),
                Control::Clear => {
                    if let Some((id, _)) = self.current.take() {
                        self.last_end = self.frame;
                        let at = self.instant_of(self.frame);
                        (self.events)(DeviceEvent::Ended { id, at, cut: true });
                    }
                    for segment in self.queue.drain(..) {
                        (self.events)(DeviceEvent::Dropped { id: segment.id });
                    }
                    (self.events)(DeviceEvent::Cleared);
                }
                Control::Remove(id) => self.remove(id),
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if self
            .current
            .as_ref()
            .is_some_and(|(on_air, _)| *on_air == id)
        {
            self.current = None;
            self.last_end = self.frame;
            let at = self.instant_of(self.frame);
            (self.events)(DeviceEvent::Ended { id, at, cut: true });
            return;
        }
        let Some(index) = self.queue.iter().position(|s| s.id == id) else {
            return;
        };
        if let Some(removed) = self.queue.remove(index) {
            // The next one takes its place (its own pause counted from the same sound).
            if let Some(next) = self.queue.get_mut(index) {
                if matches!(next.start, Start::After(_)) {
                    next.start = removed.start;
                }
            }
        }
        (self.events)(DeviceEvent::Dropped { id });
    }

    /// Is the head of the queue due at `frame`?
    fn due_at(&self, start: Start, frame: u64) -> bool {
        match start {
            Start::Asap => true,
            Start::After(gap) => frame >= self.last_end.saturating_add(gap),
            // Round to the nearest frame: start if this frame is less than half a frame early.
            Start::At(at) => {
                self.instant_of(frame) + Duration::from_nanos((self.frame_ns / 2.0) as u64) > at
            }
        }
    }

    /// How many frames from now the head of the queue starts (`None`: nothing queued). Exact
    /// when it is within `horizon` frames; beyond that, only "not in this buffer".
    fn frames_until_due(&self, horizon: usize) -> Option<usize> {
        let start = self.queue.front()?.start;
        if self.due_at(start, self.frame) {
            return Some(0);
        }
        let estimate = match start {
            Start::Asap => 0,
            Start::After(gap) => self.last_end.saturating_add(gap).saturating_sub(self.frame),
            Start::At(at) => {
                let half = self.frame_ns / 2.0;
                let from_anchor = signed_nanos(self.tick_at, at) as f64 - half;
                let frame = self.tick_first_frame as f64 + (from_anchor / self.frame_ns).ceil();
                (frame.max(0.0) as u64).saturating_sub(self.frame)
            }
        };
        let horizon = horizon as u64;
        if estimate > horizon {
            return Some(usize::try_from(estimate).unwrap_or(usize::MAX));
        }
        // The estimate can be a frame off from rounding: settle it on the exact rule.
        let mut k = estimate;
        while k > 1 && self.due_at(start, self.frame + k - 1) {
            k -= 1;
        }
        while k <= horizon && !self.due_at(start, self.frame + k) {
            k += 1;
        }
        Some(usize::try_from(k).unwrap_or(usize::MAX))
    }

    /// Put the head of the queue on air at the current frame.
    fn start_head(&mut self) {
        let Some(segment) = self.queue.pop_front() else {
            return;
        };
        let at = self.instant_of(self.frame);
        (self.events)(DeviceEvent::Started { id: segment.id, at });
        self.current = Some((segment.id, segment.samples));
    }
}

/// One sample at a time (tests): the same rendering, a frame per [`Timeline::fill`].
impl Iterator for Timeline {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        if self.out_pos >= self.out.len() {
            let mut frame = std::mem::take(&mut self.out);
            self.fill(&mut frame);
            self.out = frame;
            self.out_pos = 0;
        }
        let sample = self.out[self.out_pos];
        self.out_pos += 1;
        Some(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZero;
    use std::sync::Mutex;

    fn nz16(n: u16) -> NonZero<u16> {
        NonZero::new(n).unwrap_or(NonZero::<u16>::MIN)
    }

    fn timeline() -> (Timeline, TimelineHandle, Arc<Mutex<Vec<DeviceEvent>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let clock = DeviceClock::new();
        let (timeline, handle) = Timeline::new(
            nz16(1),
            NonZero::new(1000).unwrap_or(NonZero::<u32>::MIN),
            clock,
            Arc::new(IdleGate::default()),
            Box::new(move |e| sink.lock().unwrap_or_else(|p| p.into_inner()).push(e)),
        );
        (timeline, handle, events)
    }

    fn ones(n: usize) -> Samples {
        Box::new(std::iter::repeat_n(1.0, n))
    }

    #[test]
    fn gaps_are_counted_in_frames_and_a_clear_cuts_at_the_next_frame() {
        let (mut timeline, handle, events) = timeline();
        handle.push(Segment {
            id: 1,
            start: Start::Asap,
            samples: ones(3),
        });
        handle.push(Segment {
            id: 2,
            start: Start::After(2),
            samples: ones(100),
        });
        let first: Vec<f32> = timeline.by_ref().take(8).collect();
        assert_eq!(first, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        handle.clear();
        let after: Vec<f32> = timeline.by_ref().take(2).collect();
        assert_eq!(after, [0.0, 0.0]);
        let events = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                DeviceEvent::Started { id, .. } => format!("start {id}"),
                DeviceEvent::Ended { id, cut, .. } => format!("end {id} {cut}"),
                DeviceEvent::Dropped { id } => format!("drop {id}"),
                DeviceEvent::Cleared => "cleared".to_owned(),
                DeviceEvent::StreamFailed => "failed".to_owned(),
            })
            .collect();
        assert_eq!(
            kinds,
            ["start 1", "end 1 false", "start 2", "end 2 true", "cleared"]
        );
        // 1000 Hz: the first segment lasts exactly 3 ms, the gap is exactly 2 ms.
        let (DeviceEvent::Started { at: s1, .. }, DeviceEvent::Ended { at: e1, .. }) =
            (events[0], events[1])
        else {
            panic!("{events:?}");
        };
        assert_eq!(e1 - s1, Duration::from_millis(3));
        let DeviceEvent::Started { at: s2, .. } = events[2] else {
            panic!("{events:?}");
        };
        assert_eq!(s2 - e1, Duration::from_millis(2));
    }

    #[test]
    fn a_removed_segment_is_cut_or_dropped_and_the_next_one_keeps_its_place() {
        let (mut timeline, handle, events) = timeline();
        for (id, start) in [(1, Start::Asap), (2, Start::After(1)), (3, Start::After(2))] {
            handle.push(Segment {
                id,
                start,
                samples: ones(4),
            });
        }
        let first: Vec<f32> = timeline.by_ref().take(2).collect();
        assert_eq!(first, [1.0, 1.0]);
        // 2 is queued: 3 takes its place (one frame after 1's end); 1 on air is cut next frame.
        handle.remove(2);
        handle.remove(1);
        let rest: Vec<f32> = timeline.by_ref().take(7).collect();
        assert_eq!(rest, [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let events = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let summary: Vec<(u64, &str)> = events
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::Started { id, .. } => Some((*id, "start")),
                DeviceEvent::Ended { id, cut: true, .. } => Some((*id, "cut")),
                DeviceEvent::Ended { id, .. } => Some((*id, "end")),
                DeviceEvent::Dropped { id } => Some((*id, "drop")),
                _ => None,
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "start"),
                (2, "drop"),
                (1, "cut"),
                (3, "start"),
                (3, "end")
            ]
        );
    }

    #[test]
    fn a_segment_at_an_instant_starts_on_the_nearest_frame() {
        let (mut timeline, handle, events) = timeline();
        // Frame instants come from the device clock; without callbacks the timeline counts from
        // its creation: frame n at creation + n ms.
        let at = timeline.tick_at + Duration::from_micros(4_400);
        handle.push(Segment {
            id: 7,
            start: Start::At(at),
            samples: ones(1),
        });
        let out: Vec<f32> = timeline.by_ref().take(6).collect();
        assert_eq!(out, [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let events = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(matches!(events[0], DeviceEvent::Started { id: 7, .. }));
    }
}
