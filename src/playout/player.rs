//! The player thread of one output: opens and keeps its device, waits for each slot job's start,
//! plays chime and items through rodio, and journals every airing.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use super::backend::{self, OpenOutput};
use super::source::{self, Opened};
use super::{lock, Command, JobItem, Journal, NowPlaying, OutputSpec, OutputStatus, SlotJob};
use crate::clock::SharedClock;
use crate::domain::AirtimeStatus;

/// How often a device that would not open is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(3);
/// How often the end of an item is checked (rodio's own controls run every 5 ms too).
const POLL: Duration = Duration::from_millis(5);
/// Waiting for a start time sleeps in steps of at most this, re-reading the clock in between
/// (the wall clock can be stepped by NTP while we wait).
const COARSE_STEP: Duration = Duration::from_millis(250);
/// The last stretch before a start time is waited out in short sleeps, not one long one.
const FINE_WINDOW: Duration = Duration::from_millis(2);
const FINE_STEP: Duration = Duration::from_micros(100);
/// An item still playing this long after its length has stalled: a hung device, not audio.
const OVERRUN_GRACE: Duration = Duration::from_secs(30);
/// A chime whose length nobody knows gets this long before it counts as stalled.
const UNKNOWN_LENGTH: Duration = Duration::from_secs(120);

/// Start `player-<name>`. `None` (after logging and marking the status) if the OS refuses.
pub(super) fn spawn(
    spec: OutputSpec,
    clock: SharedClock,
    journal: Arc<dyn Journal>,
    status: Arc<Mutex<OutputStatus>>,
    commands: Receiver<Command>,
    heartbeat: super::Heartbeat,
) -> Option<JoinHandle<()>> {
    let name = spec.name.clone();
    let thread_status = Arc::clone(&status);
    let spawned = std::thread::Builder::new()
        .name(format!("player-{name}"))
        .spawn(move || {
            let worker = Worker {
                spec,
                clock,
                journal,
                status: Arc::clone(&thread_status),
                commands,
                queue: VecDeque::new(),
                output: None,
                device_error: None,
                next_retry: Instant::now(),
                orphaned: false,
                heartbeat,
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

/// Why a job stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    /// The operator pressed stop: drop the rest of the job.
    Stop,
    /// The daemon is going down: leave the thread.
    Shutdown,
}

/// How one piece of audio ended.
enum Ended {
    Completed,
    /// The audio stopped early or the device failed; the text says why.
    Failed(String),
    Interrupted(Interrupt),
}

struct Worker {
    spec: OutputSpec,
    clock: SharedClock,
    journal: Arc<dyn Journal>,
    status: Arc<Mutex<OutputStatus>>,
    commands: Receiver<Command>,
    /// Jobs submitted while another was waiting or playing, in arrival order.
    queue: VecDeque<SlotJob>,
    output: Option<OpenOutput>,
    /// Why the device is not open (last attempt).
    device_error: Option<String>,
    next_retry: Instant,
    /// The handle is gone: finish what is queued, then end.
    orphaned: bool,
    /// Beaten on every pass through `listen`, which every wait and the play loop go through.
    heartbeat: super::Heartbeat,
}

impl Worker {
    fn run(mut self) {
        self.try_open();
        loop {
            if let Some(job) = self.queue.pop_front() {
                match self.play_job(job) {
                    Ok(()) => {}
                    Err(Interrupt::Stop) => self.drop_due_jobs(),
                    Err(Interrupt::Shutdown) => break,
                }
                self.set_now_playing(None);
                continue;
            }
            if self.orphaned {
                break;
            }
            self.retry_if_due();
            let wait = if self.output.is_some() {
                COARSE_STEP
            } else {
                self.next_retry.saturating_duration_since(Instant::now())
            };
            match self.listen(wait) {
                Ok(()) | Err(Interrupt::Stop) => {}
                Err(Interrupt::Shutdown) => break,
            }
        }
        if self.output.take().is_some() {
            tracing::info!(output = %self.spec.name, "device closed");
        }
    }

    /// Wait up to `timeout` for a command. Jobs are queued; stop and shutdown come back as
    /// `Err` for the caller to act on.
    fn listen(&mut self, timeout: Duration) -> Result<(), Interrupt> {
        self.heartbeat.beat();
        if self.orphaned {
            std::thread::sleep(timeout);
            return Ok(());
        }
        let command = if timeout.is_zero() {
            match self.commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return self.orphan(),
            }
        } else {
            match self.commands.recv_timeout(timeout) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => return self.orphan(),
            }
        };
        match command {
            Command::Job(job) => {
                self.queue.push_back(*job);
                Ok(())
            }
            Command::StopNow => Err(Interrupt::Stop),
            Command::Shutdown => Err(Interrupt::Shutdown),
        }
    }

    fn orphan(&mut self) -> Result<(), Interrupt> {
        tracing::debug!(output = %self.spec.name, "player handle dropped; finishing queued jobs");
        self.orphaned = true;
        Ok(())
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

    // ---- the device ----

    fn retry_if_due(&mut self) {
        if self.output.is_none() && Instant::now() >= self.next_retry {
            self.try_open();
        }
    }

    fn try_open(&mut self) {
        match backend::open(&self.spec) {
            Ok(output) => {
                tracing::info!(output = %self.spec.name, device = %output.description, "device open");
                let mut status = lock(&self.status);
                status.device = output.description.clone();
                status.device_ok = true;
                status.device_error = output.fallback_reason.clone();
                drop(status);
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

    fn set_now_playing(&self, now_playing: Option<NowPlaying>) {
        lock(&self.status).now_playing = now_playing;
    }

    // ---- a job ----

    fn play_job(&mut self, job: SlotJob) -> Result<(), Interrupt> {
        self.wait_until(job.start_at)?;
        if self.output.is_none() {
            // One more try at the last moment: the device may be back since the last attempt.
            self.try_open();
        }
        if self.output.is_none() {
            let now = self.clock.now();
            let detail = self.unavailable();
            for item in &job.items {
                self.journal.failed(&item.airing, now, &detail);
            }
            return Ok(());
        }

        let mut pause_first = false;
        if let Some(chime) = &job.chime {
            match source::open(chime, 0.0) {
                Ok(opened) => {
                    let started_at = self.clock.now();
                    self.set_now_playing(Some(NowPlaying {
                        announcement_id: None,
                        title: "chime".to_owned(),
                        slot: job.slot.clone(),
                        started_at,
                    }));
                    let expected = opened.length.unwrap_or(UNKNOWN_LENGTH);
                    match self.play(opened, expected) {
                        Ended::Completed => {}
                        Ended::Failed(error) => {
                            tracing::warn!(output = %self.spec.name, slot = %job.slot, %error, "chime failed");
                        }
                        Ended::Interrupted(why) => return Err(why),
                    }
                    self.set_now_playing(None);
                    pause_first = true;
                }
                Err(error) => tracing::warn!(
                    output = %self.spec.name,
                    slot = %job.slot,
                    chime = %chime.display(),
                    %error,
                    "cannot open the chime; playing the slot without it"
                ),
            }
        }

        for item in &job.items {
            let pause = if pause_first {
                job.pause
            } else {
                Duration::ZERO
            };
            if !fits(self.clock.now(), pause, item.duration_ms, job.end_at) {
                // Not an airing of this slot: the planner will offer it to the next one.
                tracing::info!(
                    output = %self.spec.name,
                    slot = %job.slot,
                    title = %item.airing.title,
                    "does not fit before the slot ends; left for the next slot"
                );
                continue;
            }
            self.retry_if_due();
            if self.output.is_none() {
                let detail = self.unavailable();
                self.journal.failed(&item.airing, self.clock.now(), &detail);
                continue;
            }
            let opened = match source::open(&item.path, item.gain_db) {
                Ok(opened) => opened,
                Err(error) => {
                    // No pause and no dead air: straight on to the next item.
                    tracing::warn!(output = %self.spec.name, path = %item.path.display(), %error, "cannot open item");
                    self.journal.failed(&item.airing, self.clock.now(), &error);
                    continue;
                }
            };
            if !pause.is_zero() {
                self.sleep(pause)?;
            }
            self.play_item(&job, item, opened)?;
            pause_first = true;
        }
        Ok(())
    }

    /// Wait until `at` by the shared clock: coarse sleeps (listening for commands) until about
    /// 2 ms before, then short sleeps, so the start is late by well under a millisecond. Only
    /// shutdown ends the wait early.
    fn wait_until(&mut self, at: DateTime<Utc>) -> Result<(), Interrupt> {
        loop {
            let remaining = match (at - self.clock.now()).to_std() {
                Ok(remaining) if !remaining.is_zero() => remaining,
                // Negative (already due) or zero.
                _ => return Ok(()),
            };
            self.retry_if_due();
            let heard = if remaining > FINE_WINDOW {
                self.listen((remaining - FINE_WINDOW).min(COARSE_STEP))
            } else {
                let heard = self.listen(Duration::ZERO);
                std::thread::sleep(FINE_STEP.min(remaining));
                heard
            };
            match heard {
                // Stop means "silence what is on air"; a job that has not begun is not on air.
                Err(Interrupt::Stop) => {
                    tracing::info!(output = %self.spec.name, "stop: nothing on air yet");
                }
                other => other?,
            }
        }
    }

    /// Sleep `length` (real time) while listening for commands.
    fn sleep(&mut self, length: Duration) -> Result<(), Interrupt> {
        let until = Instant::now() + length;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            self.listen(left.min(COARSE_STEP))?;
        }
        Ok(())
    }

    fn play_item(
        &mut self,
        job: &SlotJob,
        item: &JobItem,
        opened: Opened,
    ) -> Result<(), Interrupt> {
        let expected =
            Duration::from_millis(item.duration_ms).max(opened.length.unwrap_or_default());
        let started_at = self.clock.now();
        let row = match self.journal.started(&item.airing, started_at) {
            Ok(row) => Some(row),
            Err(error) => {
                tracing::error!(output = %self.spec.name, title = %item.airing.title, %error, "cannot journal the start of an airing");
                None
            }
        };
        self.set_now_playing(Some(NowPlaying {
            announcement_id: Some(item.airing.announcement_id),
            title: item.airing.title.clone(),
            slot: job.slot.clone(),
            started_at,
        }));
        let ended = self.play(opened, expected);
        self.set_now_playing(None);
        let (status, detail, result) = match ended {
            Ended::Completed => (AirtimeStatus::Completed, String::new(), Ok(())),
            Ended::Failed(error) => (AirtimeStatus::Failed, error, Ok(())),
            Ended::Interrupted(Interrupt::Stop) => (
                AirtimeStatus::Interrupted,
                "stopped by operator".to_owned(),
                Err(Interrupt::Stop),
            ),
            Ended::Interrupted(Interrupt::Shutdown) => (
                AirtimeStatus::Interrupted,
                "daemon shutting down".to_owned(),
                Err(Interrupt::Shutdown),
            ),
        };
        if let Some(row) = row {
            self.journal
                .finished(row, status, self.clock.now(), &detail);
        }
        result
    }

    /// Hand `opened` to the device and wait for its end, a command, or a device failure. The
    /// caller has checked that the device is open.
    fn play(&mut self, opened: Opened, expected: Duration) -> Ended {
        let Some(output) = self.output.as_ref() else {
            return Ended::Failed(self.unavailable());
        };
        output.player.append(opened.source);
        let stalled_at = Instant::now() + expected + OVERRUN_GRACE;
        loop {
            let Some(output) = self.output.as_mut() else {
                return Ended::Failed(self.unavailable());
            };
            if output.player.empty() {
                return match opened.health.error() {
                    Some(error) => Ended::Failed(error),
                    None => Ended::Completed,
                };
            }
            if let Some(error) = output.fatal_error() {
                self.device_down(error.clone());
                return Ended::Failed(format!("device failed: {error}"));
            }
            if Instant::now() > stalled_at {
                let error = format!(
                    "still playing {:?} after the audio should have ended; the device seems stalled",
                    OVERRUN_GRACE
                );
                output.silence();
                self.device_down(error.clone());
                return Ended::Failed(error);
            }
            if let Err(why) = self.listen(POLL) {
                if let Some(output) = self.output.as_mut() {
                    output.silence();
                }
                return Ended::Interrupted(why);
            }
        }
    }
}

/// Can an item of `duration_ms` start after `pause` from `now` and end by `end_at`?
fn fits(now: DateTime<Utc>, pause: Duration, duration_ms: u64, end_at: DateTime<Utc>) -> bool {
    let length = i64::try_from(duration_ms)
        .ok()
        .and_then(TimeDelta::try_milliseconds);
    let pause = TimeDelta::from_std(pause).ok();
    match (length, pause) {
        (Some(length), Some(pause)) => now
            .checked_add_signed(pause)
            .and_then(|t| t.checked_add_signed(length))
            .is_some_and(|end| end <= end_at),
        _ => false,
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
        assert!(fits(now, Duration::ZERO, 60_000, end));
        assert!(!fits(now, Duration::ZERO, 60_001, end));
        assert!(!fits(now, Duration::from_secs(2), 59_000, end));
        assert!(!fits(now, Duration::ZERO, u64::MAX, end));
    }
}
