//! The pure planner, specified by tables: slots + announcements + `now` -> the exact airings.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hokrajai::clock::{Clock, ManualClock};
use hokrajai::domain::{Announcement, AnnouncementStatus, Priority};
use hokrajai::schedule::{
    fill_occurrence, occurrences, parse_slot_file, plan, AiredCounts, PlanInput, Slot,
};

const BKK: chrono_tz::Tz = chrono_tz::Asia::Bangkok;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn slots(text: &str) -> Vec<Slot> {
    parse_slot_file("test.toml", text, &["tower".into(), "pa".into()]).unwrap()
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
    }
}

/// (local time in Bangkok, output, slot, announcement id) for each airing.
fn run(
    slots_text: &str,
    anns: &[Announcement],
    from: &str,
    to: &str,
) -> Vec<(String, String, String, i64)> {
    let s = slots(slots_text);
    let chimes = BTreeMap::from([("chime.wav".to_string(), 2000u64)]);
    plan(PlanInput {
        slots: &s,
        tz: BKK,
        from: t(from),
        to: t(to),
        announcements: anns,
        aired: AiredCounts::default(),
        chime_ms: &chimes,
        pause: Duration::from_secs(1),
    })
    .into_iter()
    .map(|p| {
        (
            p.start
                .with_timezone(&BKK)
                .format("%m-%d %H:%M:%S")
                .to_string(),
            p.output,
            p.slot,
            p.announcement_id,
        )
    })
    .collect()
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
            // b is further behind (2 owed) so it goes first.
            row("11-23 06:00:03", "tower", "morning", 2),
            row("11-23 06:00:24", "tower", "morning", 1),
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
    let s = slots(TWO_SLOTS);
    let evening = &s[1];
    let occ = occurrences(
        &s,
        BKK,
        t("2026-11-23T17:00:00+07:00"),
        t("2026-11-23T19:00:00+07:00"),
    )
    .into_iter()
    .find(|o| o.slot == "evening")
    .unwrap();
    let mut a = ann(1, 10);
    a.plays_per_day = 5;
    let b = ann(2, 10);
    let mut aired = AiredCounts::default();
    aired.record(
        1,
        "tower",
        occ.start.with_timezone(&BKK).date_naive(),
        "evening",
        occ.start,
    );
    // Restarted 15 s into the slot: item 1 already aired in this occurrence, item 2 has not.
    let resume_at = occ.start + chrono::Duration::seconds(15);
    let got = fill_occurrence(
        &occ,
        evening,
        "tower",
        resume_at,
        &[a, b],
        &aired,
        BKK,
        &BTreeMap::new(),
        Duration::from_secs(1),
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
    let s = slots(TWO_SLOTS);
    let chimes = BTreeMap::new();
    let mut total = 0;
    for _day in 0..7 {
        let now = clock.now();
        let day = plan(PlanInput {
            slots: &s,
            tz: BKK,
            from: now,
            to: now + chrono::Duration::days(1),
            announcements: std::slice::from_ref(&a),
            aired: AiredCounts::default(),
            chime_ms: &chimes,
            pause: Duration::from_secs(1),
        });
        assert_eq!(day.len(), 3, "day starting {now}");
        assert!(day.iter().all(|p| p.start >= now));
        total += day.len();
        clock.advance(chrono::Duration::days(1));
    }
    assert_eq!(total, 21);
}
