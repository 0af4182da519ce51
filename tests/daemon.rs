//! The whole daemon, driven as a district office would: the real binary, a real database, real
//! decoding, outputs that keep real time (tower writes a WAV file, PA is a null device).

mod common;

use std::time::Duration;

use common::{every_seconds_slot, fixture, tone_wav, with_status, Daemon};
use serde_json::{json, Value};

fn rows_for(rows: &[Value], id: i64) -> Vec<&Value> {
    rows.iter().filter(|r| r["announcement_id"] == id).collect()
}

#[test]
fn upload_approve_air_on_both_outputs_and_audit() {
    // Bangkok, as shipped: the plan is checked up to Bangkok's midnight below.
    let d = Daemon::start_with(&every_seconds_slot(10, 9), "timezone = \"Asia/Bangkok\"\n");
    let id = d.upload_approved(
        &fixture("tone.mp3"),
        &[("title", "ประกาศทดสอบ"), ("agency", "อำเภอ")],
    );

    let rows = d.wait_airtime(Duration::from_secs(40), |rows| {
        rows_for(rows, id)
            .iter()
            .filter(|r| r["status"] == "completed")
            .count()
            == 2
    });
    let mine = rows_for(&rows, id);
    let mut outputs: Vec<&str> = mine.iter().map(|r| r["output"].as_str().unwrap()).collect();
    outputs.sort();
    assert_eq!(outputs, ["pa", "tower"]);
    for r in &mine {
        assert_eq!(r["title"], "ประกาศทดสอบ");
        assert_eq!(r["slot"], "test");
        let scheduled: chrono::DateTime<chrono::Utc> =
            r["scheduled_at"].as_str().unwrap().parse().unwrap();
        let started: chrono::DateTime<chrono::Utc> =
            r["started_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            scheduled.timestamp() % 10,
            0,
            "slot starts on multiples of 10 s"
        );
        // Chime (~2 s) and a 1 s pause come first; if the daemon started in the middle of this
        // slot it resumed it from that moment, so the item may start later, but inside the slot.
        let delay = (started - scheduled).num_milliseconds();
        assert!(
            (2900..9000).contains(&delay),
            "item started {delay} ms after the slot"
        );
        // Real time: a 2 s file takes about 2 s.
        let ms = r["duration_ms"].as_u64().unwrap();
        assert!((1800..2600).contains(&ms), "aired for {ms} ms");
    }

    // The tower's WAV really holds sound.
    let mut reader = hound::WavReader::open(d.dir.path().join("tower.wav")).unwrap();
    let loud = reader
        .samples::<i16>()
        .map_while(Result::ok)
        .filter(|s| s.unsigned_abs() > 1000)
        .count();
    assert!(loud > 48_000, "only {loud} loud samples on the tower");

    // plays_per_day = 1: the plan holds nothing more today for it on either output.
    let now = chrono::Utc::now();
    let midnight = (now + chrono::Duration::hours(7))
        .date_naive()
        .and_hms_opt(17, 0, 0)
        .unwrap()
        .and_utc();
    let plan = d.get_json(
        &format!(
            "/api/v1/plan?from={}&to={}",
            urlenc(&now.to_rfc3339()),
            urlenc(&midnight.to_rfc3339())
        ),
        "auditor",
    );
    let again = plan["airings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["announcement_id"] == id)
        .count();
    if midnight > now {
        assert_eq!(again, 0, "{plan:#}");
    }

    // CSV for auditors: a header and the rows.
    let csv = d
        .get("/api/v1/airtime?format=csv", Some("auditor"))
        .text()
        .unwrap();
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .contains("id,announcement_id,title,sha256,output,slot,scheduled_at"));
    assert!(
        csv.lines()
            .filter(|l| l.contains("ประกาศทดสอบ") && l.contains(",completed,"))
            .count()
            >= 2
    );

    // Status shows both outputs alive.
    let status = d.get_json("/api/v1/status", "uploader");
    let outs = status["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 2);
    assert!(outs.iter().all(|o| o["device_ok"] == true), "{status:#}");
}

fn urlenc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[test]
fn only_approved_and_valid_announcements_ever_air() {
    let d = Daemon::start(&every_seconds_slot(10, 9));
    let f = fixture("tone.ogg");
    // Pending: never approved.
    let pending = d
        .upload("uploader", &f, &[("title", "pending")])
        .json::<Value>()
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    // Rejected.
    let rejected = d
        .upload("uploader", &fixture("tone.flac"), &[("title", "rejected")])
        .json::<Value>()
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = d.post(
        &format!("/api/v1/announcements/{rejected}/reject"),
        Some("approver"),
        json!({"reason": "หาเสียงเลือกตั้ง / campaigning"}),
    );
    assert_eq!(r.status(), 200);
    // Approved, then withdrawn.
    let withdrawn = d.upload_approved(&fixture("float.wav"), &[("title", "withdrawn")]);
    let r = d.post(
        &format!("/api/v1/announcements/{withdrawn}/withdraw"),
        Some("approver"),
        json!({}),
    );
    assert_eq!(r.status(), 200);
    // Approved, but its validity ended an hour ago.
    let past_from = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let past_until = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let expired = d.upload_approved(
        &fixture("alac.m4a"),
        &[
            ("title", "expired"),
            ("valid_from", &past_from),
            ("valid_until", &past_until),
        ],
    );
    // Approved and valid: the control.
    let control = d.upload_approved(&fixture("quiet.wav"), &[("title", "control")]);

    d.wait_airtime(Duration::from_secs(40), |rows| {
        rows_for(rows, control)
            .iter()
            .filter(|r| r["status"] == "completed")
            .count()
            == 2
    });
    // One more slot, to give anything wrong a chance to air.
    std::thread::sleep(Duration::from_secs(10));
    let rows = d.airtime();
    for id in [pending, rejected, withdrawn, expired] {
        assert!(
            rows_for(&rows, id).is_empty(),
            "announcement {id} aired: {rows:#?}"
        );
    }
    assert!(!rows.is_empty());
    // History records who decided what.
    let one = d.get_json(&format!("/api/v1/announcements/{rejected}"), "auditor");
    let actions: Vec<(&str, &str)> = one["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["action"].as_str().unwrap(), h["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("uploaded", "somchai"), ("rejected", "kanya")]);
}

#[test]
fn a_crash_during_an_airing_leaves_an_interrupted_row_and_playout_resumes() {
    let mut d = Daemon::start(&every_seconds_slot(10, 9));
    let long = d.dir.path().join("long.wav");
    tone_wav(&long, 4.0, 0.3);
    let id = d.upload_approved(&long, &[("title", "ยาว"), ("plays_per_day", "48")]);
    let rows = d.wait_airtime(Duration::from_secs(40), |rows| {
        rows_for(rows, id).iter().any(|r| r["status"] == "playing")
    });
    let open: Vec<i64> = with_status(&rows, "playing")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    d.kill9();
    d.spawn();
    let rows = d.airtime();
    for row_id in &open {
        let r = rows.iter().find(|r| r["id"] == *row_id).unwrap();
        assert_eq!(r["status"], "interrupted", "{r:#}");
        assert!(r["detail"].as_str().unwrap().contains("restart"), "{r:#}");
    }
    // The interrupted airing does not count: it airs again, completed.
    d.wait_airtime(Duration::from_secs(40), |rows| {
        rows_for(rows, id)
            .iter()
            .filter(|r| r["status"] == "completed")
            .count()
            >= 1
    });
    // A clean stop (SIGTERM) leaves no row open.
    d.wait_airtime(Duration::from_secs(40), |rows| {
        !with_status(rows, "playing").is_empty()
    });
    d.stop();
    let db = rusqlite::Connection::open(d.data().join("hokrajai.db")).unwrap();
    let open: i64 = db
        .query_row(
            "SELECT count(*) FROM airtime WHERE status = 'playing'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, 0);
    let shut: i64 = db
        .query_row("SELECT count(*) FROM airtime WHERE status = 'interrupted' AND detail LIKE '%shutting down%'", [], |r| r.get(0))
        .unwrap();
    assert!(shut >= 1);
}

#[test]
fn a_missing_file_at_air_time_fails_and_the_next_item_plays() {
    let d = Daemon::start(&every_seconds_slot(10, 9));
    // Upload two items, then remove the first one's audio from the store behind the daemon's back.
    let gone = d.upload_approved(&fixture("tone.flac"), &[("title", "gone")]);
    let sha = d.get_json(&format!("/api/v1/announcements/{gone}"), "auditor")["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(d.data().join("audio").join(&sha)).unwrap();
    let next = d.upload_approved(&fixture("tone.mp3"), &[("title", "next")]);
    let rows = d.wait_airtime(Duration::from_secs(40), |rows| {
        rows_for(rows, next)
            .iter()
            .filter(|r| r["status"] == "completed")
            .count()
            == 2
    });
    let failed = rows_for(&rows, gone);
    assert!(
        failed.len() >= 2 && failed.iter().all(|r| r["status"] == "failed"),
        "{failed:#?}"
    );
}

#[test]
fn owed_airings_are_logged_missed_after_the_days_last_slot() {
    // Three slots today, 10 s apart, each the only start of its slot: the third is the day's
    // last. An item asking for 5 plays a day can air 3 times; 2 are logged missed, with why.
    use chrono::Timelike;
    let first =
        chrono::Utc::now().with_timezone(&chrono_tz::Asia::Bangkok) + chrono::Duration::seconds(12);
    let mut slots = String::new();
    for i in 0..3 {
        let at = first + chrono::Duration::seconds(10 * i);
        slots += &format!(
            "[[slot]]\nname = \"s{i}\"\ncron = \"{} {} {} * * *\"\nlength = \"8s\"\n",
            at.second(),
            at.minute(),
            at.hour()
        );
    }
    let d = Daemon::start(&slots);
    let id = d.upload_approved(
        &fixture("float.wav"),
        &[("title", "ห้าครั้ง"), ("plays_per_day", "5")],
    );
    let rows = d.wait_airtime(Duration::from_secs(60), |rows| {
        rows_for(rows, id)
            .iter()
            .filter(|r| r["status"] == "missed")
            .count()
            == 4
    });
    let mine = rows_for(&rows, id);
    for output in ["tower", "pa"] {
        let done = mine
            .iter()
            .filter(|r| r["output"] == output && r["status"] == "completed")
            .count();
        let missed: Vec<&&Value> = mine
            .iter()
            .filter(|r| r["output"] == output && r["status"] == "missed")
            .collect();
        assert_eq!(done, 3, "{output}: {mine:#?}");
        assert_eq!(missed.len(), 2, "{output}");
        assert!(
            missed
                .iter()
                .all(|r| r["slot"] == "s2"
                    && r["detail"].as_str().unwrap().contains("only 3 slot(s)")),
            "{missed:#?}"
        );
    }
}
