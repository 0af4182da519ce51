//! The runner: the only part of the daemon that waits for time to pass. It asks the pure planner
//! what the next slot occurrence holds, sleeps until just before it (or until the plan changes or
//! the daemon stops), then hands each output's player its job. The API talks to players only
//! through here.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::{AiringInfo, AirtimeStatus, Announcement, AnnouncementStatus};
use crate::playout::{
    EmergencyJob, Heartbeat, JobItem, Journal, OutputStatus, PlayerHandle, SlotJob,
};
use crate::schedule::{self, DayPlan, Occurrence, PlanInput, PlannedAiring, PlayRules, Timetable};
use crate::store::{AirtimeQuery, Store, StoreError};

/// How long before a slot the job is handed to the player (the device is already open; this
/// only leaves room for the player to be waiting on the instant).
const PREROLL: Duration = Duration::from_secs(2);
/// How far ahead the runner looks for the next occurrence.
const LOOKAHEAD_DAYS: i64 = 8;
/// The longest single sleep: a wall-clock jump (NTP) is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// The alert tone played before an emergency message (in the audio dir).
pub const ALERT: &str = "alert.wav";
/// The `slot` of an emergency airing in the airtime log.
pub const EMERGENCY_SLOT: &str = "emergency";
/// The longest the status's plan-derived part ("next airing", "next slot") is reused: the plan
/// also depends on the time of day, and a store change that nobody announced is seen by then.
const STATUS_MAX_AGE: Duration = Duration::from_secs(5);
/// Gain is never raised or cut by more than this to reach the loudness target.
const MAX_GAIN_UP_DB: f64 = 12.0;
const MAX_GAIN_DOWN_DB: f64 = 24.0;

/// Writes what players report into the airtime log.
struct StoreJournal {
    store: Store,
    changed: Arc<Notify>,
    generation: Arc<AtomicU64>,
}

impl StoreJournal {
    /// What aired changed, so the plan may have: wake the runner, drop cached plan answers.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }
}

impl Journal for StoreJournal {
    fn started(&self, airing: &AiringInfo, started_at: DateTime<Utc>) -> Result<i64, String> {
        let r = self
            .store
            .airing_started(airing, started_at)
            .map_err(|e| e.to_string());
        self.changed();
        r
    }

    fn finished(&self, row: i64, status: AirtimeStatus, ended_at: DateTime<Utc>, detail: &str) {
        if let Err(e) = self.store.airing_finished(row, status, ended_at, detail) {
            tracing::error!(row, error = %e, "could not close airtime row");
        }
        self.changed();
    }

    fn failed(&self, airing: &AiringInfo, at: DateTime<Utc>, detail: &str) {
        tracing::warn!(output = %airing.output, announcement = airing.announcement_id, %detail, "airing failed");
        if let Err(e) = self
            .store
            .airing_not_aired(airing, AirtimeStatus::Failed, at, detail)
        {
            tracing::error!(error = %e, "could not write failed airtime row");
        }
        self.changed();
    }
}

/// The configuration the plan depends on: the timetable, the chimes' lengths, the pause. Used
/// by the runner and, without any player, by `hokrajai plan`.
pub struct Planner {
    pub config: Arc<Config>,
    pub timetable: Timetable,
    pub rules: PlayRules,
}

impl Planner {
    /// Measure each chime and outro the slots use (one that cannot be decoded is left out, with
    /// a warning, and its slots play without it).
    pub fn new(config: Arc<Config>, timetable: Timetable) -> Self {
        let audio_dir = config.audio_dir();
        let mut chime_ms = BTreeMap::new();
        let files = timetable
            .slots
            .iter()
            .flat_map(|s| s.chime.iter().chain(s.outro.iter()))
            .chain(std::iter::once(&ALERT.to_string()))
            .cloned()
            .collect::<std::collections::BTreeSet<String>>();
        for c in files {
            match crate::media::probe(&audio_dir.join(&c)) {
                Ok(p) => {
                    chime_ms.insert(c, p.duration_ms);
                }
                Err(e) => {
                    tracing::warn!(file = %c, error = %e, "chime/outro cannot be played; slots will go without it")
                }
            }
        }
        let rules = config.play_rules(chime_ms);
        Planner {
            config,
            timetable,
            rules,
        }
    }

    /// What would air in `[from, to)`, given what has aired so far.
    pub fn plan(
        &self,
        store: &Store,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<PlannedAiring>, StoreError> {
        let announcements = store.announcements(Some(AnnouncementStatus::Approved))?;
        let aired = store.aired_counts(from - chrono::Duration::days(1), self.timetable.tz)?;
        Ok(schedule::plan(PlanInput {
            timetable: &self.timetable,
            rules: &self.rules,
            from,
            to,
            announcements: &announcements,
            aired,
        }))
    }

    /// The next `n` starts of each slot after `now`.
    pub fn next_starts(&self, now: DateTime<Utc>, n: usize) -> Vec<(String, Vec<DateTime<Utc>>)> {
        let to = now + chrono::Duration::days(LOOKAHEAD_DAYS);
        self.timetable
            .slots
            .iter()
            .map(|s| {
                let starts = self
                    .timetable
                    .slot_occurrences(s, now, to, n)
                    .into_iter()
                    .map(|o| o.start)
                    .collect();
                (s.name.clone(), starts)
            })
            .collect()
    }

    /// A file in the audio dir, if it can be played (it was measured at start).
    pub fn sound(&self, name: &str) -> Option<PathBuf> {
        self.rules
            .chime_ms
            .contains_key(name)
            .then(|| self.config.audio_dir().join(name))
    }
}

/// Everything the runner and the API share.
pub struct Runner {
    pub planner: Planner,
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: SharedClock,
    players: Vec<PlayerHandle>,
    replan: Arc<Notify>,
    /// Bumped whenever the plan may have changed (a replan, an airing journaled).
    plan_generation: Arc<AtomicU64>,
    /// The status's plan-derived answers, reused while still true (see [`StatusPlan`]).
    status_plan: Mutex<Option<StatusPlan>>,
    heartbeat: Heartbeat,
    pub started_at: DateTime<Utc>,
}

/// The next planned airing of each output, by output name.
type NextAirings = BTreeMap<String, PlannedAiring>;

/// What the status asks of the plan, kept so that a status request costs no planning: the plan
/// for a day is a store read and a schedule expansion (milliseconds), and monitoring consoles
/// poll status many times a second (issue 6: p99 260 ms at 200 req/s before this).
///
/// Valid while nothing was announced to the runner (`generation`), none of its answers has come
/// due (`until`: the earliest next airing or slot start), and it is younger than
/// [`STATUS_MAX_AGE`].
struct StatusPlan {
    generation: u64,
    computed_at: DateTime<Utc>,
    until: DateTime<Utc>,
    next: NextAirings,
    next_slot: Option<(String, DateTime<Utc>)>,
}

impl StatusPlan {
    fn fresh(&self, generation: u64, now: DateTime<Utc>) -> bool {
        self.generation == generation && self.computed_at <= now && now < self.until
    }
}

#[derive(Debug, Serialize)]
pub struct OutputView {
    #[serde(flatten)]
    pub status: OutputStatus,
    pub next: Option<PlannedAiring>,
}

impl Runner {
    /// Measure the chimes, start one player per configured output.
    pub fn start(planner: Planner, store: Store, clock: SharedClock) -> Self {
        let config = planner.config.clone();
        let replan = Arc::new(Notify::new());
        let plan_generation = Arc::new(AtomicU64::new(0));
        let journal: Arc<dyn Journal> = Arc::new(StoreJournal {
            store: store.clone(),
            changed: replan.clone(),
            generation: plan_generation.clone(),
        });
        let players = config
            .outputs
            .iter()
            .map(|spec| PlayerHandle::spawn(spec.clone(), clock.clone(), journal.clone()))
            .collect();
        let started_at = clock.now();
        Runner {
            planner,
            config,
            store,
            clock,
            players,
            replan,
            plan_generation,
            status_plan: Mutex::new(None),
            heartbeat: Heartbeat::default(),
            started_at,
        }
    }

    /// Is every loop that must never hang still going round? (The runner wakes at least every
    /// `MAX_SLEEP`; each player every quarter second while it has work, every 5 s while idle.)
    /// Feeds the systemd watchdog.
    pub fn healthy(&self) -> bool {
        let runner_ok = self.heartbeat.age() < MAX_SLEEP * 2;
        let players_ok = self
            .players
            .iter()
            .all(|p| p.heartbeat_age() < Duration::from_secs(10));
        runner_ok && players_ok
    }

    /// Tell the runner the plan may have changed (approval, withdrawal, new upload).
    pub fn replan(&self) {
        self.plan_generation.fetch_add(1, Ordering::AcqRel);
        self.replan.notify_waiters();
    }

    /// Preempt `outputs` now: alert tone, then `a` `repeat` times, then the schedule resumes.
    /// Returns the outputs whose player took the job.
    pub fn emergency(
        &self,
        a: &Announcement,
        outputs: &[String],
        repeat: u32,
        accepted_at: DateTime<Utc>,
    ) -> Vec<String> {
        let mut taken = Vec::new();
        for player in self
            .players
            .iter()
            .filter(|p| outputs.iter().any(|o| o == p.name()))
        {
            let job = EmergencyJob {
                alert: self.planner.sound(ALERT),
                item: self.job_item(a, player.name(), EMERGENCY_SLOT, accepted_at),
                repeat,
                accepted_at,
            };
            match player.emergency(job) {
                Ok(()) => taken.push(player.name().to_string()),
                Err(e) => {
                    tracing::error!(output = player.name(), error = %e, "player did not take the emergency")
                }
            }
        }
        self.replan();
        taken
    }

    /// Announcement `id` was withdrawn: every output stops it if it is on air (its row ends
    /// `interrupted`, "withdrawn: <reason>") and drops it from what it has queued, then the plan
    /// is made again without it. Returns at once.
    pub fn stop_announcement(&self, id: i64, reason: &str) {
        for p in &self.players {
            p.stop_item(id, reason);
        }
        self.replan();
    }

    /// Silence every output now; the open airings are logged `interrupted`.
    pub fn stop_all(&self) {
        for p in &self.players {
            p.stop_now();
        }
    }

    pub fn audio_path(&self, sha256: &str) -> PathBuf {
        self.config.data_dir.join("audio").join(sha256)
    }

    /// What would air in `[from, to)`, given what has aired so far.
    pub fn plan(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<PlannedAiring>, StoreError> {
        self.planner.plan(&self.store, from, to)
    }

    /// Per output: the player's status and the next planned airing. The plan part is reused
    /// while it is still true (see [`StatusPlan`]); when it is not, the plan is looked at over
    /// growing windows (10 minutes up to a day) so a busy timetable stays cheap to ask about.
    /// Blocks on the store when it plans: from async code, try [`Runner::cached_outputs`] first.
    pub fn outputs(&self) -> Vec<OutputView> {
        let (next, _) = self.status_plan();
        self.views(&next)
    }

    /// [`Runner::outputs`] if its plan part is cached and still true (no store access, no
    /// planning: cheap enough for an async handler); `None` otherwise.
    pub fn cached_outputs(&self) -> Option<Vec<OutputView>> {
        let generation = self.plan_generation.load(Ordering::Acquire);
        let now = self.clock.now();
        let cache = lock(&self.status_plan);
        let plan = cache.as_ref().filter(|p| p.fresh(generation, now))?;
        Some(self.views(&plan.next))
    }

    /// The next slot start of any slot after now, and its slot (cached with the outputs' plan).
    pub fn next_slot(&self) -> Option<(String, DateTime<Utc>)> {
        let generation = self.plan_generation.load(Ordering::Acquire);
        let now = self.clock.now();
        if let Some(plan) = lock(&self.status_plan)
            .as_ref()
            .filter(|p| p.fresh(generation, now))
        {
            return plan.next_slot.clone();
        }
        self.first_slot_start(now)
    }

    fn first_slot_start(&self, now: DateTime<Utc>) -> Option<(String, DateTime<Utc>)> {
        self.planner
            .next_starts(now, 1)
            .into_iter()
            .filter_map(|(slot, starts)| starts.first().map(|s| (slot, *s)))
            .min_by_key(|(_, s)| *s)
    }

    fn views(&self, next: &NextAirings) -> Vec<OutputView> {
        self.players
            .iter()
            .map(|p| OutputView {
                status: p.status(),
                next: next.get(p.name()).cloned(),
            })
            .collect()
    }

    /// The next planned airing per output and the next slot start: cached, or planned now.
    fn status_plan(&self) -> (NextAirings, Option<(String, DateTime<Utc>)>) {
        // Read before planning: a change while we plan leaves the answer marked stale.
        let generation = self.plan_generation.load(Ordering::Acquire);
        let now = self.clock.now();
        if let Some(plan) = lock(&self.status_plan)
            .as_ref()
            .filter(|p| p.fresh(generation, now))
        {
            return (plan.next.clone(), plan.next_slot.clone());
        }
        let mut next = NextAirings::new();
        let mut planned = true;
        for minutes in [10, 60, 6 * 60, 24 * 60] {
            match self.plan(now, now + chrono::Duration::minutes(minutes)) {
                Ok(plan) => {
                    for p in plan {
                        next.entry(p.output.clone()).or_insert(p);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not plan for status");
                    planned = false;
                    break;
                }
            }
            if self.players.iter().all(|p| next.contains_key(p.name())) {
                break;
            }
        }
        let next_slot = self.first_slot_start(now);
        if planned {
            let max_age = chrono::Duration::from_std(STATUS_MAX_AGE).unwrap_or_default();
            // An answer goes stale when the instant it names comes (one already past does not
            // count: what it names changes only when it airs, which bumps the generation).
            let until = next
                .values()
                .map(|p| p.start)
                .chain(next_slot.iter().map(|(_, at)| *at))
                .filter(|at| *at > now)
                .fold(now + max_age, DateTime::min);
            *lock(&self.status_plan) = Some(StatusPlan {
                generation,
                computed_at: now,
                until,
                next: next.clone(),
                next_slot: next_slot.clone(),
            });
        }
        (next, next_slot)
    }

    fn gain_db(&self, a: &Announcement) -> f32 {
        a.loudness_lufs
            .map(|l| {
                (self.config.loudness_target_lufs - l).clamp(-MAX_GAIN_DOWN_DB, MAX_GAIN_UP_DB)
            })
            .unwrap_or(0.0) as f32
    }

    /// Hand every output of `occ` its job, starting at `start_at` (later than the occurrence
    /// start when resuming after a restart).
    fn dispatch(&self, occ: &Occurrence, start_at: DateTime<Utc>) -> Result<(), StoreError> {
        let tt = &self.planner.timetable;
        let Some(slot) = tt.slot(&occ.slot) else {
            return Ok(());
        };
        let announcements = self
            .store
            .announcements(Some(AnnouncementStatus::Approved))?;
        let aired = self
            .store
            .aired_counts(occ.start - chrono::Duration::days(1), tt.tz)?;
        let day = DayPlan::new(tt, schedule::local_day(occ.start, tt.tz));
        for player in &self.players {
            let output = player.name();
            if !slot.outputs.iter().any(|o| o == output) {
                continue;
            }
            let planned = schedule::fill_occurrence(
                tt,
                &self.planner.rules,
                &day,
                occ,
                output,
                start_at,
                &announcements,
                &aired,
            );
            let items = planned
                .iter()
                .filter_map(|p| {
                    let a = announcements.iter().find(|a| a.id == p.announcement_id)?;
                    Some(self.job_item(a, output, &occ.slot, occ.start))
                })
                .collect::<Vec<_>>();
            tracing::info!(slot = %occ.slot, %output, start = %start_at, items = items.len(), "slot dispatched");
            let job = SlotJob {
                slot: occ.slot.clone(),
                start_at,
                end_at: occ.end,
                chime: slot.chime.as_deref().and_then(|c| self.planner.sound(c)),
                items,
                pause: self.config.pause,
                outro: slot.outro.as_deref().and_then(|c| self.planner.sound(c)),
            };
            if let Err(e) = player.submit(job) {
                tracing::error!(%output, error = %e, "player did not take the job");
            }
        }
        Ok(())
    }

    fn job_item(
        &self,
        a: &Announcement,
        output: &str,
        slot: &str,
        scheduled_at: DateTime<Utc>,
    ) -> JobItem {
        JobItem {
            airing: AiringInfo {
                announcement_id: a.id,
                title: a.title.clone(),
                sha256: a.sha256.clone(),
                output: output.to_string(),
                slot: slot.to_string(),
                scheduled_at,
            },
            path: self.audio_path(&a.sha256),
            gain_db: self.gain_db(a),
            duration_ms: a.duration_ms,
        }
    }

    /// After the day's last occurrence on each of its outputs has ended: write a `missed` row
    /// for every airing still owed that day, with the reason. Never twice for the same day.
    fn record_missed(&self, occ: &Occurrence) -> Result<usize, StoreError> {
        let tt = &self.planner.timetable;
        let Some(slot) = tt.slot(&occ.slot) else {
            return Ok(0);
        };
        let day = DayPlan::new(tt, schedule::local_day(occ.start, tt.tz));
        let announcements = self
            .store
            .announcements(Some(AnnouncementStatus::Approved))?;
        let aired = self
            .store
            .aired_counts(occ.start - chrono::Duration::days(1), tt.tz)?;
        let mut written = 0;
        for output in &slot.outputs {
            if day.last_on(output).is_none_or(|last| last != occ) {
                continue;
            }
            for m in schedule::missed_for_day(tt, &day, output, &announcements, &aired) {
                let Some(a) = announcements.iter().find(|a| a.id == m.announcement_id) else {
                    continue;
                };
                let already = self.store.airtime(&AirtimeQuery {
                    from: Some(occ.start),
                    to: Some(occ.start + chrono::Duration::milliseconds(1)),
                    output: Some(output.clone()),
                    announcement: Some(a.id),
                    status: Some(AirtimeStatus::Missed),
                    cursor: None,
                    limit: 1,
                })?;
                if !already.0.is_empty() {
                    continue;
                }
                let info = self.job_item(a, output, &occ.slot, occ.start).airing;
                for _ in 0..m.count {
                    self.store.airing_not_aired(
                        &info,
                        AirtimeStatus::Missed,
                        occ.end,
                        &m.reason,
                    )?;
                    written += 1;
                }
                tracing::warn!(announcement = a.id, %output, count = m.count, reason = %m.reason, "airings missed");
            }
        }
        Ok(written)
    }

    /// How long before a slot its job is handed to the player: enough for the amplifier's
    /// pre-roll plus a second, and never less than [`PREROLL`].
    fn handover(&self) -> chrono::Duration {
        let amp = self
            .config
            .outputs
            .iter()
            .filter_map(|o| o.amp.as_ref().map(|a| a.preroll + Duration::from_secs(1)))
            .max()
            .unwrap_or_default();
        chrono::Duration::from_std(PREROLL.max(amp)).unwrap_or_default()
    }

    /// Run until `shutdown` resolves. Open airings are closed by the players' own shutdown.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let tt = &self.planner.timetable;
        let longest = tt.slots.iter().map(|s| s.length).max().unwrap_or_default();
        let mut cursor = self.clock.now() - chrono::Duration::from_std(longest).unwrap_or_default();
        let mut done: HashSet<(String, DateTime<Utc>)> = HashSet::new();
        // Occurrences whose end triggers the day's missed-airings check.
        let mut day_ends: Vec<Occurrence> = Vec::new();
        let handover = self.handover();
        loop {
            self.heartbeat.beat();
            let now = self.clock.now();
            // Day-end checks that are due.
            let (due, later): (Vec<Occurrence>, Vec<Occurrence>) =
                day_ends.into_iter().partition(|o| o.end <= now);
            day_ends = later;
            for occ in due {
                if let Err(e) = self.record_missed(&occ) {
                    tracing::error!(slot = %occ.slot, error = %e, "could not record missed airings");
                }
            }
            let next = tt
                .occurrences(cursor, now + chrono::Duration::days(LOOKAHEAD_DAYS))
                .into_iter()
                .find(|o| !done.contains(&(o.slot.clone(), o.start)));
            let mut wake = match &next {
                Some(occ) if occ.end <= now => {
                    done.insert((occ.slot.clone(), occ.start));
                    continue;
                }
                Some(occ) => {
                    let dispatch_at = occ.start - handover;
                    if dispatch_at <= now {
                        let start_at = occ.start.max(now);
                        if let Err(e) = self.dispatch(occ, start_at) {
                            tracing::error!(slot = %occ.slot, error = %e, "could not plan the slot");
                        }
                        day_ends.push(occ.clone());
                        done.insert((occ.slot.clone(), occ.start));
                        cursor = occ.start;
                        done.retain(|(_, s)| *s >= cursor);
                        continue;
                    }
                    dispatch_at
                }
                None => now + chrono::Duration::from_std(MAX_SLEEP).unwrap_or_default(),
            };
            if let Some(first_end) = day_ends.iter().map(|o| o.end).min() {
                wake = wake.min(first_end);
            }
            let wait = (wake - now).to_std().unwrap_or_default().min(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.replan.notified() => {}
                _ = &mut shutdown => break,
            }
        }
        tracing::info!("runner stopping");
    }

    /// The players, to shut them down once nothing else holds the runner.
    pub fn into_players(self) -> Vec<PlayerHandle> {
        self.players
    }
}

/// Lock a mutex whose data stays valid even if a holder panicked (a cache).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
