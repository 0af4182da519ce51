//! CAP 1.2 alerts through the real daemon (issue 3): every msgType, the district's area and
//! others, Test/Exercise, bad XML, a resource whose digest does not match, duplicates, roles.
//! The fixtures (tests/fixtures/cap) are dated August 2026; the dates are moved to tomorrow here
//! so that they are live whatever day the suite runs (expired.xml keeps its past dates).

mod common;

use std::time::Duration;

use common::Daemon;
use serde_json::Value;

const QUIET_SLOT: &str = "[[slot]]\nname = \"night\"\ncron = \"0 0 3 1 1 *\"\nlength = \"10m\"\n";
const DISTRICT: &str = "[district]\ncode = \"5012\"\n";

/// A fixture with its August 2026 dates moved to tomorrow and the day after.
fn fresh(name: &str) -> String {
    let text = std::fs::read_to_string(common::fixture(&format!("cap/{name}"))).unwrap();
    if name == "expired.xml" {
        return text;
    }
    let today = chrono::Utc::now().date_naive();
    let d1 = (today + chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string();
    let d2 = (today + chrono::Days::new(2))
        .format("%Y-%m-%d")
        .to_string();
    text.replace("2026-08-14", &d1).replace("2026-08-15", &d2)
}

fn post_cap(d: &Daemon, who: Option<&str>, xml: &str) -> (u16, Value) {
    let mut req = d
        .http
        .post(d.url("/api/v1/cap"))
        .header("content-type", "application/xml")
        .body(xml.to_string());
    if let Some(w) = who {
        req = req.bearer_auth(&d.tokens[w]);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn announcement(d: &Daemon, id: &Value) -> Value {
    d.get_json(
        &format!("/api/v1/announcements/{}", id.as_i64().unwrap()),
        "admin",
    )
}

#[test]
fn alerts_for_the_district_air_and_cancels_and_updates_take_them_back() {
    let d = Daemon::start_with(QUIET_SLOT, DISTRICT);

    // Extreme + Immediate with its spoken message embedded: preempts both outputs.
    let (s, v) = post_cap(&d, Some("approver"), &fresh("alert-extreme-th-en.xml"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["record"]["decision"], "aired", "{v}");
    assert_eq!(v["duplicate"], false);
    let mut preempted: Vec<&str> = v["preempted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    preempted.sort();
    assert_eq!(preempted, ["pa", "tower"]);
    let first = v["record"]["announcement_id"].clone();
    let a = announcement(&d, &first);
    assert_eq!(a["source"], "cap");
    assert_eq!(a["status"], "approved");
    assert_eq!(a["priority"], "high");
    assert_eq!(
        a["title"], "น้ำป่าไหลหลากอำเภอสันป่าตอง ให้ขึ้นที่สูงทันที",
        "Thai first: {a}"
    );
    assert!(
        a["valid_until"].is_string(),
        "valid until the alert expires"
    );
    assert!(
        v["record"]["detail"]
            .as_str()
            .unwrap()
            .contains("audio resource aired"),
        "{v}"
    );
    // Its message airs in the emergency slot on both outputs.
    let rows = d.wait_airtime(Duration::from_secs(20), |rows| {
        rows.iter()
            .filter(|r| r["announcement_id"] == first && r["status"] == "completed")
            .count()
            >= 2
    });
    assert!(rows
        .iter()
        .any(|r| r["announcement_id"] == first && r["slot"] == "emergency"));

    // The same message again: answered from the record, nothing aired twice.
    let (s, again) = post_cap(&d, Some("admin"), &fresh("alert-extreme-th-en.xml"));
    assert_eq!(s, 200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["record"]["id"], v["record"]["id"]);

    // Severe for the whole province (code 50 covers district 5012), no audio: the alert tone
    // with the headline as its title.
    let (s, v2) = post_cap(&d, Some("approver"), &fresh("alert-severe-province.xml"));
    assert_eq!(s, 200, "{v2}");
    assert!(
        matches!(
            v2["record"]["decision"].as_str(),
            Some("aired") | Some("queued")
        ),
        "{v2}"
    );
    let second = v2["record"]["announcement_id"].clone();
    let b = announcement(&d, &second);
    assert_eq!(b["title"], "เตือนพายุฤดูร้อนจังหวัดเชียงใหม่ พรุ่งนี้บ่าย");
    assert!(
        v2["record"]["detail"]
            .as_str()
            .unwrap()
            .contains("alert tone"),
        "{v2}"
    );

    // An Update replaces the first: it is withdrawn, the update airs.
    let (s, v3) = post_cap(&d, Some("approver"), &fresh("update.xml"));
    assert_eq!(s, 200, "{v3}");
    assert_eq!(announcement(&d, &first)["status"], "withdrawn");
    assert!(
        v3["record"]["detail"]
            .as_str()
            .unwrap()
            .contains("replaced"),
        "{v3}"
    );
    let third = v3["record"]["announcement_id"].clone();
    assert_eq!(announcement(&d, &third)["status"], "approved");

    // A Cancel takes back what it names.
    let (s, v4) = post_cap(&d, Some("admin"), &fresh("cancel.xml"));
    assert_eq!(s, 200, "{v4}");
    assert_eq!(v4["record"]["decision"], "cancelled", "{v4}");
    let withdrawn = [&first, &second, &third]
        .iter()
        .filter(|id| announcement(&d, id)["status"] == "withdrawn")
        .count();
    assert!(
        withdrawn >= 2,
        "the cancel withdrew what it referenced: {v4}"
    );

    // Everything is in the CAP log, newest first.
    let log = d.get_json("/api/v1/cap", "auditor");
    assert_eq!(log["messages"].as_array().unwrap().len(), 4, "{log}");
    assert_eq!(log["messages"][0]["decision"], "cancelled");
}

#[test]
fn other_areas_tests_exercises_expired_and_acks_are_logged_not_aired() {
    let d = Daemon::start_with(QUIET_SLOT, DISTRICT);
    for (name, why) in [
        ("wrong-area.xml", "not for this district"),
        ("test-status.xml", "Test"),
        ("exercise.xml", "Exercise"),
        ("expired.xml", "expired"),
        ("ack.xml", "Ack"),
    ] {
        let (s, v) = post_cap(&d, Some("approver"), &fresh(name));
        assert_eq!(s, 200, "{name}: {v}");
        assert_eq!(v["record"]["decision"], "ignored", "{name}: {v}");
        assert!(v["record"]["announcement_id"].is_null(), "{name}");
        let detail = v["record"]["detail"].as_str().unwrap();
        assert!(
            detail.contains(why),
            "{name}: the reason says why: {detail}"
        );
    }
    assert_eq!(
        d.get_json("/api/v1/cap", "admin")["messages"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(d.airtime().is_empty(), "nothing aired");
}

#[test]
fn bad_messages_are_refused_and_a_resource_failing_its_digest_is_not_aired() {
    let d = Daemon::start_with(QUIET_SLOT, DISTRICT);
    for name in ["bad-xml.xml", "missing-required.xml", "wrong-namespace.xml"] {
        let (s, v) = post_cap(&d, Some("approver"), &fresh(name));
        assert_eq!(s, 400, "{name}: {v}");
        assert_eq!(v["error"], "bad_cap", "{name}: {v}");
    }
    let (s, _) = post_cap(&d, Some("approver"), "not xml at all");
    assert_eq!(s, 400);

    // The warning still goes out, with the tone instead of the unverified audio.
    let (s, v) = post_cap(&d, Some("approver"), &fresh("wrong-digest.xml"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["record"]["decision"], "aired", "{v}");
    let detail = v["record"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("refused") && detail.contains("digest"),
        "{detail}"
    );
    let a = announcement(&d, &v["record"]["announcement_id"]);
    let tone = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/audio/alert.wav")).unwrap();
    use sha2::Digest;
    assert_eq!(
        a["sha256"],
        hex::encode(sha2::Sha256::digest(&tone)),
        "the alert tone: {a}"
    );
}

#[test]
fn only_approvers_admins_and_boxes_may_hand_over_alerts() {
    let mut d = Daemon::start_with(QUIET_SLOT, DISTRICT);
    let box_token = d.cli(&["token", "add", "--name", "box-5013", "--role", "box"]);
    d.tokens.insert("box", box_token.trim().to_string());
    let xml = fresh("wrong-area.xml");
    assert_eq!(post_cap(&d, Some("uploader"), &xml).0, 403);
    assert_eq!(post_cap(&d, Some("auditor"), &xml).0, 403);
    assert_eq!(post_cap(&d, None, &xml).0, 401);
    let (s, v) = post_cap(&d, Some("box"), &xml);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["record"]["via"], "api:box-5013");
    // A box token opens nothing else.
    assert_eq!(d.get("/api/v1/status", Some("box")).status(), 403);
    assert_eq!(d.get("/api/v1/cap", Some("box")).status(), 403);
    assert_eq!(d.get("/api/v1/whoami", Some("box")).status(), 200);
}
