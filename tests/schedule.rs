//! The pure planner, specified by tables: slots + announcements + `now` -> the exact airings.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hokrajai::clock::{Clock, ManualClock};
use hokrajai::domain::{Announcement, AnnouncementStatus, Priority};
use hokrajai::schedule::{
    fill_occurrence, local_day, missed_for_day, parse_slot_file, plan, AiredCounts, Calendar,
    DayPlan, PlanInput, PlannedAiring, PlayRules, QuietHours, Slot, Timetable,
};

const BKK: chrono_tz::Tz = chrono_tz::Asia::Bangkok;
const SHIPPED_HOLIDAYS: &str = include_str!("../schedules/holidays.toml");

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn slots(text: &str) -> Vec<Slot> {
    parse_slot_file("test.toml", text, &["tower".into(), "pa".into()]).unwrap()
}

fn timetable(text: &str) -> Timetable {
    Timetable::plain(slots(text), BKK)
}

fn rules() -> PlayRules {
    PlayRules {
        chime_ms: BTreeMap::from([("chime.wav".to_string(), 2000u64)]),
        pause: Duration::from_secs(1),
        min_gap: None,
    }
}

const TWO_SLOTS: &str = r#"
[[slot]]
name = "morning"
cron = "0 0 6 * * *"
length = "1m"
outputs = ["tower", "pa"]
chime = "chime.wav"

[[slot]]
name = "evening"
cron = "0 0 18 * * *"
length = "1m"
outputs = ["tower"]
"#;

fn ann(id: i64, secs: u64) -> Announcement {
    Announcement {
        id,
        title: format!("item {id}"),
        script: String::new(),
        agency: String::new(),
        priority: Priority::Normal,
        status: AnnouncementStatus::Approved,
        sha256: format!("{id:064}"),
        size_bytes: 1,
        codec: "mp3".into(),
        sample_rate: 48_000,
        channels: 1,
        duration_ms: secs * 1000,
        loudness_lufs: Some(-16.0),
        valid_from: None,
        valid_until: None,
        plays_per_day: 1,
        outputs: vec!["tower".into(), "pa".into()],
        uploaded_by: "somchai".into(),
        created_at: t("2026-11-01T00:00:00Z"),
        decided_by: Some("kanya".into()),
        decided_at: Some(t("2026-11-01T00:00:00Z") + chrono::Duration::seconds(id)),
        reason: None,
        source: Default::default(),
        source_ref: None,
    }
}

/// The raw plan for `[from, to)`.
fn plan_of(
    tt: &Timetable,
    rules: &PlayRules,
    anns: &[Announcement],
    from: &str,
    to: &str,
) -> Vec<PlannedAiring> {
    plan(PlanInput {
        timetable: tt,
        rules,
        from: t(from),
        to: t(to),
        announcements: anns,
        aired: AiredCounts::default(),
    })
}

/// (local time in Bangkok, output, slot, announcement id) for each airing.
fn rows(p: &[PlannedAiring]) -> Vec<(String, String, String, i64)> {
    p.iter()
        .map(|p| {
            (
                p.start
                    .with_timezone(&BKK)
                    .format("%m-%d %H:%M:%S")
                    .to_string(),
                p.output.clone(),
                p.slot.clone(),
                p.announcement_id,
            )
        })
        .collect()
}

fn run(
    slots_text: &str,
    anns: &[Announcement],
    from: &str,
    to: &str,
) -> Vec<(String, String, String, i64)> {
    rows(&plan_of(&timetable(slots_text), &rules(), anns, from, to))
}

fn row(at: &str, output: &str, slot: &str, id: i64) -> (String, String, String, i64) {
    (at.into(), output.into(), slot.into(), id)
}

#[test]
fn a_day_of_two_slots_in_bangkok_time() {
    // 06:00 slot on both outputs: chime 2 s + pause 1 s, then items; 18:00 on the tower only.
    let a = ann(1, 20);
    let mut b = ann(2, 20);
    b.plays_per_day = 2;
    let got = run(
        TWO_SLOTS,
        &[a, b],
        "2026-11-23T00:00:00+07:00",
        "2026-11-24T00:00:00+07:00",
    );
    assert_eq!(
        got,
        [
            // The tower has two slots: b's two plays are spread one per slot, so in the morning
            // both owe one and the older approval (a) goes first.
            row("11-23 06:00:03", "tower", "morning", 1),
            row("11-23 06:00:24", "tower", "morning", 2),
            // The PA has one slot: b owes two there, so it is further behind and goes first.
            row("11-23 06:00:03", "pa", "morning", 2),
            row("11-23 06:00:24", "pa", "morning", 1),
            // a is done for the day on the tower; b has one more.
            row("11-23 18:00:00", "tower", "evening", 2),
        ]
    );
}

#[test]
fn priority_then_furthest_behind_then_oldest_approval() {
    let mut high = ann(3, 10);
    high.priority = Priority::High;
    let mut behind = ann(2, 10);
    behind.plays_per_day = 3;
    let old = ann(1, 10);
    let got = run(
        TWO_SLOTS,
        &[old, behind, high],
        "2026-11-23T17:00:00+07:00",
        "2026-11-23T19:00:00+07:00",
    );
    let order: Vec<i64> = got.iter().map(|r| r.3).collect();
    assert_eq!(order, [3, 2, 1]);
}

#[test]
fn what_does_not_fit_waits_and_smaller_items_fill_the_gap() {
    // Evening: 60 s, no chime. 40 s + 1 s pause + 15 s fits; the 30 s item does not.
    let a = ann(1, 40);
    let b = ann(2, 30);
    let c = ann(3, 15);
    let got = run(
        TWO_SLOTS,
        &[a, b, c],
        "2026-11-23T17:00:00+07:00",
        "2026-11-24T07:00:00+07:00",
    );
    assert_eq!(
        got,
        [
            row("11-23 18:00:00", "tower", "evening", 1),
            row("11-23 18:00:41", "tower", "evening", 3),
            // A new day: everything is owed again. Chime 2 s + pause 1 s first.
            row("11-24 06:00:03", "tower", "morning", 1),
            row("11-24 06:00:44", "tower", "morning", 3),
            row("11-24 06:00:03", "pa", "morning", 1),
            row("11-24 06:00:44", "pa", "morning", 3),
        ]
    );
}

#[test]
fn unapproved_rejected_withdrawn_never_planned() {
    let statuses = [
        AnnouncementStatus::Pending,
        AnnouncementStatus::Rejected,
        AnnouncementStatus::Withdrawn,
    ];
    let anns: Vec<Announcement> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut a = ann(i as i64 + 1, 5);
            a.status = *s;
            a
        })
        .collect();
    assert!(run(
        TWO_SLOTS,
        &anns,
        "2026-11-23T00:00:00+07:00",
        "2026-11-30T00:00:00+07:00"
    )
    .is_empty());
}

#[test]
fn validity_is_hard_at_both_edges() {
    let evening = ("2026-11-23T17:00:00+07:00", "2026-11-23T19:00:00+07:00");
    let table: [(Option<&str>, Option<&str>, bool); 6] = [
        // (valid_from, valid_until, airs at 18:00:00 for 10 s?)
        (None, None, true),
        (Some("2026-11-23T18:00:00+07:00"), None, true),
        (Some("2026-11-23T18:00:01+07:00"), None, false),
        (None, Some("2026-11-23T18:00:10+07:00"), true),
        (None, Some("2026-11-23T18:00:09+07:00"), false),
        (None, Some("2026-11-23T17:59:59+07:00"), false),
    ];
    for (from, until, airs) in table {
        let mut a = ann(1, 10);
        a.valid_from = from.map(t);
        a.valid_until = until.map(t);
        let got = run(TWO_SLOTS, &[a], evening.0, evening.1);
        let want = if airs {
            vec![row("11-23 18:00:00", "tower", "evening", 1)]
        } else {
            vec![]
        };
        assert_eq!(got, want, "valid_from {from:?} valid_until {until:?}");
    }
}

#[test]
fn an_item_airs_only_on_its_outputs() {
    let mut pa_only = ann(1, 10);
    pa_only.outputs = vec!["pa".into()];
    let got = run(
        TWO_SLOTS,
        &[pa_only],
        "2026-11-23T00:00:00+07:00",
        "2026-11-24T00:00:00+07:00",
    );
    assert_eq!(got, [row("11-23 06:00:03", "pa", "morning", 1)]);
}

#[test]
fn the_plan_is_deterministic() {
    let anns: Vec<Announcement> = (1..=6).map(|i| ann(i, 5 + i as u64)).collect();
    let mut reversed = anns.clone();
    reversed.reverse();
    let range = ("2026-11-23T00:00:00+07:00", "2026-11-26T00:00:00+07:00");
    let first = run(TWO_SLOTS, &anns, range.0, range.1);
    assert!(!first.is_empty());
    assert_eq!(first, run(TWO_SLOTS, &anns, range.0, range.1));
    assert_eq!(first, run(TWO_SLOTS, &reversed, range.0, range.1));
}

#[test]
fn a_resumed_occurrence_skips_what_already_aired() {
    let tt = timetable(TWO_SLOTS);
    let occ = tt
        .occurrences(
            t("2026-11-23T17:00:00+07:00"),
            t("2026-11-23T19:00:00+07:00"),
        )
        .into_iter()
        .find(|o| o.slot == "evening")
        .unwrap();
    let mut a = ann(1, 10);
    a.plays_per_day = 5;
    let b = ann(2, 10);
    let day = DayPlan::new(&tt, local_day(occ.start, BKK));
    let mut aired = AiredCounts::default();
    aired.record(1, "tower", day.day, "evening", occ.start);
    // Restarted 15 s into the slot: item 1 already aired in this occurrence, item 2 has not.
    let resume_at = occ.start + chrono::Duration::seconds(15);
    let got = fill_occurrence(
        &tt,
        &rules(),
        &day,
        &occ,
        "tower",
        resume_at,
        &[a, b],
        &aired,
    );
    let ids: Vec<(i64, DateTime<Utc>)> = got.iter().map(|p| (p.announcement_id, p.start)).collect();
    assert_eq!(ids, [(2, resume_at)]);
}

#[test]
fn a_week_driven_by_a_manual_clock() {
    // One 10 s item, twice a day, over a week: every morning on both outputs, every evening on
    // the tower; 7 × 3 = 21 airings, and the plan from any instant only holds what is ahead.
    let clock = ManualClock::new(t("2026-11-23T00:00:00+07:00"));
    let mut a = ann(1, 10);
    a.plays_per_day = 2;
    let tt = timetable(TWO_SLOTS);
    let mut total = 0;
    for _day in 0..7 {
        let now = clock.now();
        let day = plan(PlanInput {
            timetable: &tt,
            rules: &rules(),
            from: now,
            to: now + chrono::Duration::days(1),
            announcements: std::slice::from_ref(&a),
            aired: AiredCounts::default(),
        });
        assert_eq!(day.len(), 3, "day starting {now}");
        assert!(day.iter().all(|p| p.start >= now));
        total += day.len();
        clock.advance(chrono::Duration::days(1));
    }
    assert_eq!(total, 21);
}

#[test]
fn working_days_holidays_months_and_date_ranges() {
    let text = r#"
[[slot]]
name = "weekday"
cron = "0 0 7 * * *"
length = "10m"
days = "working"

[[slot]]
name = "holiday"
cron = "0 0 9 * * *"
length = "10m"
holiday = true

[[slot]]
name = "december"
cron = "0 0 12 * * *"
length = "10m"
months = [12]

[[slot]]
name = "fair"
cron = "0 0 15 * * *"
length = "10m"
dates = ["2026-12-04..2026-12-06"]
"#;
    let mut tt = timetable(text);
    tt.calendar = Calendar::parse("holidays.toml", SHIPPED_HOLIDAYS).unwrap();
    // Thu 3 Dec .. Tue 8 Dec 2026: Sat 5 is Father's Day, Mon 7 its substitution.
    let got: Vec<(String, String)> = tt
        .occurrences(
            t("2026-11-30T00:00:00+07:00"),
            t("2026-12-09T00:00:00+07:00"),
        )
        .into_iter()
        .filter(|o| o.start >= t("2026-12-03T00:00:00+07:00"))
        .map(|o| (o.start.with_timezone(&BKK).format("%d").to_string(), o.slot))
        .collect();
    let want: Vec<(String, String)> = [
        ("03", "weekday"),
        ("03", "december"),
        ("04", "weekday"),
        ("04", "december"),
        ("04", "fair"),
        ("05", "holiday"),
        ("05", "december"),
        ("05", "fair"),
        ("06", "december"),
        ("06", "fair"),
        ("07", "holiday"),
        ("07", "december"),
        ("08", "weekday"),
        ("08", "december"),
    ]
    .iter()
    .map(|(d, s)| (d.to_string(), s.to_string()))
    .collect();
    assert_eq!(got, want);
    // November: no "december" slot at all.
    let nov = tt.occurrences(
        t("2026-11-01T00:00:00+07:00"),
        t("2026-11-30T00:00:00+07:00"),
    );
    assert!(nov.iter().all(|o| o.slot != "december"));
}

#[test]
fn the_shipped_holidays_cover_2569_and_2570_in_thai() {
    let c = Calendar::parse("holidays.toml", SHIPPED_HOLIDAYS).unwrap();
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    assert_eq!(c.holiday(d("2026-12-05")).unwrap().name, "วันพ่อแห่งชาติ");
    assert_eq!(c.holiday(d("2027-04-13")).unwrap().name, "วันสงกรานต์");
    assert_eq!(
        c.holiday(d("2027-12-31")).unwrap().name_en,
        "New Year's Eve"
    );
    assert!(c.len() >= 40, "{} holidays", c.len());
    assert!(c.is_working_day(d("2026-11-23")));
}

#[test]
fn quiet_hours_refuse_a_slot_and_never_air() {
    let text = r#"
[[slot]]
name = "late"
cron = "0 50 20 * * *"
length = "30m"

[[slot]]
name = "dawn"
cron = "0 0 5 * * *"
length = "30m"
"#;
    let mut tt = timetable(text);
    tt.quiet = QuietHours::parse(&["21:00-05:00".into()]).unwrap();
    let errors: Vec<String> = tt
        .quiet_hour_conflicts(t("2026-11-23T00:00:00+07:00"))
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("test.toml")
            && errors[0].contains("slot 'late'")
            && errors[0].contains("quiet hours")
    );
    // Even unchecked, the planner never places an occurrence that runs into quiet hours.
    let occ = tt.occurrences(
        t("2026-11-23T00:00:00+07:00"),
        t("2026-11-24T00:00:00+07:00"),
    );
    let names: Vec<&str> = occ.iter().map(|o| o.slot.as_str()).collect();
    assert_eq!(names, ["dawn"]);
}

const EVENING_ONLY: &str = "[[slot]]\nname = \"evening\"\ncron = \"0 0 18 * * *\"\nlength = \"5m\"\noutputs = [\"tower\"]\n";

#[test]
fn agencies_take_turns() {
    let with_agency = |id, agency: &str| {
        let mut a = ann(id, 10);
        a.agency = agency.into();
        a
    };
    let range = ("2026-11-23T17:00:00+07:00", "2026-11-23T19:00:00+07:00");
    let table: [(Vec<Announcement>, Vec<i64>); 3] = [
        // Approved in order a1, a2, b1: b1 goes between the two of agency A.
        (
            vec![
                with_agency(1, "อำเภอ"),
                with_agency(2, "อำเภอ"),
                with_agency(3, "สาธารณสุข"),
            ],
            vec![1, 3, 2],
        ),
        // Only one agency waiting: back to back is fine.
        (
            vec![with_agency(1, "อำเภอ"), with_agency(2, "อำเภอ")],
            vec![1, 2],
        ),
        // No agency given: no constraint.
        (
            vec![
                with_agency(1, ""),
                with_agency(2, ""),
                with_agency(3, "เกษตร"),
            ],
            vec![1, 2, 3],
        ),
    ];
    for (anns, want) in table {
        let got: Vec<i64> = run(EVENING_ONLY, &anns, range.0, range.1)
            .iter()
            .map(|r| r.3)
            .collect();
        assert_eq!(got, want);
    }
}

const HOURLY: &str = "[[slot]]\nname = \"hourly\"\ncron = \"0 0 6-11 * * *\"\nlength = \"5m\"\noutputs = [\"tower\"]\n";

#[test]
fn plays_per_day_are_spread_over_the_day_and_min_gap_holds() {
    let day = ("2026-11-23T00:00:00+07:00", "2026-11-24T00:00:00+07:00");
    let hours = |p: &[PlannedAiring]| -> Vec<String> {
        p.iter()
            .map(|p| p.start.with_timezone(&BKK).format("%H").to_string())
            .collect()
    };
    // Six slots (06..11), two plays: one in the first half of the day's slots, one in the second.
    let mut a = ann(1, 10);
    a.plays_per_day = 2;
    let tt = timetable(HOURLY);
    assert_eq!(
        hours(&plan_of(
            &tt,
            &rules(),
            std::slice::from_ref(&a),
            day.0,
            day.1
        )),
        ["06", "09"]
    );
    // Three plays with a 3 h minimum gap: 06, 09, and the third cannot keep the gap.
    a.plays_per_day = 3;
    let mut r = rules();
    r.min_gap = Some(Duration::from_secs(3 * 3600));
    let p = plan_of(&tt, &r, std::slice::from_ref(&a), day.0, day.1);
    assert_eq!(hours(&p), ["06", "09"]);
    // ... which the day-end check reports as one missed airing, with a reason.
    let mut aired = AiredCounts::default();
    for x in &p {
        aired.record_at(
            x.announcement_id,
            &x.output,
            local_day(x.start, BKK),
            &x.slot,
            x.occurrence_start,
            x.start,
        );
    }
    let dp = DayPlan::new(&tt, local_day(t(day.0), BKK));
    let missed = missed_for_day(&tt, &dp, "tower", std::slice::from_ref(&a), &aired);
    assert_eq!(missed.len(), 1);
    assert_eq!((missed[0].announcement_id, missed[0].count), (1, 1));
    assert!(missed[0].reason.contains("owed"), "{}", missed[0].reason);
}

#[test]
fn missed_airings_say_why() {
    let tt = timetable(TWO_SLOTS);
    let day = DayPlan::new(&tt, local_day(t("2026-11-23T12:00:00+07:00"), BKK));
    let aired = AiredCounts::default();
    let mut expired = ann(1, 10);
    expired.valid_until = Some(t("2026-11-23T12:00:00+07:00"));
    let mut too_many = ann(2, 10);
    too_many.plays_per_day = 5;
    let mut pending = ann(3, 10);
    pending.status = AnnouncementStatus::Pending;
    let mut approved_late = ann(4, 10);
    approved_late.decided_at = Some(t("2026-11-23T20:00:00+07:00"));
    let full = ann(5, 10);
    let got: Vec<(i64, u32, bool)> = missed_for_day(
        &tt,
        &day,
        "tower",
        &[expired, too_many, pending, approved_late, full],
        &aired,
    )
    .into_iter()
    .map(|m| {
        let why = match m.announcement_id {
            1 => m.reason.contains("validity ended"),
            2 => m.reason.contains("only 2 slot(s)"),
            _ => m.reason.contains("slots were full"),
        };
        (m.announcement_id, m.count, why)
    })
    .collect();
    // Pending and approved-after-the-last-slot items owe nothing today.
    assert_eq!(got, [(1, 1, true), (2, 5, true), (5, 1, true)]);
}

#[test]
fn an_outro_must_fit_in_the_slot_too() {
    let text = "[[slot]]\nname = \"evening\"\ncron = \"0 0 18 * * *\"\nlength = \"20s\"\noutputs = [\"tower\"]\noutro = \"chime.wav\"\n";
    // 20 s slot, outro 2 s + pause 1 s: an 18 s item no longer fits, a 16 s one does.
    let range = ("2026-11-23T17:00:00+07:00", "2026-11-23T19:00:00+07:00");
    assert!(run(text, &[ann(1, 18)], range.0, range.1).is_empty());
    assert_eq!(run(text, &[ann(1, 16)], range.0, range.1).len(), 1);
}

#[test]
fn a_frequent_slot_is_checked_against_quiet_hours_all_day() {
    // Every 10 s, all day: it runs into 08:00–09:00 quiet hours, which the first few thousand
    // starts after midnight would never reach.
    let mut tt =
        timetable("[[slot]]\nname = \"often\"\ncron = \"*/10 * * * * *\"\nlength = \"5s\"\n");
    tt.quiet = QuietHours::parse(&["08:00-09:00".into()]).unwrap();
    let errors = tt.quiet_hour_conflicts(t("2026-11-23T00:00:00+07:00"));
    assert_eq!(errors.len(), 1);
    // Limited to the afternoon, it is fine.
    let mut tt =
        timetable("[[slot]]\nname = \"often\"\ncron = \"*/10 * 13-15 * * *\"\nlength = \"5s\"\n");
    tt.quiet = QuietHours::parse(&["08:00-09:00".into(), "21:00-05:00".into()]).unwrap();
    assert!(tt
        .quiet_hour_conflicts(t("2026-11-23T00:00:00+07:00"))
        .is_empty());
}
