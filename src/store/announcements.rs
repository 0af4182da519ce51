//! Announcements and the history of who changed them.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{parse_opt_ts, parse_ts, ts, Result, Store, StoreError};
use crate::domain::{Announcement, AnnouncementId, AnnouncementStatus, Priority, Source};

/// An announcement about to be stored (audio already probed and in place).
#[derive(Debug, Clone)]
pub struct NewAnnouncement {
    pub title: String,
    pub script: String,
    pub agency: String,
    pub priority: Priority,
    pub sha256: String,
    pub size_bytes: u64,
    pub container: String,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub duration_ms: u64,
    pub loudness_lufs: Option<f64>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub plays_per_day: u32,
    pub outputs: Vec<String>,
    pub uploaded_by: String,
}

/// One state change of an announcement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub action: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub detail: String,
}

const COLUMNS: &str = "id, title, script, agency, priority, status, sha256, size_bytes, codec, \
    sample_rate, channels, duration_ms, loudness_lufs, valid_from, valid_until, plays_per_day, \
    outputs, uploaded_by, created_at, decided_by, decided_at, reason, source, source_ref";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<Announcement>> {
    let priority: String = r.get(4)?;
    let status: String = r.get(5)?;
    let outputs: String = r.get(16)?;
    let created: String = r.get(18)?;
    let source: String = r.get(22)?;
    let (vf, vu, da): (Option<String>, Option<String>, Option<String>) =
        (r.get(13)?, r.get(14)?, r.get(20)?);
    let build = || -> Result<Announcement> {
        Ok(Announcement {
            id: r.get(0)?,
            title: r.get(1)?,
            script: r.get(2)?,
            agency: r.get(3)?,
            priority: priority.parse().map_err(StoreError::Corrupt)?,
            status: status.parse().map_err(StoreError::Corrupt)?,
            sha256: r.get(6)?,
            size_bytes: r.get::<_, i64>(7)? as u64,
            codec: r.get(8)?,
            sample_rate: r.get(9)?,
            channels: r.get(10)?,
            duration_ms: r.get::<_, i64>(11)? as u64,
            loudness_lufs: r.get(12)?,
            valid_from: parse_opt_ts(vf.clone())?,
            valid_until: parse_opt_ts(vu.clone())?,
            plays_per_day: r.get(15)?,
            outputs: outputs
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            uploaded_by: r.get(17)?,
            created_at: parse_ts(&created)?,
            decided_by: r.get(19)?,
            decided_at: parse_opt_ts(da.clone())?,
            reason: r.get(21)?,
            source: source.parse().map_err(StoreError::Corrupt)?,
            source_ref: r.get(23)?,
        })
    };
    Ok(build())
}

/// Where a new row comes from and how it arrives: uploaded here (`pending`, waiting for a second
/// person) or already approved upstream.
pub(super) struct Origin<'a> {
    pub status: AnnouncementStatus,
    pub source: Source,
    pub source_ref: Option<&'a str>,
    /// Who approved it and when, for rows that arrive approved.
    pub decided: Option<(&'a str, DateTime<Utc>)>,
}

impl Origin<'_> {
    fn local() -> Self {
        Origin {
            status: AnnouncementStatus::Pending,
            source: Source::Local,
            source_ref: None,
            decided: None,
        }
    }
}

/// The one INSERT of an announcement row; returns its id.
pub(super) fn insert_row(
    tx: &rusqlite::Transaction<'_>,
    a: &NewAnnouncement,
    origin: &Origin<'_>,
    now: DateTime<Utc>,
) -> Result<AnnouncementId> {
    tx.execute(
        "INSERT INTO announcements (title, script, agency, priority, status, sha256, size_bytes, \
         container, codec, sample_rate, channels, duration_ms, loudness_lufs, valid_from, \
         valid_until, plays_per_day, outputs, uploaded_by, created_at, decided_by, decided_at, \
         source, source_ref) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20, ?21, ?22, ?23)",
        params![
            a.title,
            a.script,
            a.agency,
            a.priority.as_str(),
            origin.status.as_str(),
            a.sha256,
            a.size_bytes as i64,
            a.container,
            a.codec,
            a.sample_rate,
            a.channels,
            a.duration_ms as i64,
            a.loudness_lufs,
            a.valid_from.map(ts),
            a.valid_until.map(ts),
            a.plays_per_day,
            a.outputs.join(","),
            a.uploaded_by,
            ts(now),
            origin.decided.map(|(by, _)| by),
            origin.decided.map(|(_, at)| ts(at)),
            origin.source.as_str(),
            origin.source_ref,
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

impl Store {
    /// Store a new announcement as `pending`, recording the upload in its history.
    pub fn insert_announcement(
        &self,
        a: &NewAnnouncement,
        now: DateTime<Utc>,
    ) -> Result<Announcement> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = insert_row(&tx, a, &Origin::local(), now)?;
        tx.execute(
            "INSERT INTO announcement_history (announcement_id, action, actor, at) VALUES (?1, 'uploaded', ?2, ?3)",
            params![id, a.uploaded_by, ts(now)],
        )?;
        tx.commit()?;
        drop(conn);
        self.announcement(id)
    }

    pub fn announcement(&self, id: AnnouncementId) -> Result<Announcement> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM announcements WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?
        .ok_or(StoreError::NotFound)?
    }

    /// All announcements, newest first, optionally of one status.
    pub fn announcements(&self, status: Option<AnnouncementStatus>) -> Result<Vec<Announcement>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM announcements WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([status.map(|s| s.as_str())], from_row)?;
        rows.map(|r| r?).collect()
    }

    /// Move an announcement to `to`, recording `actor`, `now` and `reason`. Allowed moves:
    /// pending → approved | rejected; pending | approved → withdrawn.
    pub fn decide(
        &self,
        id: AnnouncementId,
        to: AnnouncementStatus,
        actor: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Announcement> {
        use AnnouncementStatus::*;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let from: String = tx
            .query_row(
                "SELECT status FROM announcements WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::NotFound)?;
        let from: AnnouncementStatus = from.parse().map_err(StoreError::Corrupt)?;
        let allowed = matches!(
            (from, to),
            (Pending, Approved)
                | (Pending, Rejected)
                | (Pending, Withdrawn)
                | (Approved, Withdrawn)
        );
        if !allowed {
            return Err(StoreError::Conflict(format!(
                "announcement {id} is {}; it cannot become {}",
                from.as_str(),
                to.as_str()
            )));
        }
        tx.execute(
            "UPDATE announcements SET status = ?2, decided_by = ?3, decided_at = ?4, reason = ?5 WHERE id = ?1",
            params![id, to.as_str(), actor, ts(now), (!reason.is_empty()).then_some(reason)],
        )?;
        tx.execute(
            "INSERT INTO announcement_history (announcement_id, action, actor, at, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, to.as_str(), actor, ts(now), reason],
        )?;
        tx.commit()?;
        drop(conn);
        self.announcement(id)
    }

    /// Who did what to an announcement, oldest first.
    pub fn history(&self, id: AnnouncementId) -> Result<Vec<HistoryEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT action, actor, at, detail FROM announcement_history WHERE announcement_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |r| {
            let at: String = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, at, r.get(3)?))
        })?;
        rows.map(|r| {
            let (action, actor, at, detail) = r?;
            Ok(HistoryEntry {
                action,
                actor,
                at: parse_ts(&at)?,
                detail,
            })
        })
        .collect()
    }

    /// Is any announcement stored with this audio?
    pub fn audio_in_use(&self, sha256: &str) -> Result<bool> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT 1 FROM announcements WHERE sha256 = ?1 LIMIT 1",
                [sha256],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}
