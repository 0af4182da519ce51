//! The planner: which approved announcements air in which slot occurrence, on which output, at
//! what planned instant, and which owed airings were missed. Deterministic: same timetable,
//! announcements, counts and range, same plan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::slots::{Occurrence, Timetable};
use crate::domain::{Announcement, AnnouncementId};

/// Airings already made (or already planned), so `plays_per_day` is honoured across slots, an
/// occurrence resumed after a restart does not air the same item twice, and `min_gap` holds.
#[derive(Debug, Default, Clone)]
pub struct AiredCounts {
    per_day: HashMap<(AnnouncementId, String, NaiveDate), u32>,
    in_occurrence: HashSet<(AnnouncementId, String, String, DateTime<Utc>)>,
    last: HashMap<(AnnouncementId, String), DateTime<Utc>>,
}

impl AiredCounts {
    /// Count one airing of `id` on `output` in the occurrence of `slot` that started at
    /// `occurrence_start`, on local day `day` (the airing's own start taken as the occurrence's).
    pub fn record(
        &mut self,
        id: AnnouncementId,
        output: &str,
        day: NaiveDate,
        slot: &str,
        occurrence_start: DateTime<Utc>,
    ) {
        self.record_at(id, output, day, slot, occurrence_start, occurrence_start);
    }

    /// As [`record`](Self::record), with the instant the airing itself started.
    pub fn record_at(
        &mut self,
        id: AnnouncementId,
        output: &str,
        day: NaiveDate,
        slot: &str,
        occurrence_start: DateTime<Utc>,
        aired_at: DateTime<Utc>,
    ) {
        *self
            .per_day
            .entry((id, output.to_string(), day))
            .or_default() += 1;
        self.in_occurrence
            .insert((id, output.to_string(), slot.to_string(), occurrence_start));
        let last = self
            .last
            .entry((id, output.to_string()))
            .or_insert(aired_at);
        if *last < aired_at {
            *last = aired_at;
        }
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

    fn last(&self, id: AnnouncementId, output: &str) -> Option<DateTime<Utc>> {
        self.last.get(&(id, output.to_string())).copied()
    }
}

/// An announcement the planner may place: the stored record.
pub type Candidate = Announcement;

/// How items are laid out inside a slot.
#[derive(Debug, Clone, Default)]
pub struct PlayRules {
    /// Duration of each chime/outro file by name; a file not listed counts as zero.
    pub chime_ms: BTreeMap<String, u64>,
    /// Silence between sounds.
    pub pause: Duration,
    /// Least time between two airings of the same item on the same output.
    pub min_gap: Option<Duration>,
}

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
    pub timetable: &'a Timetable,
    pub rules: &'a PlayRules,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub announcements: &'a [Candidate],
    /// Airings already made before `from` (today's count matters).
    pub aired: AiredCounts,
}

/// The local calendar day of an instant.
pub fn local_day(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The instants a local day begins and ends.
pub fn day_bounds(day: NaiveDate, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |d: NaiveDate| {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        tz.from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
    };
    (at(day), at(day.succ_opt().unwrap_or(day)))
}

/// The occurrences of one local day, indexed per output: where an occurrence stands among the
/// day's occurrences on that output (for spreading plays over the day).
#[derive(Debug, Clone)]
pub struct DayPlan {
    pub day: NaiveDate,
    index: HashMap<(String, String, DateTime<Utc>), (usize, usize)>,
    last: HashMap<String, Occurrence>,
}

impl DayPlan {
    pub fn new(tt: &Timetable, day: NaiveDate) -> Self {
        let (from, to) = day_bounds(day, tt.tz);
        let occs = tt.occurrences(from, to);
        let mut per_output: BTreeMap<&str, Vec<&Occurrence>> = BTreeMap::new();
        for o in &occs {
            if let Some(slot) = tt.slot(&o.slot) {
                for out in &slot.outputs {
                    per_output.entry(out.as_str()).or_default().push(o);
                }
            }
        }
        let mut index = HashMap::new();
        let mut last = HashMap::new();
        for (out, list) in per_output {
            let n = list.len();
            for (k, o) in list.iter().enumerate() {
                index.insert((out.to_string(), o.slot.clone(), o.start), (k, n));
            }
            if let Some(o) = list.last() {
                last.insert(out.to_string(), (*o).clone());
            }
        }
        DayPlan { day, index, last }
    }

    /// (index, count) of `occ` among the day's occurrences on `output`.
    pub fn position(&self, output: &str, occ: &Occurrence) -> Option<(usize, usize)> {
        self.index
            .get(&(output.to_string(), occ.slot.clone(), occ.start))
            .copied()
    }

    /// The day's last occurrence on `output`.
    pub fn last_on(&self, output: &str) -> Option<&Occurrence> {
        self.last.get(output)
    }
}

/// The plan for every occurrence starting in `[from, to)`, in time order, outputs in the slot's
/// order.
pub fn plan(input: PlanInput<'_>) -> Vec<PlannedAiring> {
    let tt = input.timetable;
    let mut aired = input.aired;
    let mut out = Vec::new();
    let mut day: Option<DayPlan> = None;
    for occ in tt.occurrences(input.from, input.to) {
        let Some(slot) = tt.slot(&occ.slot) else {
            continue;
        };
        let d = local_day(occ.start, tt.tz);
        if day.as_ref().is_none_or(|p| p.day != d) {
            day = Some(DayPlan::new(tt, d));
        }
        let Some(day_plan) = day.as_ref() else {
            continue;
        };
        for output in &slot.outputs {
            let items = fill_occurrence(
                tt,
                input.rules,
                day_plan,
                &occ,
                output,
                occ.start,
                input.announcements,
                &aired,
            );
            for p in &items {
                aired.record_at(p.announcement_id, output, d, &occ.slot, occ.start, p.start);
            }
            out.extend(items);
        }
    }
    out
}

/// How many airings of an item with `plays_per_day` should have happened by the end of the
/// `k`-th of `n` occurrences of the day: plays spread evenly, never stacked.
fn spread_target(plays_per_day: u32, k: usize, n: usize) -> u32 {
    if n == 0 {
        return plays_per_day;
    }
    let t = (plays_per_day as u64 * (k as u64 + 1)).div_ceil(n as u64);
    t.min(plays_per_day as u64) as u32
}

/// What airs on `output` in one occurrence, starting at `start_at` (the occurrence start, or
/// later when a slot is resumed after a restart): the chime, then eligible items. Order:
/// priority, then the item furthest behind its spread of plays over the day, then oldest
/// approval, then id; two items of the same agency do not follow each other while an item of
/// another agency that fits is waiting. An item that does not fit in what is left of the slot,
/// or would run past its validity, waits for a later slot; smaller ones may still fit.
#[allow(clippy::too_many_arguments)]
pub fn fill_occurrence(
    tt: &Timetable,
    rules: &PlayRules,
    day: &DayPlan,
    occ: &Occurrence,
    output: &str,
    start_at: DateTime<Utc>,
    announcements: &[Candidate],
    aired: &AiredCounts,
) -> Vec<PlannedAiring> {
    let Some(slot) = tt.slot(&occ.slot) else {
        return Vec::new();
    };
    let d = day.day;
    let (k, n) = day.position(output, occ).unwrap_or((0, 1));
    let pause = chrono::Duration::from_std(rules.pause).unwrap_or_default();
    let sound = |file: &Option<String>| {
        file.as_ref()
            .and_then(|c| rules.chime_ms.get(c))
            .map(|ms| chrono::Duration::milliseconds(*ms as i64) + pause)
            .unwrap_or_default()
    };
    let mut t = start_at + sound(&slot.chime);
    // The outro must fit too.
    let end = occ.end - sound(&slot.outro);
    let min_gap = rules
        .min_gap
        .and_then(|g| chrono::Duration::from_std(g).ok());

    // (candidate, how far behind its spread it is)
    let mut waiting: Vec<(&Candidate, i64)> = announcements
        .iter()
        .filter(|a| a.plays_per_day > 0 && a.duration_ms > 0)
        .filter(|a| a.outputs.iter().any(|o| o == output))
        .filter(|a| !aired.in_occurrence(a.id, output, occ))
        .filter_map(|a| {
            let done = aired.on_day(a.id, output, d);
            let target = spread_target(a.plays_per_day, k, n);
            (done < a.plays_per_day && done < target).then_some((a, target as i64 - done as i64))
        })
        .collect();
    waiting.sort_by(|(a, behind_a), (b, behind_b)| {
        b.priority
            .cmp(&a.priority)
            .then(behind_b.cmp(behind_a))
            .then(a.decided_at.cmp(&b.decided_at))
            .then(a.id.cmp(&b.id))
    });

    let fits = |a: &Candidate, t: DateTime<Utc>| {
        let e = t + chrono::Duration::milliseconds(a.duration_ms as i64);
        e <= end
            && a.eligible_at(t, output)
            && a.valid_until.is_none_or(|u| e <= u)
            && match (min_gap, aired.last(a.id, output)) {
                (Some(g), Some(last)) => t - last >= g,
                _ => true,
            }
    };

    let mut out: Vec<PlannedAiring> = Vec::new();
    let mut last_agency: Option<&str> = None;
    loop {
        let fitting: Vec<usize> = (0..waiting.len())
            .filter(|&i| fits(waiting[i].0, t))
            .collect();
        let Some(&first) = fitting.first() else {
            break;
        };
        // Fair share: prefer the first fitting item of another agency than the one just aired.
        let same = |i: usize| {
            let ag = waiting[i].0.agency.trim();
            !ag.is_empty() && Some(ag) == last_agency
        };
        let pick = fitting.iter().copied().find(|&i| !same(i)).unwrap_or(first);
        let (a, _) = waiting.remove(pick);
        let e = t + chrono::Duration::milliseconds(a.duration_ms as i64);
        out.push(PlannedAiring {
            slot: occ.slot.clone(),
            output: output.to_string(),
            occurrence_start: occ.start,
            start: t,
            end: e,
            announcement_id: a.id,
            title: a.title.clone(),
            sha256: a.sha256.clone(),
            duration_ms: a.duration_ms,
        });
        last_agency = Some(a.agency.trim()).filter(|s| !s.is_empty());
        t = e + pause;
    }
    out
}

/// An owed airing that cannot happen any more today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missed {
    pub announcement_id: AnnouncementId,
    pub output: String,
    pub count: u32,
    pub reason: String,
}

/// After the day's last occurrence on `output` has been filled (its airings recorded in
/// `aired`): the airings still owed by items that could have aired that day, with why.
pub fn missed_for_day(
    tt: &Timetable,
    day: &DayPlan,
    output: &str,
    announcements: &[Candidate],
    aired: &AiredCounts,
) -> Vec<Missed> {
    let Some(last) = day.last_on(output) else {
        return Vec::new();
    };
    let (first_start, _) = day_bounds(day.day, tt.tz);
    let slots_today = day.position(output, last).map(|(_, n)| n).unwrap_or(0);
    let mut out = Vec::new();
    for a in announcements {
        if a.status != crate::domain::AnnouncementStatus::Approved
            || !a.outputs.iter().any(|o| o == output)
            || a.plays_per_day == 0
        {
            continue;
        }
        // Only what could have aired today: approved before the last slot, valid at some point
        // between the day's start and its last slot's end.
        let approved_in_time = a.decided_at.is_none_or(|t| t <= last.start);
        let valid_today = a.valid_from.is_none_or(|f| f < last.end)
            && a.valid_until.is_none_or(|u| u > first_start);
        if !approved_in_time || !valid_today {
            continue;
        }
        let done = aired.on_day(a.id, output, day.day);
        if done >= a.plays_per_day {
            continue;
        }
        let owed = a.plays_per_day - done;
        let reason = if a.valid_until.is_some_and(|u| u <= last.end) {
            format!("validity ended with {owed} airing(s) still owed today / หมดอายุก่อนออกอากาศครบ")
        } else if a.plays_per_day as usize > slots_today {
            format!(
                "{} plays a day asked but only {slots_today} slot(s) today on this output / ช่วงออกอากาศไม่พอ",
                a.plays_per_day
            )
        } else {
            format!("slots were full: {owed} airing(s) owed today / ช่วงออกอากาศเต็ม")
        };
        out.push(Missed {
            announcement_id: a.id,
            output: output.to_string(),
            count: owed,
            reason,
        });
    }
    out
}
