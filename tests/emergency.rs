//! Emergencies preempt everything, quiet hours included; the schedule resumes after them.

mod common;

use std::time::Duration;

use chrono::Timelike;
use common::{fixture, tone_wav, Daemon};
use serde_json::{json, Value};

fn rows_for(rows: &[Value], id: i64) -> Vec<&Value> {
    rows.iter().filter(|r| r["announcement_id"] == id).collect()
}

#[test]
fn an_emergency_interrupts_a_slot_then_the_slot_resumes() {
    let d = Daemon::start(
        "[[slot]]\nname = \"long\"\ncron = \"*/30 * * * * *\"\nlength = \"28s\"\noutputs = [\"tower\", \"pa\"]\nchime = \"chime.wav\"\n",
    );
    let long = d.dir.path().join("long.wav");
    tone_wav(&long, 6.0, 0.3);
    let item = d.upload_approved(&long, &[("title", "ข่าวยาว"), ("plays_per_day", "48")]);
    // The emergency message: uploaded by someone, approved by someone else, not scheduled
    // anywhere (plays_per_day would make it air; it is PA-only to keep the tower's log simple).
    let msg = d.upload_approved(
        &fixture("tone.mp3"),
        &[("title", "เตือนภัยน้ำท่วม"), ("outputs", "pa")],
    );
    // Wait until the long item is on air on the tower early in a slot (not in a slot the daemon
    // resumed late at start-up), so that after the emergency it still fits in that slot.
    let early = |r: &Value| {
        let t = |k: &str| {
            r[k].as_str()
                .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
        };
        matches!((t("scheduled_at"), t("started_at")), (Some(s), Some(b)) if (b - s).num_milliseconds() < 5000)
    };
    d.wait_airtime(Duration::from_secs(75), |rows| {
        rows_for(rows, item)
            .iter()
            .any(|r| r["status"] == "playing" && r["output"] == "tower" && early(r))
    });
    std::thread::sleep(Duration::from_millis(500));
    let r = d.post(
        "/api/v1/emergency",
        Some("approver"),
        json!({"announcement_id": msg, "outputs": ["tower"], "repeat": 2}),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let accepted: Value = r.json().unwrap();
    assert_eq!(accepted["outputs"], json!(["tower"]));

    let rows = d.wait_airtime(Duration::from_secs(30), |rows| {
        rows_for(rows, msg)
            .iter()
            .filter(|r| r["slot"] == "emergency" && r["status"] == "completed")
            .count()
            >= 2
    });
    let tower_item: Vec<&Value> = rows_for(&rows, item)
        .into_iter()
        .filter(|r| r["output"] == "tower")
        .collect();
    let interrupted = tower_item
        .iter()
        .find(|r| r["status"] == "interrupted")
        .expect("the item on air was interrupted");
    assert!(
        interrupted["detail"]
            .as_str()
            .unwrap()
            .contains("emergency"),
        "{interrupted:#}"
    );
    let em: Vec<&Value> = rows_for(&rows, msg)
        .into_iter()
        .filter(|r| r["slot"] == "emergency")
        .collect();
    assert!(
        em.iter().all(|r| r["output"] == "tower"),
        "only the tower was targeted: {em:#?}"
    );
    // The interrupted item airs again later in the same slot (it still fits), completed.
    let scheduled = interrupted["scheduled_at"].clone();
    d.wait_airtime(Duration::from_secs(30), |rows| {
        rows_for(rows, item).iter().any(|r| {
            r["output"] == "tower" && r["status"] == "completed" && r["scheduled_at"] == scheduled
        })
    });
}

#[test]
fn emergencies_ignore_quiet_hours_and_need_the_right_role() {
    // Quiet hours from an hour ago to an hour from now (Bangkok), a slot far from them.
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Bangkok);
    let hm = |t: chrono::DateTime<chrono_tz::Tz>| format!("{:02}:{:02}", t.hour(), t.minute());
    let quiet = format!(
        "quiet_hours = [\"{}-{}\"]",
        hm(now - chrono::Duration::hours(1)),
        hm(now + chrono::Duration::hours(1))
    );
    let slot_at = now + chrono::Duration::hours(6);
    let slots = format!(
        "[[slot]]\nname = \"far\"\ncron = \"0 {} {} * * *\"\nlength = \"10m\"\n",
        slot_at.minute(),
        slot_at.hour()
    );
    let d = Daemon::start_with(&slots, &quiet);
    let msg = d.upload_approved(&fixture("tone.ogg"), &[("title", "ไฟป่า")]);
    let pending = d
        .upload("uploader", &fixture("tone.flac"), &[("title", "ยังไม่อนุมัติ")])
        .json::<Value>()
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // Roles: uploaders and auditors may not; a pending announcement cannot be aired.
    assert_eq!(
        d.post(
            "/api/v1/emergency",
            Some("uploader"),
            json!({"announcement_id": msg})
        )
        .status(),
        403
    );
    assert_eq!(
        d.post(
            "/api/v1/emergency",
            Some("auditor"),
            json!({"announcement_id": msg})
        )
        .status(),
        403
    );
    let r = d.post(
        "/api/v1/emergency",
        Some("approver"),
        json!({"announcement_id": pending}),
    );
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().unwrap()["error"], "not_approved");
    let r = d.post(
        "/api/v1/emergency",
        Some("approver"),
        json!({"announcement_id": msg, "outputs": ["radio"]}),
    );
    assert_eq!(r.status(), 400);

    // Inside quiet hours, on both outputs, repeated once.
    let r = d.post(
        "/api/v1/emergency",
        Some("admin"),
        json!({"announcement_id": msg, "repeat": 1}),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let rows = d.wait_airtime(Duration::from_secs(20), |rows| {
        rows_for(rows, msg)
            .iter()
            .filter(|r| r["status"] == "completed")
            .count()
            == 2
    });
    let mut outs: Vec<&str> = rows_for(&rows, msg)
        .iter()
        .map(|r| r["output"].as_str().unwrap())
        .collect();
    outs.sort();
    assert_eq!(outs, ["pa", "tower"]);

    // Admin stop silences a running emergency: its row is interrupted.
    let r = d.post(
        "/api/v1/emergency",
        Some("admin"),
        json!({"announcement_id": msg, "repeat": 3, "outputs": ["pa"]}),
    );
    assert_eq!(r.status(), 202);
    d.wait_airtime(Duration::from_secs(10), |rows| {
        rows.iter().any(|r| r["status"] == "playing")
    });
    assert_eq!(
        d.post("/api/v1/playout/stop", Some("approver"), json!({}))
            .status(),
        403
    );
    assert_eq!(
        d.post("/api/v1/playout/stop", Some("admin"), json!({}))
            .status(),
        200
    );
    let rows = d.wait_airtime(Duration::from_secs(10), |rows| {
        rows.iter().all(|r| r["status"] != "playing")
    });
    assert!(
        rows.iter().any(|r| r["status"] == "interrupted"),
        "{rows:#?}"
    );
}

#[test]
fn an_uploaded_emergency_is_approved_by_the_act() {
    let d = Daemon::start("[[slot]]\nname = \"night\"\ncron = \"0 0 3 1 1 *\"\nlength = \"10m\"\n");
    let form = reqwest::blocking::multipart::Form::new()
        .text("title", "อพยพด่วน")
        .text("outputs", "tower")
        .text("repeat", "1")
        .part(
            "audio",
            reqwest::blocking::multipart::Part::bytes(std::fs::read(fixture("tone.mp3")).unwrap())
                .file_name("x.mp3"),
        );
    let r = d
        .http
        .post(d.url("/api/v1/emergency"))
        .bearer_auth(&d.tokens["approver"])
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let id = r.json::<Value>().unwrap()["announcement_id"]
        .as_i64()
        .unwrap();
    let a = d.get_json(&format!("/api/v1/announcements/{id}"), "auditor");
    assert_eq!(a["status"], "approved");
    let actions: Vec<&str> = a["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["uploaded", "approved"]);
    d.wait_airtime(Duration::from_secs(20), |rows| {
        rows_for(rows, id).iter().any(|r| {
            r["status"] == "completed" && r["output"] == "tower" && r["slot"] == "emergency"
        })
    });
}
