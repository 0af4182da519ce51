//! The provincial link's records (issue #3): announcements that arrived approved from the
//! province or a CAP alert, the state of each upstream manifest, the outbox of airtime rows still
//! to report and the reporter's state, and — on a province — the rows each box reported.
//!
//! The outbox is filled by triggers (migration V3): a row is queued in the same transaction that
//! makes it final, so no crash can leave a logged airing unqueued. Rows leave the outbox only when
//! the province has acknowledged them. The province keeps reported rows per box as append-only as
//! the box's own log, and refuses a batch whose links do not follow on from what it already holds.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::airtime::{link_from_row, LINK_COLUMNS};
use super::announcements::{insert_row, NewAnnouncement, Origin};
use super::{parse_opt_ts, ts, Result, Store, StoreError};
use crate::audit::chain::{Link, Walker};
use crate::domain::{Announcement, AnnouncementId, AnnouncementStatus, Priority, Source};

/// What the box knows of one upstream manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamState {
    pub name: String,
    pub url: String,
    pub etag: Option<String>,
    /// The sequence of the last manifest applied.
    pub sequence: Option<u64>,
    pub manifest_sha256: Option<String>,
    /// Items of that manifest in force here.
    pub items: u64,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// When a manifest with a new sequence was last applied.
    pub last_change_at: Option<DateTime<Utc>>,
    /// The last failure; cleared by the next success.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// How reporting to the province is going.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReporterState {
    /// Finished airtime rows not yet acknowledged by the province.
    pub queued: u64,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Rows the province has acknowledged since the box was installed.
    pub reported_rows: u64,
    /// The highest seq acknowledged.
    pub reported_through: i64,
}

/// What the province made of one reported batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportOutcome {
    /// Rows stored now.
    pub accepted: u64,
    /// Rows it already held, unchanged (a batch sent again after a lost answer).
    pub duplicates: u64,
    /// The highest seq it holds for this box.
    pub last_seq: i64,
}

/// One CAP message as received, aired or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapRecord {
    pub id: i64,
    pub sender: String,
    pub identifier: String,
    pub sent: String,
    pub received_at: String,
    /// Where it came from: "api" or the feed URL.
    pub via: String,
    /// "aired", "queued", "cancelled", "ignored", "failed".
    pub decision: String,
    pub detail: String,
    pub announcement_id: Option<AnnouncementId>,
}

/// A province item changing in place (same audio): what may change between manifests.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamUpdate {
    pub title: String,
    pub script: String,
    pub agency: String,
    pub priority: Priority,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub plays_per_day: u32,
    pub outputs: Vec<String>,
}

fn upstream_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<UpstreamState>> {
    let texts: [Option<String>; 5] = [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?];
    let seq: Option<i64> = r.get(3)?;
    let items: i64 = r.get(5)?;
    let base = UpstreamState {
        name: r.get(0)?,
        url: r.get(1)?,
        etag: r.get(2)?,
        manifest_sha256: r.get(4)?,
        sequence: seq.map(|s| s.max(0) as u64),
        items: items.max(0) as u64,
        last_error: texts[3].clone(),
        ..Default::default()
    };
    let build = move || -> Result<UpstreamState> {
        Ok(UpstreamState {
            last_attempt_at: parse_opt_ts(texts[0].clone())?,
            last_success_at: parse_opt_ts(texts[1].clone())?,
            last_change_at: parse_opt_ts(texts[2].clone())?,
            last_error_at: parse_opt_ts(texts[4].clone())?,
            ..base
        })
    };
    Ok(build())
}

const UPSTREAM_COLUMNS: &str = "name, url, etag, sequence, manifest_sha256, items, \
    last_attempt_at, last_success_at, last_change_at, last_error, last_error_at";

impl Store {
    /// The announcement that came from `source` as `source_ref`, if any (whatever its status).
    pub fn announcement_by_source(
        &self,
        source: Source,
        source_ref: &str,
    ) -> Result<Option<Announcement>> {
        let id: Option<i64> = self
            .conn()
            .query_row(
                "SELECT id FROM announcements WHERE source = ?1 AND source_ref = ?2",
                params![source.as_str(), source_ref],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| self.announcement(id)).transpose()
    }

    /// Ids of the approved announcements from `source` whose `source_ref` starts with `prefix`.
    pub fn approved_from(
        &self,
        source: Source,
        prefix: &str,
    ) -> Result<Vec<(AnnouncementId, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, source_ref FROM announcements WHERE source = ?1 AND status = 'approved' \
             AND substr(source_ref, 1, length(?2)) = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![source.as_str(), prefix], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Store an announcement that arrives already approved (by the province, or by the
    /// authority of a CAP alert's sender): it never waits in this box's approval queue. Its
    /// history says who approved it, when, and through what (`detail`).
    #[allow(clippy::too_many_arguments)]
    pub fn insert_approved(
        &self,
        a: &NewAnnouncement,
        source: Source,
        source_ref: &str,
        approved_by: &str,
        approved_at: DateTime<Utc>,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<Announcement> {
        if source == Source::Local {
            return Err(StoreError::Conflict(
                "an announcement uploaded here must be approved by a second person".into(),
            ));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let origin = Origin {
            status: AnnouncementStatus::Approved,
            source,
            source_ref: Some(source_ref),
            decided: Some((approved_by, approved_at)),
        };
        let id = insert_row(&tx, a, &origin, now)?;
        tx.execute(
            "INSERT INTO announcement_history (announcement_id, action, actor, at, detail) \
             VALUES (?1, 'received', ?2, ?3, ?4)",
            params![id, a.uploaded_by, ts(now), detail],
        )?;
        tx.execute(
            "INSERT INTO announcement_history (announcement_id, action, actor, at, detail) \
             VALUES (?1, 'approved', ?2, ?3, ?4)",
            params![
                id,
                approved_by,
                ts(approved_at),
                format!("approved before it arrived ({})", source.as_str())
            ],
        )?;
        tx.commit()?;
        drop(conn);
        self.announcement(id)
    }

    /// Change the rules of an announcement that came approved from upstream (the audio never
    /// changes: new audio is a new item). Recorded in its history with `detail`. Only approved
    /// ones change; a withdrawn item stays withdrawn.
    pub fn update_from_upstream(
        &self,
        id: AnnouncementId,
        u: &UpstreamUpdate,
        actor: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<Announcement> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE announcements SET title = ?2, script = ?3, agency = ?4, priority = ?5, \
             valid_from = ?6, valid_until = ?7, plays_per_day = ?8, outputs = ?9 \
             WHERE id = ?1 AND status = 'approved' AND source <> 'local'",
            params![
                id,
                u.title,
                u.script,
                u.agency,
                u.priority.as_str(),
                u.valid_from.map(ts),
                u.valid_until.map(ts),
                u.plays_per_day,
                u.outputs.join(","),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "announcement {id} is not an approved item from upstream"
            )));
        }
        tx.execute(
            "INSERT INTO announcement_history (announcement_id, action, actor, at, detail) \
             VALUES (?1, 'updated', ?2, ?3, ?4)",
            params![id, actor, ts(now), detail],
        )?;
        tx.commit()?;
        drop(conn);
        self.announcement(id)
    }

    /// Every upstream this box has tried, by name.
    pub fn upstreams(&self) -> Result<Vec<UpstreamState>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {UPSTREAM_COLUMNS} FROM upstreams ORDER BY name"
        ))?;
        let rows = stmt.query_map([], upstream_from_row)?;
        rows.map(|r| r?).collect()
    }

    pub fn upstream(&self, name: &str) -> Result<Option<UpstreamState>> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {UPSTREAM_COLUMNS} FROM upstreams WHERE name = ?1"),
            [name],
            upstream_from_row,
        )
        .optional()?
        .transpose()
    }

    /// A poll of `name` at `url` begins.
    pub fn upstream_attempt(&self, name: &str, url: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "INSERT INTO upstreams (name, url, last_attempt_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, last_attempt_at = excluded.last_attempt_at",
            params![name, url, ts(at)],
        )?;
        Ok(())
    }

    /// A poll succeeded. With `applied = Some((sequence, sha256, items))` a manifest was applied
    /// (new sequence, or the same one re-checked); `None`: nothing new (304 or same sequence).
    pub fn upstream_ok(
        &self,
        name: &str,
        etag: Option<&str>,
        applied: Option<(u64, &str, u64)>,
        changed: bool,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let conn = self.conn();
        match applied {
            Some((seq, sha, items)) => conn.execute(
                "UPDATE upstreams SET etag = ?2, sequence = ?3, manifest_sha256 = ?4, items = ?5, \
                 last_success_at = ?6, last_error = NULL, last_error_at = NULL, \
                 last_change_at = CASE WHEN ?7 THEN ?6 ELSE last_change_at END WHERE name = ?1",
                params![name, etag, seq as i64, sha, items as i64, ts(at), changed],
            )?,
            None => conn.execute(
                "UPDATE upstreams SET etag = COALESCE(?2, etag), last_success_at = ?3, \
                 last_error = NULL, last_error_at = NULL WHERE name = ?1",
                params![name, etag, ts(at)],
            )?,
        };
        Ok(())
    }

    /// A poll failed; the box keeps what it has.
    pub fn upstream_failed(&self, name: &str, error: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "UPDATE upstreams SET last_error = ?2, last_error_at = ?3 WHERE name = ?1",
            params![name, error, ts(at)],
        )?;
        Ok(())
    }

    /// The oldest `limit` queued rows, in chain order, exactly as stored.
    pub fn outbox_batch(&self, limit: u32) -> Result<Vec<Link>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {LINK_COLUMNS} FROM airtime WHERE seq IN \
             (SELECT seq FROM outbox ORDER BY seq LIMIT ?1) ORDER BY seq"
        ))?;
        let rows = stmt.query_map([limit.max(1)], link_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The province acknowledged rows `first..=last`: they leave the outbox.
    pub fn outbox_acknowledged(&self, first: i64, last: i64, at: DateTime<Utc>) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM outbox WHERE seq >= ?1 AND seq <= ?2",
            params![first, last],
        )?;
        tx.execute(
            "UPDATE reporter SET last_success_at = ?1, last_error = NULL, last_error_at = NULL, \
             reported_rows = reported_rows + ?2, reported_through = MAX(reported_through, ?3) WHERE id = 1",
            params![ts(at), n as i64, last],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    /// A report attempt starts (`error` None) or failed.
    pub fn reporter_attempt(&self, at: DateTime<Utc>, error: Option<&str>) -> Result<()> {
        let conn = self.conn();
        match error {
            None => conn.execute(
                "UPDATE reporter SET last_attempt_at = ?1 WHERE id = 1",
                [ts(at)],
            )?,
            Some(e) => conn.execute(
                "UPDATE reporter SET last_error = ?1, last_error_at = ?2 WHERE id = 1",
                params![e, ts(at)],
            )?,
        };
        Ok(())
    }

    pub fn reporter_state(&self) -> Result<ReporterState> {
        let conn = self.conn();
        let queued: i64 = conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
        let (la, ls, le, lea, rows, through): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
            i64,
        ) = conn.query_row(
            "SELECT last_attempt_at, last_success_at, last_error, last_error_at, reported_rows, \
             reported_through FROM reporter WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?;
        Ok(ReporterState {
            queued: queued.max(0) as u64,
            last_attempt_at: parse_opt_ts(la)?,
            last_success_at: parse_opt_ts(ls)?,
            last_error: le,
            last_error_at: parse_opt_ts(lea)?,
            reported_rows: rows.max(0) as u64,
            reported_through: through,
        })
    }

    /// (Province) Store a batch box `box_name` reported under idempotency `key`. The links must
    /// be in seq order without gaps, each hash must follow from its row and the one before, and
    /// the batch must follow on from what is held for that box (or repeat it exactly: rows
    /// already held with the same hash count as duplicates). Anything else is refused whole,
    /// with the reason, and nothing is stored.
    pub fn accept_report(
        &self,
        box_name: &str,
        key: &str,
        links: &[Link],
        now: DateTime<Utc>,
    ) -> Result<ReportOutcome> {
        let (Some(first), Some(last)) = (links.first(), links.last()) else {
            return Err(StoreError::Conflict("the report holds no rows".into()));
        };
        let (first_seq, last_seq) = (first.row.seq, last.row.seq);
        // The batch's own links: contiguous and each hash right.
        let mut walker = Walker::new(first_seq, &first.prev_hash);
        for l in links {
            walker
                .step(l)
                .map_err(|m| StoreError::Conflict(format!("row seq {}: {m}", l.row.seq)))?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held_max: Option<i64> = tx.query_row(
            "SELECT MAX(seq) FROM box_airtime WHERE box = ?1",
            [box_name],
            |r| r.get(0),
        )?;
        if let Some(max) = held_max {
            if first_seq > max + 1 {
                return Err(StoreError::Conflict(format!(
                    "rows {} to {} are missing before this batch (the province holds up to seq {max})",
                    max + 1,
                    first_seq - 1
                )));
            }
            if first_seq > 1 {
                let before: Option<String> = tx
                    .query_row(
                        "SELECT hash FROM box_airtime WHERE box = ?1 AND seq = ?2",
                        params![box_name, first_seq - 1],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(h) = before {
                    if h != first.prev_hash {
                        return Err(StoreError::Conflict(format!(
                            "row seq {first_seq} does not follow the row seq {} the province holds \
                             (prev_hash {} ≠ {h}): the box's log was changed or replaced",
                            first_seq - 1,
                            first.prev_hash
                        )));
                    }
                }
            }
        }
        let (mut accepted, mut duplicates) = (0u64, 0u64);
        {
            let mut held =
                tx.prepare_cached("SELECT hash FROM box_airtime WHERE box = ?1 AND seq = ?2")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO box_airtime (box, seq, id, announcement_id, title, sha256, output, slot, \
                 scheduled_at, started_at, ended_at, duration_ms, status, detail, finalized_at, \
                 prev_hash, hash, received_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?;
            for l in links {
                let r = &l.row;
                let existing: Option<String> = held
                    .query_row(params![box_name, r.seq], |x| x.get(0))
                    .optional()?;
                match existing {
                    Some(h) if h == l.hash => duplicates += 1,
                    Some(h) => {
                        return Err(StoreError::Conflict(format!(
                            "row seq {} differs from the one the province already holds (hash {} ≠ {h})",
                            r.seq, l.hash
                        )))
                    }
                    None => {
                        insert.execute(params![
                            box_name,
                            r.seq,
                            r.id,
                            r.announcement_id,
                            r.title,
                            r.sha256,
                            r.output,
                            r.slot,
                            r.scheduled_at,
                            r.started_at,
                            r.ended_at,
                            r.duration_ms,
                            r.status,
                            r.detail,
                            r.finalized_at,
                            l.prev_hash,
                            l.hash,
                            ts(now),
                        ])?;
                        accepted += 1;
                    }
                }
            }
        }
        tx.execute(
            "INSERT INTO box_reports (box, key, first_seq, last_seq, rows, new_rows, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (box, key) DO NOTHING",
            params![
                box_name,
                key,
                first_seq,
                last_seq,
                links.len() as i64,
                accepted as i64,
                ts(now)
            ],
        )?;
        let held_max: i64 = tx.query_row(
            "SELECT MAX(seq) FROM box_airtime WHERE box = ?1",
            [box_name],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(ReportOutcome {
            accepted,
            duplicates,
            last_seq: held_max,
        })
    }

    /// (Province) The boxes that have reported, with their row count and highest seq.
    pub fn reporting_boxes(&self) -> Result<Vec<(String, u64, i64)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT box, COUNT(*), MAX(seq) FROM box_airtime GROUP BY box ORDER BY box")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Has this CAP message (sender, identifier, sent) been received before?
    pub fn cap_seen(
        &self,
        sender: &str,
        identifier: &str,
        sent: &str,
    ) -> Result<Option<CapRecord>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {CAP_COLUMNS} FROM cap_messages WHERE sender = ?1 AND identifier = ?2 AND sent = ?3"),
                params![sender, identifier, sent],
                cap_from_row,
            )
            .optional()?)
    }

    /// Record a CAP message and what was done with it. A message already recorded is left as it
    /// is (the first decision stands) and its record returned.
    #[allow(clippy::too_many_arguments)]
    pub fn cap_record(
        &self,
        sender: &str,
        identifier: &str,
        sent: &str,
        via: &str,
        decision: &str,
        detail: &str,
        announcement_id: Option<AnnouncementId>,
        now: DateTime<Utc>,
    ) -> Result<CapRecord> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO cap_messages (sender, identifier, sent, received_at, via, decision, detail, announcement_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (sender, identifier, sent) DO NOTHING",
            params![sender, identifier, sent, ts(now), via, decision, detail, announcement_id],
        )?;
        Ok(conn.query_row(
            &format!("SELECT {CAP_COLUMNS} FROM cap_messages WHERE sender = ?1 AND identifier = ?2 AND sent = ?3"),
            params![sender, identifier, sent],
            cap_from_row,
        )?)
    }

    /// The latest `limit` CAP messages, newest first.
    pub fn cap_messages(&self, limit: u32) -> Result<Vec<CapRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CAP_COLUMNS} FROM cap_messages ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit.max(1)], cap_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The announcement a CAP message (by sender and identifier, any `sent`) put on air.
    pub fn cap_announcement(
        &self,
        sender: &str,
        identifier: &str,
    ) -> Result<Option<AnnouncementId>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT announcement_id FROM cap_messages WHERE sender = ?1 AND identifier = ?2 \
                 AND announcement_id IS NOT NULL ORDER BY id DESC LIMIT 1",
                params![sender, identifier],
                |r| r.get(0),
            )
            .optional()?)
    }
}

const CAP_COLUMNS: &str =
    "id, sender, identifier, sent, received_at, via, decision, detail, announcement_id";

fn cap_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CapRecord> {
    Ok(CapRecord {
        id: r.get(0)?,
        sender: r.get(1)?,
        identifier: r.get(2)?,
        sent: r.get(3)?,
        received_at: r.get(4)?,
        via: r.get(5)?,
        decision: r.get(6)?,
        detail: r.get(7)?,
        announcement_id: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AirtimeStatus;
    use crate::store::testing::{airing, at, store};

    /// Three finished rows (one closed, one failed, one closed) and one still open.
    fn with_rows(s: &Store) {
        let r = s
            .airing_started(&airing("tower"), at("2026-11-23T23:00:01Z"))
            .unwrap();
        s.airing_finished(r, AirtimeStatus::Completed, at("2026-11-23T23:00:09Z"), "")
            .unwrap();
        s.airing_not_aired(
            &airing("pa"),
            AirtimeStatus::Failed,
            at("2026-11-23T23:00:02Z"),
            "no file",
        )
        .unwrap();
        let r = s
            .airing_started(&airing("pa"), at("2026-11-23T23:00:10Z"))
            .unwrap();
        s.airing_finished(
            r,
            AirtimeStatus::Interrupted,
            at("2026-11-23T23:00:12Z"),
            "stop",
        )
        .unwrap();
        s.airing_started(&airing("tower"), at("2026-11-23T23:00:20Z"))
            .unwrap();
    }

    #[test]
    fn every_finished_row_is_queued_in_the_transaction_that_finishes_it() {
        let s = store();
        with_rows(&s);
        let batch = s.outbox_batch(100).unwrap();
        let seqs: Vec<i64> = batch.iter().map(|l| l.row.seq).collect();
        assert_eq!(
            seqs,
            [1, 2, 3],
            "the open row is not queued until it is final"
        );
        assert_eq!(s.reporter_state().unwrap().queued, 3);
        assert_eq!(
            s.outbox_acknowledged(1, 2, at("2026-11-24T00:00:00Z"))
                .unwrap(),
            2
        );
        let st = s.reporter_state().unwrap();
        assert_eq!(
            (st.queued, st.reported_rows, st.reported_through),
            (1, 2, 2)
        );
        assert_eq!(s.outbox_batch(100).unwrap()[0].row.seq, 3);
    }

    #[test]
    fn the_province_takes_each_row_once_and_refuses_what_does_not_follow() {
        let boxdb = store();
        with_rows(&boxdb);
        let links = boxdb.outbox_batch(100).unwrap();
        let prov = Store::open_in_memory().unwrap();
        let now = at("2026-11-24T00:00:00Z");
        // The first two, then all three again (a batch resent after a lost answer overlaps).
        let o = prov
            .accept_report("box-5012", "box-5012:1-2", &links[..2], now)
            .unwrap();
        assert_eq!((o.accepted, o.duplicates, o.last_seq), (2, 0, 2));
        let o = prov
            .accept_report("box-5012", "box-5012:1-3", &links, now)
            .unwrap();
        assert_eq!((o.accepted, o.duplicates, o.last_seq), (1, 2, 3));
        let o = prov
            .accept_report("box-5012", "box-5012:1-3", &links, now)
            .unwrap();
        assert_eq!((o.accepted, o.duplicates), (0, 3));
        // Another box's seq 1 is its own.
        let o = prov
            .accept_report("box-5013", "box-5013:1-1", &links[..1], now)
            .unwrap();
        assert_eq!(o.accepted, 1);
        assert_eq!(
            prov.reporting_boxes().unwrap(),
            [("box-5012".into(), 3, 3), ("box-5013".into(), 1, 1)]
        );

        // A changed row: its hash no longer follows.
        let mut bad = links.clone();
        bad[1].row.detail = "changed".into();
        let e = prov.accept_report("box-5014", "k", &bad, now).unwrap_err();
        assert!(e.to_string().contains("seq 2"), "{e}");
        // A gap after what is held.
        let e = prov
            .accept_report("box-5013", "k", &links[2..], now)
            .unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        // A rewritten log re-linked from scratch: seq 3 does not follow the held seq 2.
        let other = store();
        let r = other
            .airing_started(&airing("tower"), at("2026-11-23T22:00:00Z"))
            .unwrap();
        other
            .airing_finished(r, AirtimeStatus::Completed, at("2026-11-23T22:00:05Z"), "")
            .unwrap();
        with_rows(&other);
        let forged = other.outbox_batch(100).unwrap();
        let e = prov
            .accept_report("box-5012", "k2", &forged[3..], now)
            .unwrap_err();
        assert!(
            e.to_string().contains("does not follow") || e.to_string().contains("differs"),
            "{e}"
        );
        // Nothing of a refused batch was stored.
        assert_eq!(prov.reporting_boxes().unwrap().len(), 2);
    }

    #[test]
    fn upstream_state_keeps_the_last_success_and_error() {
        let s = store();
        let t = at("2026-11-24T00:00:00Z");
        s.upstream_attempt("province", "http://p/manifest.json", t)
            .unwrap();
        s.upstream_ok("province", Some("\"e1\""), Some((4, "ff", 2)), true, t)
            .unwrap();
        s.upstream_failed("province", "connection refused", at("2026-11-24T01:00:00Z"))
            .unwrap();
        let u = s.upstream("province").unwrap().unwrap();
        assert_eq!(u.sequence, Some(4));
        assert_eq!(u.etag.as_deref(), Some("\"e1\""));
        assert_eq!(u.last_success_at, Some(t));
        assert_eq!(u.last_error.as_deref(), Some("connection refused"));
        s.upstream_ok("province", None, None, false, at("2026-11-24T02:00:00Z"))
            .unwrap();
        let u = s.upstream("province").unwrap().unwrap();
        assert_eq!(
            (u.last_error, u.sequence, u.last_change_at),
            (None, Some(4), Some(t))
        );
    }
}
