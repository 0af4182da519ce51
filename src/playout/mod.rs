//! Playout: one player thread per output, each owning its device (opened on that thread and kept
//! open). Backends form a table (alsa, null, wav); the runner hands a player whole slot jobs and
//! the player reports every airing through a [`Journal`].
//!
//! INTERFACE CONTRACT (used by runner.rs and main.rs; keep these signatures).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::domain::{AirtimeStatus, AiringInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Alsa,
    Null,
    Wav,
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
}

/// Where airings are recorded. Implemented by the store; called from player threads.
pub trait Journal: Send + Sync + 'static {
    /// The item's audio has been handed to the device at `started_at`. Returns the open row's id.
    fn started(&self, airing: &AiringInfo, started_at: DateTime<Utc>) -> Result<i64, String>;
    /// The open row `row` ended with `status` (completed, interrupted or failed).
    fn finished(&self, row: i64, status: AirtimeStatus, ended_at: DateTime<Utc>, detail: &str);
    /// The item could not start at all (missing or undecodable file, device down): a `failed` row.
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
}

#[derive(Debug, Clone, Serialize)]
pub struct NowPlaying {
    pub announcement_id: Option<i64>,
    pub title: String,
    pub slot: String,
    pub started_at: DateTime<Utc>,
}

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

/// A running player. Dropping it does not stop the thread; call `shutdown`.
pub struct PlayerHandle;

impl PlayerHandle {
    pub fn spawn(_spec: OutputSpec, _clock: SharedClock, _journal: Arc<dyn Journal>) -> Self {
        todo!("playout helper")
    }
    pub fn name(&self) -> &str {
        todo!()
    }
    pub fn submit(&self, _job: SlotJob) -> Result<(), PlayoutError> {
        todo!()
    }
    pub fn stop_now(&self) {
        todo!()
    }
    pub fn status(&self) -> OutputStatus {
        todo!()
    }
    pub fn shutdown(self) {}
}
