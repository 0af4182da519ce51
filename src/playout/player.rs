//! The player thread of one output: opens and keeps its device, queues each slot job's sounds
//! on the output's [`timeline`](super::timeline) ahead of time with exact starts, preempts for
//! emergencies, drives the amplifier, and journals every airing at the instants its first and
//! last samples reached the device.
//!
//! The thread is an event loop over one channel: commands from the handle (job, emergency, stop,
//! shutdown) and events from the device (a sound started, ended, was dropped; the stream died).
//! It never sleeps except in that channel's `recv_timeout`, so an emergency is acted on the
//! moment it arrives, and it keeps at most two sounds queued on the device (the one on air and
//! the next), so a preemption has little to undo.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use super::amp::Amp;
use super::backend::{self, DeviceHooks, OpenOutput};
use super::realtime::SoundLog;
use super::source::{self, Health, Prepared};
use super::timeline::{DeviceEvent, Segment, Start};
use super::{lock, Command, EmergencyJob, Journal, NowPlaying, OutputSpec, OutputStatus, SlotJob};
use crate::clock::{Clock, SharedClock};
use crate::domain::{AiringInfo, AirtimeStatus};

/// How often a device that would not open is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(3);
/// The loop wakes at least this often while it has work (heartbeat, clock checks; the wall
/// clock can be stepped).
const COARSE_STEP: Duration = Duration::from_millis(250);
/// ... and this often while it has none (nothing queued or playing): only the heartbeat needs it
/// (the runner's health check allows 10 s), and an idle box should not wake.
const IDLE_STEP: Duration = Duration::from_secs(5);
/// How long before a slot's start its first sound is queued on the device. The device then
/// plays exact silence until the instant, so a longer lead costs nothing; it covers decoding the
/// chime and opening the first item (tens of ms in a debug build) and a player thread starved of
/// CPU for most of a second on an overloaded box. (The runner submits jobs 2 s ahead.)
const LEAD: Duration = Duration::from_secs(1);
/// A sound still playing this long after its length has stalled: a hung device, not audio.
const OVERRUN_GRACE: Duration = Duration::from_secs(30);
/// A sound whose length nobody knows gets this long before it counts as stalled.
const UNKNOWN_LENGTH: Duration = Duration::from_secs(120);
/// The device asked for no audio for this long while sound was queued: it has stalled.
const DEVICE_SILENT: Duration = Duration::from_secs(5);
/// How long the device may take to confirm a clear before open rows are closed by the clock.
const CLEAR_WAIT: Duration = Duration::from_millis(250);
/// After the last sound, the amplifier stays on if another job is due within this.
const AMP_HOLD: Duration = Duration::from_secs(60);
/// ... and is switched off only this long after the last sound reached the device (its tail).
const AMP_TAIL: Duration = Duration::from_millis(200);
/// The pause around an emergency's message until a slot job has told us the configured one.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// At shutdown, how long to wait for `amp_off` to finish.
const AMP_SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Start `player-<name>`. `None` (after logging and marking the status) if the OS refuses.
pub(super) fn spawn(
    spec: OutputSpec,
    clock: SharedClock,
    journal: Arc<dyn Journal>,
    status: Arc<Mutex<OutputStatus>>,
    (events, commands): (Sender<Command>, Receiver<Command>),
    heartbeat: super::Heartbeat,
    sounds: SoundLog,
) -> Option<JoinHandle<()>> {
    let name = spec.name.clone();
    let thread_status = Arc::clone(&status);
    let spawned = std::thread::Builder::new()
        .name(format!("player-{name}"))
        .spawn(move || {
            let amp = spec
                .amp
                .clone()
                .and_then(|control| Amp::spawn(&spec.name, control));
            let worker = Worker {
                spec,
                clock,
                journal,
                status: Arc::clone(&thread_status),
                commands,
                hooks: DeviceHooks { events, sounds },
                deferred: VecDeque::new(),
                queue: VecDeque::new(),
                pause: DEFAULT_PAUSE,
                job: None,
                emergencies: VecDeque::new(),
                emergency: None,
                flights: VecDeque::new(),
                cutting: Vec::new(),
                clearing: None,
                clears_pending: 0,
                next_id: 1,
                last_end: None,
                output: None,
                device_error: None,
                next_retry: Instant::now(),
                ticks_seen: (0, Instant::now()),
                orphaned: false,
                clock_live: true,
                heartbeat,
                amp,
                lengths: HashMap::new(),
            };
            if catch_unwind(AssertUnwindSafe(|| worker.run())).is_err() {
                // A bug, not a device: say so where the operator looks, keep other outputs going.
                let mut status = lock(&thread_status);
                status.device_ok = false;
                status.device_error = Some("the player stopped after an internal error".into());
                status.now_playing = None;
            }
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::error!(output = %name, %error, "cannot start the player thread");
            let mut status = lock(&status);
            status.device_ok = false;
            status.device_error = Some(format!("cannot start the player thread: {error}"));
            None
        }
    }
}

/// What a queued sound is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chime,
    /// Item `index` of the current slot job.
    Item(usize),
    Outro,
    Alert,
    /// A repetition of the current emergency's message.
    Message,
}

/// An item that could not be opened while the sound before it was queued: its `failed` row is
/// written when that sound ends (the moment it would have started).
struct Failure {
    /// Its index in the slot job (`None` for an emergency message).
    index: Option<usize>,
    airing: AiringInfo,
    detail: String,
}

/// A sound queued on the device, until the device reports it ended or dropped.
struct Flight {
    id: u64,
    kind: Kind,
    /// The airing to journal (items and emergency messages).
    airing: Option<AiringInfo>,
    /// The slot it belongs to (for the status).
    slot: String,
    health: Health,
    length: Option<Duration>,
    /// When it should start, as far as the player can tell; `started` once the device says.
    predicted_start: Instant,
    started: Option<Instant>,
    row: Option<i64>,
    failures: Vec<Failure>,
    /// Set when a clear was asked for: the detail of its `interrupted` row.
    cut_detail: Option<String>,
}

impl Flight {
    fn predicted_end(&self) -> Option<Instant> {
        Some(self.started.unwrap_or(self.predicted_start) + self.length?)
    }
}

/// The slot job being played.
struct JobRun {
    job: SlotJob,
    /// The next item to queue.
    next: usize,
    /// Something of the job has been queued: what follows comes after a pause.
    queued_any: bool,
    /// Something of the job has reached the device: it is on air (a stop drops it).
    on_air: bool,
    outro_done: bool,
    /// Where the job's first sound goes.
    first: Start,
}

/// The emergency being played.
struct EmergencyRun {
    job: EmergencyJob,
    /// Repetitions queued (or failed) so far.
    queued: u32,
    /// How the first sound (alert, or message without one) starts; the rest follow after pauses.
    first: Option<Start>,
}

struct Worker {
    spec: OutputSpec,
    clock: SharedClock,
    journal: Arc<dyn Journal>,
    status: Arc<Mutex<OutputStatus>>,
    commands: Receiver<Command>,
    hooks: DeviceHooks,
    /// Commands read while looking for device events, to handle next, in order.
    deferred: VecDeque<Command>,
    /// Jobs waiting for their start, in arrival order.
    queue: VecDeque<SlotJob>,
    /// The configured pause, as the last slot job carried it (emergencies use it too).
    pause: Duration,
    job: Option<JobRun>,
    emergencies: VecDeque<EmergencyJob>,
    emergency: Option<EmergencyRun>,
    /// Sounds queued on the device, oldest first (at most two are kept queued).
    flights: VecDeque<Flight>,
    /// Sounds a clear is removing, until the device confirms.
    cutting: Vec<Flight>,
    /// A clear is under way; past this instant its rows are closed by the clock.
    clearing: Option<Instant>,
    /// Clears sent and not yet confirmed by the device.
    clears_pending: u32,
    next_id: u64,
    /// When the last sound ended at the device.
    last_end: Option<Instant>,
    output: Option<OpenOutput>,
    /// Why the device is not open (last attempt).
    device_error: Option<String>,
    next_retry: Instant,
    /// The device's buffer count when last seen to move, and when.
    ticks_seen: (u64, Instant),
    /// The handle is gone: finish what is queued, then end.
    orphaned: bool,
    /// The shared clock runs (a system clock). A test's frozen or manual clock does not: jobs
    /// then start when it reaches their start, at the next device tick, instead of being mapped
    /// onto the device's clock ahead of time.
    clock_live: bool,
    /// Beaten on every pass through the loop (at least every `COARSE_STEP`).
    heartbeat: super::Heartbeat,
    amp: Option<Amp>,
    /// Chime lengths as measured, with the file's size and time they were measured for.
    lengths: HashMap<PathBuf, (Option<FileStamp>, Duration)>,
}

/// A file's size and modification time: if either changes, it is measured again.
type FileStamp = (u64, Option<std::time::SystemTime>);

impl Worker {
    fn run(mut self) {
        self.clock_live = clock_runs(&*self.clock);
        self.try_open();
        loop {
            self.heartbeat.beat();
            self.watch_device();
            self.retry_if_due();
            self.step();
            if self.orphaned && self.idle() {
                break;
            }
            let timeout = self.timeout();
            let Some(command) = self.recv(timeout) else {
                continue;
            };
            match command {
                Command::Job(job) => {
                    self.pause = job.pause;
                    self.queue.push_back(*job);
                }
                Command::Emergency(job) => self.emergencies.push_back(*job),
                Command::StopNow => self.stop(),
                Command::StopItem {
                    announcement_id,
                    reason,
                } => self.stop_item(announcement_id, &reason),
                Command::Shutdown => {
                    self.shutdown();
                    break;
                }
                Command::Orphaned => {
                    tracing::debug!(output = %self.spec.name, "player handle dropped; finishing queued jobs");
                    self.orphaned = true;
                }
                Command::Device(event) => self.on_device(event),
            }
        }
        if let Some(mut amp) = self.amp.take() {
            amp.switch_off();
            amp.finish(AMP_SHUTDOWN_WAIT);
        }
        if self.output.take().is_some() {
            tracing::info!(output = %self.spec.name, "device closed");
        }
    }

    fn idle(&self) -> bool {
        self.queue.is_empty()
            && self.job.is_none()
            && self.emergencies.is_empty()
            && self.emergency.is_none()
            && self.flights.is_empty()
            && self.cutting.is_empty()
    }

    /// The next command: deferred ones first, then the channel, waiting up to `timeout`.
    fn recv(&mut self, timeout: Duration) -> Option<Command> {
        if let Some(command) = self.deferred.pop_front() {
            return Some(command);
        }
        match self.commands.recv_timeout(timeout) {
            Ok(command) => Some(command),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                // Cannot happen while we hold a sender; behave as orphaned if it does.
                self.orphaned = true;
                std::thread::sleep(timeout);
                None
            }
        }
    }

    /// Handle the device events already waiting (so decisions see what is really on air);
    /// other commands wait their turn.
    fn take_device_events(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Device(event) => self.on_device(event),
                other => self.deferred.push_back(other),
            }
        }
    }

    /// How long the loop may wait for a command before something needs doing.
    fn timeout(&self) -> Duration {
        let amp_busy = self.amp.as_ref().is_some_and(|amp| amp.is_on());
        let mut wait = if self.idle() && self.clearing.is_none() && !amp_busy {
            IDLE_STEP
        } else {
            COARSE_STEP
        };
        let now = self.clock.now();
        if self.job.is_none() && self.emergency.is_none() {
            if let Some(job) = self.queue.front() {
                let begin = if self.clock_live && self.output.is_some() {
                    job.start_at - delta(LEAD)
                } else {
                    job.start_at
                };
                wait = wait.min((begin - now).to_std().unwrap_or_default());
            }
        }
        if let Some(amp) = &self.amp {
            let preroll = delta(amp.preroll());
            let begun = self.job.iter().map(|r| &r.job);
            for job in begun.chain(self.queue.iter()) {
                if let Ok(until) = (job.start_at - preroll - now).to_std() {
                    wait = wait.min(until);
                }
            }
            if amp.is_on() {
                let tail = self
                    .last_end
                    .and_then(|end| (end + AMP_TAIL).checked_duration_since(Instant::now()));
                if let Some(tail) = tail {
                    wait = wait.min(tail);
                }
            }
        }
        if let Some(deadline) = self.clearing {
            wait = wait.min(deadline.saturating_duration_since(Instant::now()));
        }
        if self.output.is_none() {
            wait = wait.min(self.next_retry.saturating_duration_since(Instant::now()));
        }
        wait.max(Duration::from_millis(1))
    }

    // ---- time ----

    /// The shared clock's reading for a device instant.
    fn utc(&self, at: Instant) -> DateTime<Utc> {
        let now = Instant::now();
        let base = self.clock.now();
        match at.checked_duration_since(now) {
            Some(ahead) => base + delta(ahead),
            None => base - delta(now.duration_since(at)),
        }
    }

    /// The device instant for a shared-clock reading.
    fn instant(&self, at: DateTime<Utc>) -> Instant {
        let now = Instant::now();
        match (at - self.clock.now()).to_std() {
            Ok(ahead) => now + ahead,
            Err(_) => now,
        }
    }

    fn frames(&self, length: Duration) -> u64 {
        self.output
            .as_ref()
            .map(|o| o.timeline.frames(length))
            .unwrap_or(0)
    }

    /// Where a sound queued with `start` should begin, as far as the player can tell.
    fn predict(&self, start: Start, pause: Duration) -> Instant {
        let now = Instant::now();
        match start {
            Start::At(at) => at.max(now),
            Start::Asap => now,
            Start::After(_) => {
                let previous = match self.flights.back() {
                    Some(flight) => flight.predicted_end(),
                    None => self.last_end,
                };
                previous.map_or(now, |end| (end + pause).max(now))
            }
        }
    }

    // ---- the device ----

    fn retry_if_due(&mut self) {
        if self.output.is_none() && Instant::now() >= self.next_retry {
            self.try_open();
        }
    }

    fn try_open(&mut self) {
        match backend::open(&self.spec, &self.hooks) {
            Ok(output) => {
                tracing::info!(output = %self.spec.name, device = %output.description, "device open");
                let mut status = lock(&self.status);
                status.device = output.description.clone();
                status.device_ok = true;
                status.device_error = output.fallback_reason.clone();
                drop(status);
                self.ticks_seen = (output.timeline.device_ticks(), Instant::now());
                self.output = Some(output);
                self.device_error = None;
            }
            Err(error) => self.device_down(error),
        }
    }

    /// The device could not be opened or has failed: close it, say why, retry later.
    fn device_down(&mut self, error: String) {
        self.output = None;
        if self.device_error.as_deref() != Some(error.as_str()) {
            tracing::error!(
                output = %self.spec.name,
                %error,
                "เปิดอุปกรณ์เสียงไม่ได้ / audio device unavailable; retrying every {RETRY_EVERY:?}"
            );
        }
        let mut status = lock(&self.status);
        status.device = backend::describe(&self.spec);
        status.device_ok = false;
        status.device_error = Some(error.clone());
        status.now_playing = None;
        drop(status);
        self.device_error = Some(error);
        self.next_retry = Instant::now() + RETRY_EVERY;
    }

    fn unavailable(&self) -> String {
        format!(
            "device unavailable: {}",
            self.device_error.as_deref().unwrap_or("not open")
        )
    }

    /// Notice a dead or stalled device, and a clear the device never confirmed.
    fn watch_device(&mut self) {
        if let Some(deadline) = self.clearing {
            if Instant::now() >= deadline {
                self.close_cut_by_clock();
            }
        }
        let Some(output) = self.output.as_ref() else {
            return;
        };
        if let Some(error) = output.fatal_error() {
            self.device_failed(format!("device failed: {error}"), error);
            return;
        }
        let ticks = output.timeline.device_ticks();
        if ticks != self.ticks_seen.0 || self.flights.is_empty() {
            // With nothing queued the device may sleep (null): silence from it means nothing.
            self.ticks_seen = (ticks, Instant::now());
        } else if !self.flights.is_empty() && self.ticks_seen.1.elapsed() > DEVICE_SILENT {
            let error = format!(
                "the device has asked for no audio for {DEVICE_SILENT:?}; it seems stalled"
            );
            self.device_failed(error.clone(), error);
            return;
        }
        let overrun = self.flights.front().is_some_and(|f| {
            f.started.is_some_and(|started| {
                Instant::now() > started + f.length.unwrap_or(UNKNOWN_LENGTH) + OVERRUN_GRACE
            })
        });
        if overrun {
            let error = format!(
                "still playing {OVERRUN_GRACE:?} after the audio should have ended; the device seems stalled"
            );
            self.device_failed(error.clone(), error);
        }
    }

    /// The device is gone under whatever was queued: the sound on air fails with `detail`, the
    /// items queued after it get `failed` rows ("device unavailable").
    fn device_failed(&mut self, detail: String, error: String) {
        self.device_down(error);
        let now = self.clock.now();
        let unavailable = self.unavailable();
        let flights: Vec<Flight> = self
            .flights
            .drain(..)
            .chain(self.cutting.drain(..))
            .collect();
        self.clearing = None;
        self.clears_pending = 0;
        for flight in flights {
            match (flight.row, &flight.airing) {
                (Some(row), _) => self
                    .journal
                    .finished(row, AirtimeStatus::Failed, now, &detail),
                (None, Some(airing)) if flight.started.is_none() => {
                    self.journal.failed(airing, now, &unavailable)
                }
                _ => {}
            }
            for failure in flight.failures {
                self.journal.failed(&failure.airing, now, &failure.detail);
            }
        }
    }

    fn set_now_playing(&self, now_playing: Option<NowPlaying>) {
        lock(&self.status).now_playing = now_playing;
    }

    // ---- what the device says ----

    fn on_device(&mut self, event: DeviceEvent) {
        match event {
            DeviceEvent::Started { id, at } => self.on_started(id, at),
            DeviceEvent::Ended { id, at, cut } => {
                self.last_end = Some(at);
                if let Some(flight) = self.take_flight(id) {
                    self.on_ended(flight, at, cut);
                }
            }
            DeviceEvent::Dropped { id } => {
                // Never started: no row. Its attached failures are retried or dropped with it.
                let _ = self.take_flight(id);
            }
            DeviceEvent::Cleared => {
                self.clears_pending = self.clears_pending.saturating_sub(1);
                if self.clears_pending == 0 {
                    self.close_cut_by_clock();
                }
            }
            // `watch_device` reads the error on the next pass, which is now.
            DeviceEvent::StreamFailed => {}
        }
    }

    fn take_flight(&mut self, id: u64) -> Option<Flight> {
        if let Some(i) = self.flights.iter().position(|f| f.id == id) {
            return self.flights.remove(i);
        }
        let i = self.cutting.iter().position(|f| f.id == id)?;
        Some(self.cutting.swap_remove(i))
    }

    fn on_started(&mut self, id: u64, at: Instant) {
        let started_at = self.utc(at);
        let Some(flight) = self
            .flights
            .iter_mut()
            .chain(self.cutting.iter_mut())
            .find(|f| f.id == id)
        else {
            return;
        };
        flight.started = Some(at);
        let kind = flight.kind;
        let (announcement_id, title) = match (kind, &flight.airing) {
            (Kind::Chime, _) => (None, "chime".to_owned()),
            (Kind::Outro, _) => (None, "outro".to_owned()),
            (Kind::Alert, _) => (None, "alert".to_owned()),
            (_, Some(airing)) => (Some(airing.announcement_id), airing.title.clone()),
            (_, None) => (None, String::new()),
        };
        let now_playing = NowPlaying {
            announcement_id,
            title,
            slot: flight.slot.clone(),
            started_at,
        };
        let airing = flight.airing.clone();
        self.set_now_playing(Some(now_playing));
        if let Some(airing) = airing {
            let row = match self.journal.started(&airing, started_at) {
                Ok(row) => Some(row),
                Err(error) => {
                    tracing::error!(output = %self.spec.name, title = %airing.title, %error, "cannot journal the start of an airing");
                    None
                }
            };
            if let Some(flight) = self
                .flights
                .iter_mut()
                .chain(self.cutting.iter_mut())
                .find(|f| f.id == id)
            {
                flight.row = row;
            }
        }
        match kind {
            Kind::Chime | Kind::Item(_) | Kind::Outro => {
                if let Some(run) = self.job.as_mut() {
                    run.on_air = true;
                }
            }
            Kind::Alert => {
                if let Some(run) = &self.emergency {
                    let latency = (started_at - run.job.accepted_at).num_milliseconds();
                    tracing::warn!(output = %self.spec.name, latency_ms = latency, "ประกาศฉุกเฉิน / emergency: alert on air");
                }
            }
            Kind::Message => {}
        }
    }

    fn on_ended(&mut self, flight: Flight, at: Instant, cut: bool) {
        let ended_at = self.utc(at);
        self.set_now_playing(None);
        let (status, detail) = if cut {
            let detail = flight
                .cut_detail
                .clone()
                .unwrap_or_else(|| "interrupted".to_owned());
            (AirtimeStatus::Interrupted, detail)
        } else {
            match flight.health.error() {
                Some(error) => (AirtimeStatus::Failed, error),
                None => (AirtimeStatus::Completed, String::new()),
            }
        };
        match (flight.row, flight.kind) {
            (Some(row), _) => self.journal.finished(row, status, ended_at, &detail),
            (None, Kind::Chime | Kind::Outro | Kind::Alert) if status == AirtimeStatus::Failed => {
                tracing::warn!(output = %self.spec.name, kind = ?flight.kind, error = %detail, "sound failed");
            }
            _ => {}
        }
        // Failures queued behind a sound that was cut are retried (or dropped) with their job.
        if !cut {
            for failure in flight.failures {
                self.journal
                    .failed(&failure.airing, ended_at, &failure.detail);
            }
        }
    }

    /// The clear is confirmed (or took too long): rows still open are closed now.
    fn close_cut_by_clock(&mut self) {
        self.clearing = None;
        self.clears_pending = 0;
        let now = self.clock.now();
        for flight in std::mem::take(&mut self.cutting) {
            if let Some(row) = flight.row {
                let detail = flight.cut_detail.as_deref().unwrap_or("interrupted");
                self.journal
                    .finished(row, AirtimeStatus::Interrupted, now, detail);
            }
        }
    }

    // ---- cutting ----

    /// Silence everything queued, at the device's next frame; rows of sounds on air end
    /// `interrupted` with `detail` when the device confirms (within a tick).
    fn cut(&mut self, detail: &str) -> Vec<(Kind, Vec<Failure>)> {
        if self.flights.is_empty() {
            return Vec::new();
        }
        if let Some(output) = &self.output {
            output.timeline.clear();
            self.clears_pending += 1;
        }
        self.set_now_playing(None);
        let mut removed = Vec::new();
        for mut flight in self.flights.drain(..) {
            flight.cut_detail = Some(detail.to_owned());
            removed.push((flight.kind, std::mem::take(&mut flight.failures)));
            self.cutting.push(flight);
        }
        self.clearing = Some(Instant::now() + CLEAR_WAIT);
        if self.output.is_none() {
            self.close_cut_by_clock();
        }
        removed
    }

    /// After a cut for an emergency: the job goes back to where it was cut, or, if nothing of it
    /// was on air yet, back to the queue to begin again.
    fn rewind_job(&mut self, removed: &[(Kind, Vec<Failure>)]) {
        let Some(run) = self.job.as_mut() else {
            return;
        };
        if !run.on_air {
            if let Some(run) = self.job.take() {
                self.queue.push_front(run.job);
            }
            return;
        }
        for (kind, failures) in removed {
            match kind {
                Kind::Item(index) => run.next = run.next.min(*index),
                Kind::Outro => run.outro_done = false,
                _ => {}
            }
            for index in failures.iter().filter_map(|f| f.index) {
                run.next = run.next.min(index);
            }
        }
    }

    fn stop(&mut self) {
        self.take_device_events();
        let on_air = self.flights.iter().any(|f| f.started.is_some())
            || self.job.as_ref().is_some_and(|r| r.on_air)
            || self.emergency.is_some();
        self.cut("stopped by operator");
        self.emergency = None;
        let dropped_emergencies = self.emergencies.len();
        self.emergencies.clear();
        if let Some(run) = self.job.take() {
            if !run.on_air {
                // Queued ahead of its start, not on air: it keeps its start.
                self.queue.push_front(run.job);
            }
        }
        self.drop_due_jobs();
        if on_air {
            tracing::warn!(output = %self.spec.name, dropped_emergencies, "stopped by operator");
        } else {
            tracing::info!(output = %self.spec.name, "stop: nothing on air");
        }
    }

    /// An announcement was withdrawn: cut it if it is on air, drop it wherever it waits.
    fn stop_item(&mut self, announcement_id: i64, reason: &str) {
        self.take_device_events();
        let detail = format!("withdrawn: {reason}");
        let ours = |airing: &AiringInfo| airing.announcement_id == announcement_id;
        for job in &mut self.queue {
            job.items.retain(|item| !ours(&item.airing));
        }
        if let Some(run) = self.job.as_mut() {
            // Items before `next` are queued or done (flights refer to them by index).
            let later = run.job.items.split_off(run.next.min(run.job.items.len()));
            run.job
                .items
                .extend(later.into_iter().filter(|item| !ours(&item.airing)));
        }
        self.emergencies.retain(|job| !ours(&job.item.airing));
        if let Some(run) = self.emergency.as_mut() {
            if ours(&run.job.item.airing) {
                run.queued = run.job.repeat;
            }
        }
        let now = self.clock.now();
        let mut removed = 0;
        for flight in self.flights.iter_mut() {
            if !flight.airing.as_ref().is_some_and(ours) {
                continue;
            }
            flight.cut_detail = Some(detail.clone());
            // What failed to open behind it fails now: it will not end normally.
            for failure in std::mem::take(&mut flight.failures) {
                self.journal.failed(&failure.airing, now, &failure.detail);
            }
            if let Some(output) = &self.output {
                output.timeline.remove(flight.id);
            }
            removed += 1;
        }
        if removed > 0 {
            tracing::warn!(output = %self.spec.name, announcement = announcement_id, %reason, "withdrawn announcement taken off the air");
        }
    }

    /// After a stop, jobs whose start has passed would begin at once, which is not what
    /// "stop" means to the person who pressed it.
    fn drop_due_jobs(&mut self) {
        let now = self.clock.now();
        let before = self.queue.len();
        self.queue.retain(|job| job.start_at > now);
        let dropped = before - self.queue.len();
        if dropped > 0 {
            tracing::warn!(output = %self.spec.name, dropped, "stopped: dropped jobs that were due");
        }
    }

    fn shutdown(&mut self) {
        self.take_device_events();
        self.cut("daemon shutting down");
        // Let the device confirm the clear so rows end at the instant sound stopped.
        let until = Instant::now() + CLEAR_WAIT;
        while self.clearing.is_some() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.commands.recv_timeout(left) {
                Ok(Command::Device(event)) => self.on_device(event),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        self.close_cut_by_clock();
    }

    // ---- deciding what to queue ----

    fn step(&mut self) {
        // An emergency that follows another (just ended) comes after a pause; any other starts
        // at once.
        let mut chained = false;
        loop {
            if self.emergency.is_some() {
                self.fill_emergency();
                chained = self.emergency.is_none();
            }
            if self.emergency.is_some() || self.emergencies.is_empty() {
                break;
            }
            self.start_emergency(chained);
        }
        if self.emergency.is_none() {
            if self.job.is_none() {
                self.begin_due_job();
            }
            if self.job.is_some() {
                self.fill_job();
            }
        }
        self.amp_step();
    }

    /// Queue `prepared` on the device; false (nothing queued) if the device is not open.
    fn push(
        &mut self,
        kind: Kind,
        prepared: Prepared,
        (start, pause): (Start, Duration),
        airing: Option<AiringInfo>,
    ) -> bool {
        let predicted_start = self.predict(start, pause);
        let Some(output) = self.output.as_ref() else {
            return false;
        };
        let id = self.next_id;
        self.next_id += 1;
        output.timeline.push(Segment {
            id,
            start,
            samples: prepared.samples,
        });
        let slot = match kind {
            Kind::Alert | Kind::Message => "emergency".to_owned(),
            _ => self
                .job
                .as_ref()
                .map(|r| r.job.slot.clone())
                .unwrap_or_default(),
        };
        self.flights.push_back(Flight {
            id,
            kind,
            airing,
            slot,
            health: prepared.health,
            length: prepared.length,
            predicted_start,
            started: None,
            row: None,
            failures: Vec::new(),
            cut_detail: None,
        });
        true
    }

    /// Record that `airing` could not start: after the sound queued last, or now.
    fn fail_item(&mut self, index: Option<usize>, airing: &AiringInfo, detail: String) {
        tracing::warn!(output = %self.spec.name, title = %airing.title, error = %detail, "cannot play item");
        match self.flights.back_mut() {
            Some(flight) => flight.failures.push(Failure {
                index,
                airing: airing.clone(),
                detail,
            }),
            None => self.journal.failed(airing, self.clock.now(), &detail),
        }
    }

    fn start_emergency(&mut self, chained: bool) {
        let Some(job) = self.emergencies.pop_front() else {
            return;
        };
        if let Some(amp) = self.amp.as_mut() {
            amp.switch_on();
        }
        self.take_device_events();
        if self.output.is_none() {
            self.try_open();
        }
        let Some(output) = self.output.as_ref() else {
            let (now, detail) = (self.clock.now(), self.unavailable());
            for _ in 0..job.repeat {
                self.journal.failed(&job.item.airing, now, &detail);
            }
            return;
        };
        let (channels, rate) = (output.timeline.channels(), output.timeline.rate());
        // Opened before the clear, so the clear and the alert reach the device together.
        let alert = job.alert.as_ref().and_then(|path| {
            source::prepare(path, 0.0, channels, rate)
                .map_err(|error| {
                    tracing::error!(output = %self.spec.name, alert = %path.display(), %error, "cannot play the alert tone; the message plays without it");
                })
                .ok()
        });
        let preempting = !self.flights.is_empty();
        let first = if chained && !preempting {
            Start::After(self.frames(self.pause))
        } else {
            Start::Asap
        };
        if preempting {
            let removed = self.cut("interrupted by an emergency");
            self.rewind_job(&removed);
        }
        tracing::warn!(output = %self.spec.name, title = %job.item.airing.title, repeat = job.repeat, preempting, "ประกาศฉุกเฉิน / emergency");
        let mut run = EmergencyRun {
            job,
            queued: 0,
            first: Some(first),
        };
        if let Some(alert) = alert {
            let start = run.first.take().unwrap_or(Start::Asap);
            let pause = self.pause;
            self.push(Kind::Alert, alert, (start, pause), None);
        }
        self.emergency = Some(run);
        self.fill_emergency();
    }

    fn fill_emergency(&mut self) {
        while self.flights.len() < 2 {
            let Some(run) = self.emergency.as_mut() else {
                return;
            };
            if run.queued >= run.job.repeat {
                break;
            }
            run.queued += 1;
            let start = run.first.take();
            let (item, pause) = (run.job.item.clone(), self.pause);
            let Some(output) = self.output.as_ref() else {
                let detail = self.unavailable();
                self.fail_item(None, &item.airing, detail);
                continue;
            };
            let start = start.unwrap_or(Start::After(output.timeline.frames(pause)));
            let (channels, rate) = (output.timeline.channels(), output.timeline.rate());
            match source::prepare(&item.path, item.gain_db, channels, rate) {
                Ok(mut prepared) => {
                    prepared.length = known_length(item.duration_ms);
                    self.push(Kind::Message, prepared, (start, pause), Some(item.airing));
                }
                Err(error) => self.fail_item(None, &item.airing, error),
            }
        }
        let done = self
            .emergency
            .as_ref()
            .is_some_and(|run| run.queued >= run.job.repeat);
        if done && self.flights.is_empty() {
            self.emergency = None;
            tracing::info!(output = %self.spec.name, "emergency over; the schedule resumes");
        }
    }

    /// Begin the first queued job if its time has come: with a running clock, `LEAD` before
    /// its start, queued to start on the instant; otherwise when the clock reaches the start.
    fn begin_due_job(&mut self) {
        let Some(front) = self.queue.front() else {
            return;
        };
        let now = self.clock.now();
        let begin_at = if self.clock_live {
            front.start_at - delta(LEAD)
        } else {
            front.start_at
        };
        if now < begin_at {
            return;
        }
        if self.output.is_none() {
            if now < front.start_at {
                return; // Nothing can play yet; the device may still come back.
            }
            self.try_open();
        }
        let Some(job) = self.queue.pop_front() else {
            return;
        };
        let Some(output) = self.output.as_ref() else {
            let detail = self.unavailable();
            for item in &job.items {
                self.journal.failed(&item.airing, now, &detail);
            }
            return;
        };
        let first = if self.clock_live && job.start_at > now {
            Start::At(self.instant(job.start_at))
        } else {
            Start::Asap
        };
        let (channels, rate) = (output.timeline.channels(), output.timeline.rate());
        // Streamed, so queuing it costs one packet's decoding, never the start instant.
        let chime = job.chime.clone().and_then(|path| {
            match source::prepare(&path, 0.0, channels, rate) {
                Ok(prepared) => Some((path, prepared)),
                Err(error) => {
                    tracing::warn!(output = %self.spec.name, slot = %job.slot, chime = %path.display(), %error, "cannot open the chime; playing the slot without it");
                    None
                }
            }
        });
        let pause = job.pause;
        self.job = Some(JobRun {
            job,
            next: 0,
            queued_any: false,
            on_air: false,
            outro_done: false,
            first,
        });
        if let Some((path, chime)) = chime {
            if self.push(Kind::Chime, chime, (first, pause), None) {
                if let Some(run) = self.job.as_mut() {
                    run.queued_any = true;
                }
                // Now that it is queued: its exact length, so the first item can be queued
                // behind it and checked against the slot's end.
                let length = self.sound_length(&path, channels, rate);
                if let Some(flight) = self.flights.back_mut() {
                    flight.length = length;
                }
            }
        }
    }

    /// The exact length of a chime as the device will play it: decoded once per file (and
    /// again if the file changes), then remembered. `None` if it cannot be decoded.
    fn sound_length(&mut self, path: &Path, channels: u16, rate: u32) -> Option<Duration> {
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()));
        if let Some((known, length)) = self.lengths.get(path) {
            if stamp.is_some() && *known == stamp {
                return Some(*length);
            }
        }
        match source::measure(path, channels, rate) {
            Ok(length) => {
                self.lengths.insert(path.to_owned(), (stamp, length));
                Some(length)
            }
            Err(error) => {
                tracing::warn!(output = %self.spec.name, chime = %path.display(), %error, "cannot measure the chime");
                None
            }
        }
    }

    /// Keep the current job's next sounds queued (up to two on the device); end the job when
    /// all of it has played.
    fn fill_job(&mut self) {
        while self.flights.len() < 2 {
            let Some(run) = self.job.as_ref() else {
                return;
            };
            let pause = run.job.pause;
            if run.next < run.job.items.len() {
                let index = run.next;
                let item = run.job.items[index].clone();
                let start = if run.queued_any {
                    Start::After(self.frames(pause))
                } else {
                    run.first
                };
                // The previous sound's end must be known to tell whether this one fits.
                if run.queued_any {
                    if let Some(last) = self.flights.back() {
                        if last.predicted_end().is_none() {
                            return;
                        }
                    }
                }
                let predicted = self.predict(start, pause);
                let end_at = run.job.end_at;
                if let Some(run) = self.job.as_mut() {
                    run.next += 1;
                }
                if !fits(self.utc(predicted), item.duration_ms, end_at) {
                    // Not an airing of this slot: the planner will offer it to the next one.
                    tracing::info!(
                        output = %self.spec.name,
                        title = %item.airing.title,
                        "does not fit before the slot ends; left for the next slot"
                    );
                    continue;
                }
                self.retry_if_due();
                let Some(output) = self.output.as_ref() else {
                    let detail = self.unavailable();
                    self.fail_item(Some(index), &item.airing, detail);
                    continue;
                };
                let (channels, rate) = (output.timeline.channels(), output.timeline.rate());
                match source::prepare(&item.path, item.gain_db, channels, rate) {
                    Ok(mut prepared) => {
                        prepared.length = known_length(item.duration_ms);
                        let airing = Some(item.airing);
                        if self.push(Kind::Item(index), prepared, (start, pause), airing) {
                            if let Some(run) = self.job.as_mut() {
                                run.queued_any = true;
                            }
                        }
                    }
                    // No pause and no dead air: straight on to the next item.
                    Err(error) => self.fail_item(Some(index), &item.airing, error),
                }
            } else if !run.outro_done {
                let (outro, queued_any, end_at) =
                    (run.job.outro.clone(), run.queued_any, run.job.end_at);
                if let Some(run) = self.job.as_mut() {
                    run.outro_done = true;
                }
                let Some(outro) = outro else {
                    continue;
                };
                // Only after something of the slot played, and not past the slot's end.
                let Some(output) = self.output.as_ref() else {
                    continue;
                };
                if !queued_any || self.clock.now() >= end_at {
                    continue;
                }
                let (channels, rate) = (output.timeline.channels(), output.timeline.rate());
                match source::prepare(&outro, 0.0, channels, rate) {
                    Ok(prepared) => {
                        let start = Start::After(self.frames(pause));
                        self.push(Kind::Outro, prepared, (start, pause), None);
                    }
                    Err(error) => {
                        tracing::warn!(output = %self.spec.name, outro = %outro.display(), %error, "cannot open the outro; the slot ends without it");
                    }
                }
            } else {
                if self.flights.is_empty() {
                    self.job = None;
                    self.set_now_playing(None);
                }
                return;
            }
        }
    }

    // ---- the amplifier ----

    /// Power follows the sound, not the queueing: on `preroll` before a slot's start (a job
    /// queued ahead of its start is not yet on air) or at once for an emergency; off once the
    /// last sound has left the device and nothing is due within `AMP_HOLD`.
    fn amp_step(&mut self) {
        let Some(amp) = self.amp.as_ref() else {
            return;
        };
        let now = self.clock.now();
        let preroll = delta(amp.preroll());
        let on_air = self.emergency.is_some()
            || !self.emergencies.is_empty()
            || self.job.as_ref().is_some_and(|r| r.on_air)
            || self.flights.iter().any(|f| f.started.is_some())
            || !self.cutting.is_empty();
        let starts: Vec<DateTime<Utc>> = self
            .job
            .iter()
            .map(|r| r.job.start_at)
            .chain(self.queue.iter().map(|j| j.start_at))
            .collect();
        let due = starts.iter().any(|start| now >= *start - preroll);
        let hold = delta(AMP_HOLD);
        let soon = starts.iter().any(|start| *start - preroll <= now + hold);
        let playing = self.job.is_some() || !self.flights.is_empty();
        let tail_done = self
            .last_end
            .is_none_or(|end| Instant::now() >= end + AMP_TAIL);
        let Some(amp) = self.amp.as_mut() else {
            return;
        };
        if on_air || due {
            amp.switch_on();
        } else if amp.is_on() && !playing && !soon && tail_done {
            amp.switch_off();
        }
    }
}

/// A measured length in ms as a duration (`None` if unknown, i.e. zero).
fn known_length(duration_ms: u64) -> Option<Duration> {
    (duration_ms > 0).then(|| Duration::from_millis(duration_ms))
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Does the shared clock move with real time? (Two readings 2 ms apart.)
fn clock_runs(clock: &dyn Clock) -> bool {
    let (before, began) = (clock.now(), Instant::now());
    std::thread::sleep(Duration::from_millis(2));
    let advanced = (clock.now() - before).to_std().unwrap_or_default();
    advanced * 2 >= began.elapsed()
}

/// Can an item of `duration_ms` starting at `start` end by `end_at`?
fn fits(start: DateTime<Utc>, duration_ms: u64, end_at: DateTime<Utc>) -> bool {
    let length = i64::try_from(duration_ms)
        .ok()
        .and_then(TimeDelta::try_milliseconds);
    match length {
        Some(length) => start
            .checked_add_signed(length)
            .is_some_and(|end| end <= end_at),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_fits_only_if_it_ends_by_the_slot_end() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T07:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let end = now + TimeDelta::seconds(60);
        assert!(fits(now, 60_000, end));
        assert!(!fits(now, 60_001, end));
        assert!(!fits(now + TimeDelta::seconds(2), 59_000, end));
        assert!(!fits(now, u64::MAX, end));
    }
}
