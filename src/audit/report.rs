//! The day report for auditors: for one local day (the box's zone), per announcement and output,
//! what was owed, what aired, and what did not and why.
//!
//! What was owed comes from the planner (`Planner::plan` over the day): it plans each slot
//! occurrence from the approved announcements and what has already aired, so after the fact its
//! answer for an occurrence is exactly what the box still owed there. An item that aired counts
//! as owed-and-aired; a planned airing with no completed row is owed-and-not-aired, and the
//! reason is read from the airtime rows of that occurrence (failed, interrupted, missed and
//! their detail) or, without any row, from what else is known (approved later, box not running).
//! Limits: the plan uses today's approvals and validity windows, so an announcement withdrawn
//! since then no longer counts as owed on an earlier day (its rows are still listed).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::domain::{AirtimeEntry, AirtimeStatus, Announcement};
use crate::runner::Planner;
use crate::schedule::{day_bounds, PlannedAiring};
use crate::store::{AirtimeQuery, Store, StoreError};
use crate::thai::format_datetime;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One airing as it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aired {
    pub id: i64,
    pub slot: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub status: AirtimeStatus,
    pub detail: String,
}

/// One planned airing that has not (or not yet) aired completely.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Owed {
    pub slot: String,
    pub occurrence_start: DateTime<Utc>,
    pub planned_start: DateTime<Utc>,
    pub planned_start_local: String,
    /// Why it did not air (for the past), or "planned" (for later today).
    pub reason: String,
}

/// Planned against aired for one announcement on one output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemReport {
    pub announcement_id: Option<i64>,
    pub title: String,
    pub output: String,
    /// From the announcement as it is now (None if it no longer exists).
    pub plays_per_day: Option<u32>,
    pub status_now: Option<String>,
    /// Completed airings plus planned airings not completed: what the box owed this day.
    pub owed: u32,
    pub completed: u32,
    pub interrupted: u32,
    pub failed: u32,
    pub missed: u32,
    pub playing: u32,
    /// Owed in an occurrence already past, without a completed airing: each with its reason.
    pub not_aired: Vec<Owed>,
    /// Owed later this day.
    pub upcoming: Vec<Owed>,
    pub airings: Vec<Aired>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub owed: u32,
    pub completed: u32,
    pub interrupted: u32,
    pub failed: u32,
    pub missed: u32,
    pub not_aired: u32,
    pub upcoming: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayReport {
    pub day: NaiveDate,
    pub timezone: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub items: Vec<ItemReport>,
    pub totals: Totals,
}

/// Build the report for local day `day`, as of `now`. Blocking (SQLite).
pub fn day_report(
    planner: &Planner,
    store: &Store,
    day: NaiveDate,
    now: DateTime<Utc>,
) -> Result<DayReport, ReportError> {
    let tz = planner.config.timezone;
    // [from, to) in UTC: 23 or 25 hours where the zone changes its clocks.
    let (from, to) = day_bounds(day, tz);
    let plan = planner.plan(store, from, to)?;
    let rows = day_rows(store, from, to)?;
    let announcements: BTreeMap<i64, Announcement> = store
        .announcements(None)?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();
    Ok(build(day, tz, from, to, now, &plan, &rows, &announcements))
}

/// Every airtime row scheduled in `[from, to)`.
fn day_rows(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<AirtimeEntry>, StoreError> {
    let mut q = AirtimeQuery {
        from: Some(from),
        to: Some(to),
        limit: 5000,
        ..AirtimeQuery::default()
    };
    let mut out = Vec::new();
    loop {
        let (rows, next) = store.airtime(&q)?;
        out.extend(rows);
        match next {
            Some(c) => q.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

type Key = (Option<i64>, String);

/// The pure part: plan + rows + announcements → the report.
#[allow(clippy::too_many_arguments)]
fn build(
    day: NaiveDate,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    plan: &[PlannedAiring],
    rows: &[AirtimeEntry],
    announcements: &BTreeMap<i64, Announcement>,
) -> DayReport {
    let mut items: BTreeMap<Key, ItemReport> = BTreeMap::new();
    let mut item = |id: Option<i64>, title: &str, output: &str| -> Key {
        let key = (id, output.to_owned());
        items.entry(key.clone()).or_insert_with(|| {
            let a = id.and_then(|i| announcements.get(&i));
            ItemReport {
                announcement_id: id,
                title: a
                    .map(|a| a.title.clone())
                    .unwrap_or_else(|| title.to_owned()),
                output: output.to_owned(),
                plays_per_day: a.map(|a| a.plays_per_day),
                status_now: a.map(|a| a.status.as_str().to_owned()),
                owed: 0,
                completed: 0,
                interrupted: 0,
                failed: 0,
                missed: 0,
                playing: 0,
                not_aired: Vec::new(),
                upcoming: Vec::new(),
                airings: Vec::new(),
            }
        });
        key
    };
    let keys_rows: Vec<Key> = rows
        .iter()
        .map(|r| item(r.announcement_id, &r.title, &r.output))
        .collect();
    let keys_plan: Vec<Key> = plan
        .iter()
        .map(|p| item(Some(p.announcement_id), &p.title, &p.output))
        .collect();

    for (r, key) in rows.iter().zip(keys_rows) {
        let Some(it) = items.get_mut(&key) else {
            continue;
        };
        match r.status {
            AirtimeStatus::Completed => it.completed += 1,
            AirtimeStatus::Interrupted => it.interrupted += 1,
            AirtimeStatus::Failed => it.failed += 1,
            AirtimeStatus::Missed => it.missed += 1,
            AirtimeStatus::Playing => it.playing += 1,
        }
        it.airings.push(Aired {
            id: r.id,
            slot: r.slot.clone(),
            scheduled_at: r.scheduled_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            duration_ms: r.duration_ms,
            status: r.status,
            detail: r.detail.clone(),
        });
    }

    for (p, key) in plan.iter().zip(keys_plan) {
        let reason = if p.start > now {
            "planned".to_owned()
        } else {
            why_not(p, rows, announcements.get(&p.announcement_id), tz)
        };
        let Some(it) = items.get_mut(&key) else {
            continue;
        };
        let owed = Owed {
            slot: p.slot.clone(),
            occurrence_start: p.occurrence_start,
            planned_start: p.start,
            planned_start_local: format_datetime(p.start, tz),
            reason,
        };
        if p.start > now {
            it.upcoming.push(owed);
        } else {
            it.not_aired.push(owed);
        }
    }

    let mut totals = Totals::default();
    let mut list: Vec<ItemReport> = items.into_values().collect();
    for it in &mut list {
        // An airing still playing will most likely complete: owed, not yet counted either way.
        it.owed = it.completed + it.playing + it.not_aired.len() as u32 + it.upcoming.len() as u32;
        totals.owed += it.owed;
        totals.completed += it.completed;
        totals.interrupted += it.interrupted;
        totals.failed += it.failed;
        totals.missed += it.missed;
        totals.not_aired += it.not_aired.len() as u32;
        totals.upcoming += it.upcoming.len() as u32;
    }
    list.sort_by(|a, b| {
        a.announcement_id
            .cmp(&b.announcement_id)
            .then(a.output.cmp(&b.output))
    });
    DayReport {
        day,
        timezone: tz.name().to_owned(),
        from,
        to,
        generated_at: now,
        items: list,
        totals,
    }
}

/// Why a planned airing in the past has no completed row.
fn why_not(p: &PlannedAiring, rows: &[AirtimeEntry], a: Option<&Announcement>, tz: Tz) -> String {
    let in_occurrence = |r: &&AirtimeEntry| {
        r.output == p.output && r.slot == p.slot && r.scheduled_at == p.occurrence_start
    };
    let mine: Vec<&AirtimeEntry> = rows
        .iter()
        .filter(in_occurrence)
        .filter(|r| r.announcement_id == Some(p.announcement_id))
        .collect();
    if let Some(r) = mine.last() {
        let detail = if r.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", r.detail)
        };
        return format!("{}{detail}", r.status.as_str());
    }
    let mut reason = match a.and_then(|a| a.decided_at) {
        Some(decided) if decided > p.occurrence_start => format!(
            "approved after this slot began (at {})",
            format_datetime(decided, tz)
        ),
        _ if !rows.iter().any(|r| in_occurrence(&r)) => "nothing was logged on this output in this slot: the box was not running, or the slot was not played".to_owned(),
        _ => "no airtime row: other items took the slot's time, or the item was not handed to the player".to_owned(),
    };
    // The planner places what is still owed in the day's first free occurrence, which need
    // not be where the item was tried: say what its other attempts that day came to.
    let tries: Vec<&AirtimeEntry> = rows
        .iter()
        .filter(|r| r.output == p.output && r.announcement_id == Some(p.announcement_id))
        .filter(|r| r.status != AirtimeStatus::Completed)
        .collect();
    if let Some(last) = tries.last() {
        reason.push_str(&format!(
            "; tried {} time(s) this day without completing, last: {}{}",
            tries.len(),
            last.status.as_str(),
            if last.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", last.detail)
            }
        ));
    }
    reason
}

/// The report as a table for a terminal.
pub fn render_text(r: &DayReport) -> String {
    let mut s = format!(
        "Airtime report for {} ({}), {} to {}\n",
        r.day, r.timezone, r.from, r.to
    );
    s.push_str(&format!(
        "{:>5}  {:<8} {:>4} {:>4} {:>4} {:>4} {:>4} {:>4}  title\n",
        "id", "output", "owed", "aird", "intr", "fail", "miss", "left"
    ));
    for it in &r.items {
        s.push_str(&format!(
            "{:>5}  {:<8} {:>4} {:>4} {:>4} {:>4} {:>4} {:>4}  {}\n",
            it.announcement_id
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            it.output,
            it.owed,
            it.completed,
            it.interrupted,
            it.failed,
            it.missed,
            it.not_aired.len() + it.upcoming.len(),
            it.title
        ));
        for a in &it.airings {
            if a.status != AirtimeStatus::Completed {
                s.push_str(&format!(
                    "         row {} {} {} at {}: {}\n",
                    a.id,
                    a.slot,
                    a.status.as_str(),
                    a.scheduled_at,
                    if a.detail.is_empty() { "-" } else { &a.detail }
                ));
            }
        }
        for o in &it.not_aired {
            s.push_str(&format!(
                "         NOT AIRED {} at {}: {}\n",
                o.slot, o.planned_start_local, o.reason
            ));
        }
        for o in &it.upcoming {
            s.push_str(&format!(
                "         planned {} at {}\n",
                o.slot, o.planned_start_local
            ));
        }
    }
    let t = &r.totals;
    s.push_str(&format!(
        "totals: owed {}, aired {}, interrupted {}, failed {}, missed {}, not aired {}, still planned {}\n",
        t.owed, t.completed, t.interrupted, t.failed, t.missed, t.not_aired, t.upcoming
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AnnouncementStatus, Priority};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn ann(id: i64, decided: &str) -> Announcement {
        Announcement {
            id,
            title: format!("item {id}"),
            script: String::new(),
            agency: String::new(),
            priority: Priority::Normal,
            status: AnnouncementStatus::Approved,
            sha256: "00".repeat(32),
            size_bytes: 1,
            codec: "mp3".into(),
            sample_rate: 44100,
            channels: 2,
            duration_ms: 2000,
            loudness_lufs: None,
            valid_from: None,
            valid_until: None,
            plays_per_day: 2,
            outputs: vec!["tower".into()],
            uploaded_by: "a".into(),
            created_at: at("2026-11-01T00:00:00Z"),
            decided_by: Some("b".into()),
            decided_at: Some(at(decided)),
            reason: None,
            source: Default::default(),
            source_ref: None,
        }
    }

    fn planned(id: i64, slot: &str, occ: &str) -> PlannedAiring {
        PlannedAiring {
            slot: slot.into(),
            output: "tower".into(),
            occurrence_start: at(occ),
            start: at(occ) + chrono::Duration::seconds(3),
            end: at(occ) + chrono::Duration::seconds(5),
            announcement_id: id,
            title: format!("item {id}"),
            sha256: "00".repeat(32),
            duration_ms: 2000,
        }
    }

    fn row(
        id: i64,
        ann: i64,
        slot: &str,
        occ: &str,
        status: AirtimeStatus,
        detail: &str,
    ) -> AirtimeEntry {
        AirtimeEntry {
            id,
            announcement_id: Some(ann),
            title: format!("item {ann}"),
            sha256: "00".repeat(32),
            output: "tower".into(),
            slot: slot.into(),
            scheduled_at: at(occ),
            started_at: Some(at(occ)),
            ended_at: Some(at(occ)),
            duration_ms: Some(0),
            status,
            detail: detail.into(),
        }
    }

    #[test]
    fn owed_aired_and_the_reasons_for_what_did_not_air() {
        let tz: Tz = "Asia/Bangkok".parse().unwrap();
        let day: NaiveDate = "2026-11-24".parse().unwrap();
        let (from, to) = day_bounds(day, tz);
        assert_eq!(from, at("2026-11-23T17:00:00Z"));
        assert_eq!(to, at("2026-11-24T17:00:00Z"));
        // Morning 06:00 local = 23:00Z the day before; evening 18:00 local = 11:00Z.
        let morning = "2026-11-23T23:00:00Z";
        let evening = "2026-11-24T11:00:00Z";
        let announcements: BTreeMap<i64, Announcement> = [
            (1, ann(1, "2026-11-20T00:00:00Z")),
            (2, ann(2, "2026-11-20T00:00:00Z")),
            (3, ann(3, "2026-11-24T05:00:00Z")),
        ]
        .into_iter()
        .collect();
        // Item 1: aired in the morning; the plan still owes the evening (it failed).
        // Item 2: failed in the morning (file missing); the plan re-offers the morning (failed
        // airings do not count), and the evening.
        // Item 3: approved at noon; the plan places it in the morning, which was before.
        let rows = vec![
            row(10, 1, "morning", morning, AirtimeStatus::Completed, ""),
            row(
                11,
                2,
                "morning",
                morning,
                AirtimeStatus::Failed,
                "file missing",
            ),
            row(
                12,
                1,
                "evening",
                evening,
                AirtimeStatus::Interrupted,
                "daemon shutting down",
            ),
        ];
        let plan = vec![
            planned(2, "morning", morning),
            planned(3, "morning", morning),
            planned(1, "evening", evening),
            planned(2, "evening", evening),
        ];
        let now = at("2026-11-24T16:00:00Z");
        let r = build(day, tz, from, to, now, &plan, &rows, &announcements);
        assert_eq!(r.items.len(), 3);
        let one = &r.items[0];
        assert_eq!((one.completed, one.interrupted, one.owed), (1, 1, 2));
        assert_eq!(one.not_aired.len(), 1);
        assert_eq!(one.not_aired[0].reason, "interrupted: daemon shutting down");
        let two = &r.items[1];
        assert_eq!((two.completed, two.failed, two.owed), (0, 1, 2));
        assert_eq!(two.not_aired[0].reason, "failed: file missing");
        assert!(
            two.not_aired[1].reason.starts_with("no airtime row"),
            "{:?}",
            two.not_aired[1]
        );
        let three = &r.items[2];
        assert!(
            three.not_aired[0]
                .reason
                .starts_with("approved after this slot began"),
            "{three:?}"
        );
        assert_eq!(r.totals.owed, 5);
        assert_eq!(r.totals.completed, 1);
        assert_eq!(r.totals.not_aired, 4);
        // Earlier in the day, the evening is still to come.
        let early = build(
            day,
            tz,
            from,
            to,
            at("2026-11-24T01:00:00Z"),
            &plan,
            &rows[..2],
            &announcements,
        );
        assert_eq!(early.totals.upcoming, 2);
        assert_eq!(early.items[0].upcoming[0].reason, "planned");
        let text = render_text(&r);
        assert!(text.contains("NOT AIRED evening"), "{text}");
    }

    #[test]
    fn no_row_at_all_in_a_slot_says_the_box_was_not_running() {
        let tz: Tz = "Asia/Bangkok".parse().unwrap();
        let day: NaiveDate = "2026-11-24".parse().unwrap();
        let (from, to) = day_bounds(day, tz);
        let announcements: BTreeMap<i64, Announcement> =
            [(1, ann(1, "2026-11-20T00:00:00Z"))].into_iter().collect();
        let plan = vec![planned(1, "morning", "2026-11-23T23:00:00Z")];
        let r = build(day, tz, from, to, to, &plan, &[], &announcements);
        assert!(r.items[0].not_aired[0].reason.contains("not running"));
    }
}
