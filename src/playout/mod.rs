//! Playout: one player thread per output, each owning its device (opened on that thread and kept
//! open). Backends form a table (alsa, null, wav); the runner hands a player whole slot jobs and
//! the player reports every airing through a [`Journal`].
//!
//! INTERFACE CONTRACT (used by runner.rs and main.rs; keep these signatures).
//!
//! Every backend ends in the same place: a `cpal::Device` opened in its default format with our
//! [`timeline`] filling each buffer (rodio converts each file to the device's rate and channels),
//! so what a test hears on the null or wav output went through the same code as what the village
//! hears on ALSA.
//!
//! Timing: the player queues each sound on the output's timeline ahead of time, with an exact
//! start (an instant on the device's own clock, or a number of frames after the previous sound),
//! so a slot's first sound leaves the device on the second and pauses are exact to the frame;
//! journal rows carry the instants the first and last samples reached the device.

mod amp;
mod backend;
mod pacer;
mod player;
mod realtime;
mod source;
mod timeline;

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::domain::{AiringInfo, AirtimeStatus};

pub use backend::{backend_for, AlsaBackend, Backend, NullBackend, WavBackend, BACKENDS};
pub use realtime::{
    DeviceTaps, RunDetector, RunEdge, SoundLog, SoundRun, CHANNELS, RUN_GAP, SAMPLE_RATE,
    SILENCE_THRESHOLD,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Alsa,
    Null,
    Wav,
}

impl OutputKind {
    /// The name used in the config file and in the [`BACKENDS`] table.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Alsa => "alsa",
            OutputKind::Null => "null",
            OutputKind::Wav => "wav",
        }
    }
}

/// A configured output, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputSpec {
    pub name: String,
    pub kind: OutputKind,
    /// ALSA PCM name (alsa; "default" = the default device) or file path (wav).
    pub device: Option<String>,
    /// When an alsa device cannot be opened, play on a real-time null device instead (with a
    /// warning). Set for the embedded default config only.
    pub fallback_to_null: bool,
    /// Amplifier power control, if the output has one.
    pub amp: Option<AmpControl>,
}

/// Commands that power an output's amplifier on before a slot and off after it. Each is an argv
/// array run without a shell; a failure is logged and never stops playout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmpControl {
    pub on: Vec<String>,
    pub off: Vec<String>,
    /// How long before the first sound `on` runs.
    pub preroll: Duration,
}

/// An emergency: stop what plays now (its row `interrupted`), the alert tone, then the message
/// `repeat` times (each repetition an airing with slot "emergency"), then the schedule resumes;
/// the interrupted item airs again later in its slot if it still fits.
#[derive(Debug, Clone)]
pub struct EmergencyJob {
    /// The alert tone (`audio/alert.wav`); not logged as an airing.
    pub alert: Option<PathBuf>,
    /// The message; its `airing.slot` should be "emergency".
    pub item: JobItem,
    pub repeat: u32,
    /// When the API accepted the request (for latency figures).
    pub accepted_at: DateTime<Utc>,
}

/// Where airings are recorded. Implemented by the store; called from player threads.
pub trait Journal: Send + Sync + 'static {
    /// The item's first sample reaches the device at `started_at`. Returns the open row's id.
    ///
    /// Called on the output's player thread as soon as the device has taken that sample (on ALSA
    /// that is up to the device's latency before it is heard; `started_at` is when it is). On
    /// error the audio keeps playing (it is already on air); the player logs the error and has no
    /// row to finish, so the airing ends up unrecorded rather than cut off.
    fn started(&self, airing: &AiringInfo, started_at: DateTime<Utc>) -> Result<i64, String>;
    /// The open row `row` ended with `status` (completed, interrupted or failed); `ended_at` is
    /// when its last sample left the device (or, cut short, when the cut reached it).
    ///
    /// Called on the output's player thread, once per row that `started` opened. It returns
    /// nothing: an implementation that cannot write must log the failure itself; the player
    /// carries on with the next item either way.
    fn finished(&self, row: i64, status: AirtimeStatus, ended_at: DateTime<Utc>, detail: &str);
    /// The item could not start at all (missing or undecodable file, device down): a `failed` row.
    /// `at` is when it would have started (the end of the sound before it, or now).
    ///
    /// Called on the output's player thread. Like `finished`, an implementation that cannot
    /// write must log the failure itself.
    fn failed(&self, airing: &AiringInfo, at: DateTime<Utc>, detail: &str);
}

/// One announcement in a slot job.
#[derive(Debug, Clone)]
pub struct JobItem {
    pub airing: AiringInfo,
    pub path: PathBuf,
    pub gain_db: f32,
    pub duration_ms: u64,
}

/// A slot occurrence for one output: chime, then items, with `pause` between them.
#[derive(Debug, Clone)]
pub struct SlotJob {
    pub slot: String,
    pub start_at: DateTime<Utc>,
    /// No item starts that cannot finish by this instant.
    pub end_at: DateTime<Utc>,
    pub chime: Option<PathBuf>,
    pub items: Vec<JobItem>,
    pub pause: Duration,
    /// Played after the last item, if the slot has one.
    pub outro: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NowPlaying {
    /// `None` while the chime plays.
    pub announcement_id: Option<i64>,
    pub title: String,
    pub slot: String,
    pub started_at: DateTime<Utc>,
}

/// What an output is doing, as its player thread last reported it.
///
/// When an alsa output fell back to the null device (`fallback_to_null`), `device_ok` is true
/// (it keeps time and journals airings) but `device` says "null (fallback ...)" and
/// `device_error` keeps the reason the real device could not be used.
#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    pub name: String,
    pub kind: OutputKind,
    pub device: String,
    pub device_ok: bool,
    pub device_error: Option<String>,
    pub now_playing: Option<NowPlaying>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlayoutError {
    #[error("output '{0}' has stopped")]
    Stopped(String),
}

/// What the player thread hears: from its handle, and from its device (timeline events and
/// stream failures, sent on the audio thread).
enum Command {
    Job(Box<SlotJob>),
    Emergency(Box<EmergencyJob>),
    StopNow,
    /// An announcement was withdrawn: stop it if it plays, drop it wherever it is queued.
    StopItem {
        announcement_id: i64,
        reason: String,
    },
    Shutdown,
    /// The handle was dropped without `shutdown`: finish what is queued, then end.
    Orphaned,
    Device(timeline::DeviceEvent),
}

/// A running player. Dropping it does not stop the thread; call `shutdown`.
///
/// (A dropped handle lets the thread finish the jobs it already has, then it ends.)
pub struct PlayerHandle {
    name: String,
    commands: Sender<Command>,
    status: Arc<Mutex<OutputStatus>>,
    thread: Option<JoinHandle<()>>,
    heartbeat: Heartbeat,
    sounds: SoundLog,
}

/// Proof of life from a loop that must never hang: the loop calls `beat`, a watchdog reads
/// `age`. Cheap (one atomic store) and safe from any thread.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<(std::time::Instant, std::sync::atomic::AtomicU64)>);

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat(Arc::new((
            std::time::Instant::now(),
            std::sync::atomic::AtomicU64::new(0),
        )))
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        let ms = self.0 .0.elapsed().as_millis() as u64;
        self.0 .1.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Time since the last beat (since creation if none yet).
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.0 .1.load(std::sync::atomic::Ordering::Relaxed));
        self.0 .0.elapsed().saturating_sub(last)
    }
}

impl PlayerHandle {
    /// Start the player thread `player-<name>` for `spec`. The thread opens the device itself;
    /// if that fails the output shows `device_ok: false` and the thread retries every few
    /// seconds. Never fails: if even the thread cannot be started, the status says so and
    /// `submit` returns `Stopped`.
    pub fn spawn(spec: OutputSpec, clock: SharedClock, journal: Arc<dyn Journal>) -> Self {
        let name = spec.name.clone();
        let status = Arc::new(Mutex::new(OutputStatus {
            name: spec.name.clone(),
            kind: spec.kind,
            device: backend::describe(&spec),
            device_ok: false,
            device_error: Some("the device has not been opened yet".to_owned()),
            now_playing: None,
        }));
        let (commands, receiver) = mpsc::channel();
        let heartbeat = Heartbeat::default();
        let sounds = SoundLog::default();
        let thread = player::spawn(
            spec,
            clock,
            journal,
            Arc::clone(&status),
            (commands.clone(), receiver),
            heartbeat.clone(),
            sounds.clone(),
        );
        PlayerHandle {
            name,
            commands,
            status,
            thread,
            heartbeat,
            sounds,
        }
    }

    /// How long since the player thread last went round its loop (it does at least every
    /// quarter second while it has work, and every 5 s while idle).
    pub fn heartbeat_age(&self) -> Duration {
        self.heartbeat.age()
    }

    /// The output's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queue a slot job. It starts at `start_at`, or as soon as the job before it (or an
    /// emergency) has finished if that is later. Errors with `Stopped` if the player thread has
    /// ended.
    ///
    /// Submit at least `max(2 s, amp preroll + 1 s)` ahead: the player queues the first sound on
    /// the device 1 s before `start_at` (so it leaves the device on the instant), and switches the
    /// amplifier on `preroll` before it. A job that comes later still plays, as close to its time
    /// as it can, with the amplifier switched on at once.
    pub fn submit(&self, job: SlotJob) -> Result<(), PlayoutError> {
        self.commands
            .send(Command::Job(Box::new(job)))
            .map_err(|_| PlayoutError::Stopped(self.name.clone()))
    }

    /// Preempt whatever plays, now: the sound on air stops at once (an item's row ends
    /// `interrupted`, "interrupted by an emergency"), the alert tone plays (not logged), then the
    /// message `repeat` times with the configured pause between (the `pause` of the slot jobs
    /// this player was given, 1 s before the first), each repetition a row of its own, then the
    /// schedule resumes: the interrupted item airs again if it still fits before its slot's end
    /// (a new row), and the items after it as planned if they fit. An emergency that arrives
    /// while another plays is queued after it. The alert reaches the device within a few device
    /// ticks of this call (the budget is 250 ms); amplifier power, if configured and off, is
    /// switched on at the same moment, without waiting for it.
    ///
    /// Returns at once; errors with `Stopped` if the player thread has ended.
    pub fn emergency(&self, job: EmergencyJob) -> Result<(), PlayoutError> {
        self.commands
            .send(Command::Emergency(Box::new(job)))
            .map_err(|_| PlayoutError::Stopped(self.name.clone()))
    }

    /// Silence the output now: the sound on air ends (an item's or emergency message's row
    /// `interrupted`, "stopped by operator"), the rest of its job, an emergency's remaining
    /// repetitions and queued emergencies, and any queued job already due are dropped (no rows).
    /// A job still waiting for its start, and jobs due later, are kept. Does nothing if the
    /// thread has ended.
    pub fn stop_now(&self) {
        let _ = self.commands.send(Command::StopNow);
    }

    /// Take announcement `announcement_id` off this output (it was withdrawn): if it is on air it
    /// is cut at once (its row ends `interrupted`, "withdrawn: <reason>") and the job goes on with
    /// its next item after the configured pause; a queued repetition of it, in the job playing
    /// or in jobs waiting, is dropped without a row, and so are an emergency's remaining
    /// repetitions of it. Returns at once; does nothing if the thread has ended.
    pub fn stop_item(&self, announcement_id: i64, reason: &str) {
        let _ = self.commands.send(Command::StopItem {
            announcement_id,
            reason: reason.to_owned(),
        });
    }

    /// Where sound began and ended on this output's device, to the frame, oldest first (the last
    /// 10 000 runs; see [`RunDetector`]). Recorded by the null and wav devices only; empty for
    /// alsa. For tests and the timing benchmark: when did sound really reach the device?
    pub fn sound_runs(&self) -> Vec<SoundRun> {
        self.sounds.runs()
    }

    /// The output's state, as the player thread last wrote it. Never waits for the thread.
    pub fn status(&self) -> OutputStatus {
        lock(&self.status).clone()
    }

    /// Stop the thread (an item on air ends as `interrupted`, "daemon shutting down") and wait
    /// for it to finish, which closes the device.
    pub fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(output = %self.name, "player thread panicked before shutdown");
            }
        }
    }
}

impl Drop for PlayerHandle {
    fn drop(&mut self) {
        // The device's audio thread holds senders too, so the thread cannot learn this from a
        // closed channel. After `shutdown` the thread is gone and this goes nowhere.
        if self.thread.is_some() {
            let _ = self.commands.send(Command::Orphaned);
        }
    }
}

// The runner shares handles between tasks.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<PlayerHandle>();
};

/// Lock a mutex whose data stays valid even if a holder panicked (plain status data).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
