//! The planner: which approved announcements air in which slot occurrence, on which output, at
//! what planned instant. Deterministic: same slots, announcements, counts and range, same plan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::slots::{occurrences, Occurrence, Slot};
use crate::domain::{Announcement, AnnouncementId};

/// Airings already made (or already planned), so `plays_per_day` is honoured across slots and an
/// occurrence resumed after a restart does not air the same item twice.
#[derive(Debug, Default, Clone)]
pub struct AiredCounts {
    per_day: HashMap<(AnnouncementId, String, NaiveDate), u32>,
    in_occurrence: HashSet<(AnnouncementId, String, String, DateTime<Utc>)>,
}

impl AiredCounts {
    /// Count one airing of `id` on `output` in the occurrence of `slot` that started at
    /// `occurrence_start`, on local day `day`.
    pub fn record(
        &mut self,
        id: AnnouncementId,
        output: &str,
        day: NaiveDate,
        slot: &str,
        occurrence_start: DateTime<Utc>,
    ) {
        *self
            .per_day
            .entry((id, output.to_string(), day))
            .or_default() += 1;
        self.in_occurrence
            .insert((id, output.to_string(), slot.to_string(), occurrence_start));
    }

    pub fn on_day(&self, id: AnnouncementId, output: &str, day: NaiveDate) -> u32 {
        self.per_day
            .get(&(id, output.to_string(), day))
            .copied()
            .unwrap_or(0)
    }

    fn in_occurrence(&self, id: AnnouncementId, output: &str, occ: &Occurrence) -> bool {
        self.in_occurrence
            .contains(&(id, output.to_string(), occ.slot.clone(), occ.start))
    }
}

/// An announcement the planner may place: the stored record plus nothing else.
pub type Candidate = Announcement;

/// One planned airing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedAiring {
    pub slot: String,
    pub output: String,
    /// When the occurrence starts (the `scheduled_at` of the airtime row).
    pub occurrence_start: DateTime<Utc>,
    /// When this item is planned to start and end.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub announcement_id: AnnouncementId,
    pub title: String,
    pub sha256: String,
    pub duration_ms: u64,
}

/// Everything [`plan`] needs.
pub struct PlanInput<'a> {
    pub slots: &'a [Slot],
    pub tz: Tz,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub announcements: &'a [Candidate],
    /// Airings already made before `from` (today's count matters).
    pub aired: AiredCounts,
    /// Duration of each chime file by name; a chime not listed counts as zero.
    pub chime_ms: &'a BTreeMap<String, u64>,
    pub pause: Duration,
}

/// The plan for every occurrence starting in `[from, to)`, in time order, outputs in the slot's
/// order.
pub fn plan(input: PlanInput<'_>) -> Vec<PlannedAiring> {
    let mut aired = input.aired;
    let mut out = Vec::new();
    for occ in occurrences(input.slots, input.tz, input.from, input.to) {
        let Some(slot) = input.slots.iter().find(|s| s.name == occ.slot) else {
            continue;
        };
        for output in &slot.outputs {
            let items = fill_occurrence(
                &occ,
                slot,
                output,
                occ.start,
                input.announcements,
                &aired,
                input.tz,
                input.chime_ms,
                input.pause,
            );
            for p in &items {
                aired.record(
                    p.announcement_id,
                    output,
                    local_day(occ.start, input.tz),
                    &occ.slot,
                    occ.start,
                );
            }
            out.extend(items);
        }
    }
    out
}

/// The local calendar day of an instant.
pub fn local_day(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// What airs on `output` in one occurrence, starting at `start_at` (the occurrence start, or later
/// when a slot is resumed after a restart): the chime, then eligible items ordered by priority,
/// then the one furthest behind its plays per day, then oldest approval, then id. An item that
/// does not fit in what is left of the slot is skipped (it waits for a later slot) and smaller
/// ones after it may still fit.
#[allow(clippy::too_many_arguments)]
pub fn fill_occurrence(
    occ: &Occurrence,
    slot: &Slot,
    output: &str,
    start_at: DateTime<Utc>,
    announcements: &[Candidate],
    aired: &AiredCounts,
    tz: Tz,
    chime_ms: &BTreeMap<String, u64>,
    pause: Duration,
) -> Vec<PlannedAiring> {
    let day = local_day(occ.start, tz);
    let pause = chrono::Duration::from_std(pause).unwrap_or_default();
    let chime = slot
        .chime
        .as_ref()
        .and_then(|c| chime_ms.get(c))
        .map(|ms| chrono::Duration::milliseconds(*ms as i64) + pause)
        .unwrap_or_default();
    let mut t = start_at + chime;

    let mut candidates: Vec<(&Candidate, u32)> = announcements
        .iter()
        .filter(|a| a.plays_per_day > 0 && a.duration_ms > 0)
        .filter(|a| !aired.in_occurrence(a.id, output, occ))
        .filter_map(|a| {
            let done = aired.on_day(a.id, output, day);
            (done < a.plays_per_day).then_some((a, a.plays_per_day - done))
        })
        .collect();
    candidates.sort_by(|(a, left_a), (b, left_b)| {
        b.priority
            .cmp(&a.priority)
            .then(left_b.cmp(left_a))
            .then(a.decided_at.cmp(&b.decided_at))
            .then(a.id.cmp(&b.id))
    });

    let mut out = Vec::new();
    for (a, _) in candidates {
        let len = chrono::Duration::milliseconds(a.duration_ms as i64);
        let end = t + len;
        let fits_slot = end <= occ.end;
        let valid = a.eligible_at(t, output) && a.valid_until.is_none_or(|u| end <= u);
        if !(fits_slot && valid) {
            continue;
        }
        out.push(PlannedAiring {
            slot: occ.slot.clone(),
            output: output.to_string(),
            occurrence_start: occ.start,
            start: t,
            end,
            announcement_id: a.id,
            title: a.title.clone(),
            sha256: a.sha256.clone(),
            duration_ms: a.duration_ms,
        });
        t = end + pause;
    }
    out
}
