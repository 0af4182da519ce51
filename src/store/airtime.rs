//! The airtime (as-run) log: rows are appended when an airing starts and closed once when it
//! ends. There is no function here that changes a closed row or deletes one, and the database
//! triggers refuse both.

use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

use super::{parse_opt_ts, parse_ts, ts, Result, Store, StoreError};
use crate::domain::{AiringInfo, AirtimeEntry, AirtimeStatus, AnnouncementId};
use crate::schedule::AiredCounts;

/// A page query over the log. `from`/`to` bound `scheduled_at` (`[from, to)`); `cursor` is the id
/// of the last row already seen.
#[derive(Debug, Clone, Default)]
pub struct AirtimeQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub output: Option<String>,
    pub announcement: Option<AnnouncementId>,
    pub status: Option<AirtimeStatus>,
    pub cursor: Option<i64>,
    pub limit: u32,
}

pub type AirtimeRow = AirtimeEntry;

const COLUMNS: &str =
    "id, announcement_id, title, sha256, output, slot, scheduled_at, started_at, \
    ended_at, duration_ms, status, detail";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<AirtimeEntry>> {
    let scheduled: String = r.get(6)?;
    let started: Option<String> = r.get(7)?;
    let ended: Option<String> = r.get(8)?;
    let status: String = r.get(10)?;
    let build = || -> Result<AirtimeEntry> {
        Ok(AirtimeEntry {
            id: r.get(0)?,
            announcement_id: r.get(1)?,
            title: r.get(2)?,
            sha256: r.get(3)?,
            output: r.get(4)?,
            slot: r.get(5)?,
            scheduled_at: parse_ts(&scheduled)?,
            started_at: parse_opt_ts(started.clone())?,
            ended_at: parse_opt_ts(ended.clone())?,
            duration_ms: r.get::<_, Option<i64>>(9)?.map(|d| d.max(0) as u64),
            status: status.parse().map_err(StoreError::Corrupt)?,
            detail: r.get(11)?,
        })
    };
    Ok(build())
}

impl Store {
    /// Open a row: the airing has started. Returns the row id.
    pub fn airing_started(&self, a: &AiringInfo, started_at: DateTime<Utc>) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO airtime (announcement_id, title, sha256, output, slot, scheduled_at, started_at, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'playing')",
            params![a.announcement_id, a.title, a.sha256, a.output, a.slot, ts(a.scheduled_at), ts(started_at)],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Close an open row. Closing a row that is not open is an error (and the database refuses).
    pub fn airing_finished(
        &self,
        id: i64,
        status: AirtimeStatus,
        ended_at: DateTime<Utc>,
        detail: &str,
    ) -> Result<()> {
        if status == AirtimeStatus::Playing {
            return Err(StoreError::Conflict(
                "a row cannot be closed as 'playing'".into(),
            ));
        }
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE airtime SET status = ?2, ended_at = ?3, detail = ?4, \
             duration_ms = MAX(0, CAST(ROUND((julianday(?3) - julianday(started_at)) * 86400000) AS INTEGER)) \
             WHERE id = ?1 AND status = 'playing'",
            params![id, status.as_str(), ts(ended_at), detail],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "airtime row {id} is not open"
            )));
        }
        Ok(())
    }

    /// A closed row for an airing that never started (`failed` or `missed`).
    pub fn airing_not_aired(
        &self,
        a: &AiringInfo,
        status: AirtimeStatus,
        at: DateTime<Utc>,
        detail: &str,
    ) -> Result<i64> {
        if !matches!(status, AirtimeStatus::Failed | AirtimeStatus::Missed) {
            return Err(StoreError::Conflict(format!(
                "'{}' is not a status for an airing that did not start",
                status.as_str()
            )));
        }
        let conn = self.conn();
        conn.execute(
            "INSERT INTO airtime (announcement_id, title, sha256, output, slot, scheduled_at, ended_at, duration_ms, status, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9)",
            params![a.announcement_id, a.title, a.sha256, a.output, a.slot, ts(a.scheduled_at), ts(at), status.as_str(), detail],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// At start-up: rows left open by a crash or power cut become `interrupted`. Their end time
    /// is unknown and stays empty; `detail` says when it was found.
    pub fn close_abandoned_airings(&self, now: DateTime<Utc>) -> Result<usize> {
        let conn = self.conn();
        Ok(conn.execute(
            "UPDATE airtime SET status = 'interrupted', detail = ?1 WHERE status = 'playing'",
            [format!(
                "the daemon stopped during this airing (found open at restart, {})",
                ts(now)
            )],
        )?)
    }

    /// One page of rows, oldest id first, and the cursor for the next page (None at the end).
    pub fn airtime(&self, q: &AirtimeQuery) -> Result<(Vec<AirtimeEntry>, Option<i64>)> {
        let limit = q.limit.clamp(1, 10_000);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM airtime WHERE id > ?1 \
             AND (?2 IS NULL OR scheduled_at >= ?2) AND (?3 IS NULL OR scheduled_at < ?3) \
             AND (?4 IS NULL OR output = ?4) AND (?5 IS NULL OR announcement_id = ?5) \
             AND (?6 IS NULL OR status = ?6) ORDER BY id LIMIT ?7"
        ))?;
        let rows = stmt.query_map(
            params![
                q.cursor.unwrap_or(0),
                q.from.map(ts),
                q.to.map(ts),
                q.output,
                q.announcement,
                q.status.map(|s| s.as_str()),
                limit + 1
            ],
            from_row,
        )?;
        let mut out: Vec<AirtimeEntry> = rows.map(|r| r?).collect::<Result<_>>()?;
        let next = if out.len() > limit as usize {
            out.truncate(limit as usize);
            out.last().map(|r| r.id)
        } else {
            None
        };
        Ok((out, next))
    }

    /// Airings that count against plays per day: completed or still playing, scheduled since
    /// `since`, recorded per local day of their occurrence in `tz`.
    pub fn aired_counts(&self, since: DateTime<Utc>, tz: chrono_tz::Tz) -> Result<AiredCounts> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT announcement_id, output, slot, scheduled_at FROM airtime \
             WHERE scheduled_at >= ?1 AND status IN ('completed', 'playing') AND announcement_id IS NOT NULL",
        )?;
        let rows = stmt.query_map([ts(since)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut counts = AiredCounts::default();
        for row in rows {
            let (id, output, slot, at) = row?;
            let at = parse_ts(&at)?;
            counts.record(id, &output, at.with_timezone(&tz).date_naive(), &slot, at);
        }
        Ok(counts)
    }
}
