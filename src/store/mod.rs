//! The SQLite store: numbered migrations, announcements and their history, tokens, and the
//! append-only, hash-chained airtime log. One connection behind a mutex; callers on the async
//! side use `spawn_blocking`. Instants are stored as UTC RFC 3339 text with milliseconds, which
//! sorts.
//!
//! Writes to the airtime log go through [`Store::log_write`]: on a full disk it gives up the
//! reserved room (a file kept beside the database, see [`Store::keep_reserve`]) and tries once
//! more; a write that still fails is counted and logged at error level, never dropped quietly
//! ([`Store::log_status`]).

mod airtime;
mod announcements;
mod migrations;
mod sync;
mod tokens;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, ErrorCode};
use serde::Serialize;

pub use airtime::{AirtimeQuery, AirtimeRow, ChainCheck, ChainProblem};
pub use announcements::{HistoryEntry, NewAnnouncement};
pub use sync::{CapRecord, ReportOutcome, ReporterState, UpstreamState, UpstreamUpdate};
pub use tokens::{TokenInfo, TOKEN_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    log: Arc<LogHealth>,
}

/// How the airtime log's writes are going, shared by every clone of a store.
#[derive(Default)]
struct LogHealth {
    /// The reserved room: a file whose space is given back to the log when the disk fills.
    reserve: Mutex<Option<PathBuf>>,
    released: std::sync::atomic::AtomicBool,
    failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

/// What [`Store::log_status`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogStatus {
    /// Airtime writes that failed even after the reserved room was given back. Anything but 0
    /// means airings went unrecorded: the status page and the daemon's log say so.
    pub failures: u64,
    pub last_failure: Option<String>,
    /// Whether the reserved room is still held (false once released, or if never set up).
    pub reserve_held: bool,
    /// The reserved room was given back because the disk was full (the daemon's log says when).
    pub reserve_released: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A write that failed for lack of room (or an I/O error, which on a full disk is often how
/// SQLite hears ENOSPC while growing its write-ahead log).
fn out_of_room(e: &StoreError) -> bool {
    matches!(e, StoreError::Sql(rusqlite::Error::SqliteFailure(f, _))
        if matches!(f.code, ErrorCode::DiskFull | ErrorCode::SystemIoFailure))
}

impl Store {
    /// Open (creating if needed) the database at `path`, in WAL mode, migrated to the latest
    /// version. A database written by a newer hokrajai is refused.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on the disk before the call returns, so a power cut (the usual way
        // a village box stops) cannot take back an airing already logged. The log writes a few
        // rows per slot; the extra fsync costs nothing that matters.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrations().to_latest(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            log: Arc::default(),
        })
    }

    /// Hold `bytes` of the disk for the airtime log in the file at `path` (made, filled with
    /// zeros so the room is really taken, or kept if already there). When a log write fails for
    /// lack of room the file is deleted and the write tried again. Errors: the file cannot be
    /// made (usually: the disk is already full); the log then has no reserve, and says so.
    pub fn keep_reserve(&self, path: PathBuf, bytes: u64) -> std::io::Result<()> {
        let have = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if have < bytes {
            let made = (|| {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                let zeros = vec![0u8; 64 * 1024];
                let mut left = bytes - have;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    f.write_all(&zeros[..n])?;
                    left -= n as u64;
                }
                f.sync_all()
            })();
            if let Err(e) = made {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        }
        *lock(&self.log.reserve) = Some(path);
        Ok(())
    }

    /// How the airtime log's writes are going.
    pub fn log_status(&self) -> LogStatus {
        LogStatus {
            failures: self.log.failures.load(Ordering::Relaxed),
            last_failure: lock(&self.log.last_failure).clone(),
            reserve_held: lock(&self.log.reserve).is_some(),
            reserve_released: self.log.released.load(Ordering::Relaxed),
        }
    }

    /// Give the reserved room back to the disk. True if there was one to give.
    fn release_reserve(&self) -> bool {
        let Some(path) = lock(&self.log.reserve).take() else {
            return false;
        };
        let result = std::fs::remove_file(&path);
        self.log.released.store(true, Ordering::Relaxed);
        tracing::error!(
            reserve = %path.display(),
            removed = result.is_ok(),
            "DISK FULL: the airtime log ran out of room; its reserved room was released so that \
             airings keep being recorded. Free space on the data disk now."
        );
        true
    }

    /// Run one airtime-log write. Out of room: release the reserve and try once more. A write
    /// that still fails is counted and logged loudly, and the error returned.
    pub(crate) fn log_write<T>(
        &self,
        what: &str,
        mut write: impl FnMut(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let mut result = write(&mut conn);
        if matches!(&result, Err(e) if out_of_room(e)) && self.release_reserve() {
            result = write(&mut conn);
        }
        if let Err(e) = &result {
            if matches!(e, StoreError::Sql(_) | StoreError::Corrupt(_)) {
                let n = self.log.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let message = format!("{what}: {e}");
                tracing::error!(failures = n, error = %message, "AIRTIME LOG WRITE FAILED: an airing is not recorded");
                *lock(&self.log.last_failure) = Some(message);
            }
        }
        result
    }

    /// Run `f` on tokio's blocking pool (the store's calls block on SQLite and its mutex), for
    /// the async side: the API, the provincial link. A task that panicked is reported as an
    /// error, not propagated.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Corrupt(format!("a database task failed: {e}")))?
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Instants as stored: UTC, milliseconds, `Z`.
pub fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp '{text}': {e}")))
}

pub(crate) fn parse_opt_ts(text: Option<String>) -> Result<Option<DateTime<Utc>>> {
    text.as_deref().map(parse_ts).transpose()
}

/// What the store's tests share: an instant from text, an airing, a store holding announcement 1.
#[cfg(test)]
pub(crate) mod testing {
    use chrono::{DateTime, Utc};

    use super::Store;
    use crate::domain::AiringInfo;

    pub fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    pub fn airing(output: &str) -> AiringInfo {
        AiringInfo {
            announcement_id: 1,
            title: "ประกาศ".into(),
            sha256: "ab".repeat(32),
            output: output.into(),
            slot: "morning".into(),
            scheduled_at: at("2026-11-23T23:00:00Z"),
        }
    }

    /// A store with one announcement (rows refer to it).
    pub fn store() -> Store {
        let s = Store::open_in_memory().unwrap();
        s.conn()
            .execute_batch(
                "INSERT INTO announcements (id, title, priority, status, sha256, size_bytes, container, codec, \
                 sample_rate, channels, duration_ms, plays_per_day, outputs, uploaded_by, created_at) \
                 VALUES (1, 't', 'normal', 'approved', 'x', 1, 'mp3', 'mp3', 44100, 2, 2000, 1, 'tower', 'a', '2026-01-01T00:00:00.000Z')",
            )
            .unwrap();
        s
    }
}
