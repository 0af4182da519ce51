//! The HTTP API's refusals: bad uploads leave nothing behind, roles are enforced, the CLI checks
//! schedule files.

mod common;

use std::process::Command;

use common::{fixture, Daemon, BIN};
use serde_json::{json, Value};

/// A slot that will not fire during a test.
const QUIET_SLOT: &str = "[[slot]]\nname = \"night\"\ncron = \"0 0 3 1 1 *\"\nlength = \"10m\"\n";

fn leftovers(d: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["tmp", "audio"] {
        if let Ok(rd) = std::fs::read_dir(d.data().join(sub)) {
            out.extend(rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string()));
        }
    }
    out
}

#[test]
fn bad_uploads_are_refused_clearly_and_leave_nothing_behind() {
    let d = Daemon::start_with(QUIET_SLOT, "max_upload_mb = 1");
    let big = d.dir.path().join("big.mp3");
    std::fs::write(&big, vec![0x55u8; 1024 * 1024 + 10]).unwrap();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let table: [Case; 6] = [
        ("empty.mp3", &[("title", "x")], 422, "empty_file"),
        ("text.mp3", &[("title", "x")], 422, "not_audio"),
        ("random.wav", &[("title", "x")], 422, "not_audio"),
        ("tone.mp3", &[], 400, "missing_title"),
        ("tone.mp3", &[("title", "   ")], 400, "missing_title"),
        (
            "tone.mp3",
            &[("title", "x"), ("outputs", "radio")],
            400,
            "unknown_output",
        ),
    ];
    for (file, fields, status, code) in table {
        let r = d.upload("uploader", &fixture(file), fields);
        assert_eq!(r.status().as_u16(), status, "{file} {fields:?}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"], code, "{file}: {body}");
        assert!(body["message"].as_str().unwrap().len() > 10, "{body}");
    }
    let r = d.upload("uploader", &big, &[("title", "big")]);
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.json::<Value>().unwrap()["error"], "too_large");
    // Bad field values.
    for (k, v, code) in [
        ("priority", "urgent", "bad_priority"),
        ("valid_until", "tomorrow", "bad_time"),
        ("plays_per_day", "0", "bad_plays_per_day"),
    ] {
        let r = d.upload("uploader", &fixture("tone.mp3"), &[("title", "x"), (k, v)]);
        assert_eq!(r.status().as_u16(), 400);
        assert_eq!(r.json::<Value>().unwrap()["error"], code);
    }
    // Nothing stored: no rows, no files.
    let list = d.get_json("/api/v1/announcements", "auditor");
    assert_eq!(list["announcements"].as_array().unwrap().len(), 0);
    assert_eq!(leftovers(&d), Vec::<String>::new());
}

#[test]
fn every_accepted_format_is_probed_by_decoding() {
    let d = Daemon::start(QUIET_SLOT);
    for (file, codec) in [
        ("tone.mp3", "mp3"),
        ("tone.ogg", "vorbis"),
        ("tone.opus", "opus"),
        ("tone.flac", "flac"),
        ("quiet.wav", "pcm_s16le"),
        ("tone.m4a", "aac"),
        ("lying-header.mp3", "mp3"),
    ] {
        let r = d.upload("uploader", &fixture(file), &[("title", file)]);
        assert_eq!(r.status(), 201, "{file}: {}", r.text().unwrap());
        let a: Value = r.json().unwrap();
        assert_eq!(a["status"], "pending");
        assert_eq!(a["codec"], codec, "{file}");
        let ms = a["duration_ms"].as_u64().unwrap();
        assert!((1900..2200).contains(&ms), "{file}: {ms} ms");
        assert!(a["loudness_lufs"].as_f64().unwrap() < -5.0);
        assert_eq!(a["sha256"].as_str().unwrap().len(), 64);
    }
    // The same file twice is the same audio, stored once.
    let a: Value = d
        .upload("uploader2", &fixture("tone.mp3"), &[("title", "again")])
        .json()
        .unwrap();
    let all = d.get_json("/api/v1/announcements", "auditor");
    let same: Vec<&Value> = all["announcements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["sha256"] == a["sha256"])
        .collect();
    assert_eq!(same.len(), 2);
    assert_eq!(
        std::fs::read_dir(d.data().join("audio")).unwrap().count(),
        7
    );
    // And the audio comes back byte for byte.
    let id = a["id"].as_i64().unwrap();
    let bytes = d
        .get(
            &format!("/api/v1/announcements/{id}/audio"),
            Some("auditor"),
        )
        .bytes()
        .unwrap();
    assert_eq!(
        bytes.as_ref(),
        std::fs::read(fixture("tone.mp3")).unwrap().as_slice()
    );
}

#[test]
fn tokens_and_roles() {
    let d = Daemon::start(QUIET_SLOT);
    let id = d
        .upload("uploader", &fixture("tone.mp3"), &[("title", "x")])
        .json::<Value>()
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let approve = format!("/api/v1/announcements/{id}/approve");

    // No token, a wrong token, a revoked token: 401.
    assert_eq!(d.get("/api/v1/status", None).status(), 401);
    let r = d
        .http
        .get(d.url("/api/v1/status"))
        .bearer_auth("hkr_0000")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().unwrap()["error"], "unauthorized");
    let listed = d.cli(&["token", "list"]);
    let auditor_id = listed
        .lines()
        .find(|l| l.contains("prasit"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    d.cli(&["token", "revoke", &auditor_id]);
    assert_eq!(d.get("/api/v1/status", Some("auditor")).status(), 401);
    assert!(
        !d.cli(&["token", "list"]).contains(&d.tokens["auditor"]),
        "token text is never listed"
    );

    // /healthz needs nothing.
    assert_eq!(d.get("/healthz", None).status(), 200);
    // Wrong role: 403.
    assert_eq!(d.post(&approve, Some("uploader2"), json!({})).status(), 403);
    assert_eq!(d.get("/api/v1/airtime", Some("uploader")).status(), 403);
    assert_eq!(
        d.upload("approver", &fixture("tone.ogg"), &[("title", "x")])
            .status(),
        403
    );
    // The uploader cannot approve their own upload, even as admin.
    let own = d
        .upload("admin", &fixture("tone.ogg"), &[("title", "admin's own")])
        .json::<Value>()
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = d.post(
        &format!("/api/v1/announcements/{own}/approve"),
        Some("admin"),
        json!({}),
    );
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["error"], "own_upload");
    // Another uploader may not withdraw it; its own uploader may.
    assert_eq!(
        d.post(
            &format!("/api/v1/announcements/{id}/withdraw"),
            Some("uploader2"),
            json!({})
        )
        .status(),
        403
    );
    // Reject needs a reason.
    let r = d.post(
        &format!("/api/v1/announcements/{own}/reject"),
        Some("approver"),
        json!({}),
    );
    assert_eq!(r.status(), 400);
    // Approve works for an approver; approving twice is a conflict.
    assert_eq!(d.post(&approve, Some("approver"), json!({})).status(), 200);
    assert_eq!(d.post(&approve, Some("admin"), json!({})).status(), 409);
    assert_eq!(
        d.post(
            &format!("/api/v1/announcements/{id}/withdraw"),
            Some("uploader"),
            json!({})
        )
        .status(),
        200
    );
    // Unknown ids and paths: 404 with the JSON error shape.
    let r = d.get("/api/v1/announcements/9999", Some("uploader"));
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error"], "not_found");
}

#[test]
fn check_names_the_file_and_slot_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("schedules")).unwrap();
    std::fs::write(
        dir.path().join("schedules/evening.toml"),
        "[[slot]]\nname = \"evening\"\ncron = \"0 0 25 * * *\"\nlength = \"30m\"\n",
    )
    .unwrap();
    let config = dir.path().join("h.toml");
    std::fs::write(&config, "schedules_dir = \"schedules\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("evening.toml") && err.contains("slot 'evening'") && err.contains("cron"),
        "{err}"
    );

    // The shipped default is valid and `check` prints next starts in Buddhist-era dates.
    let out = Command::new(BIN).arg("check").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("morning") && text.contains("256"), "{text}");
}

#[test]
fn plan_cli_prints_what_would_air() {
    let d = Daemon::start("[[slot]]\nname = \"morning\"\ncron = \"0 0 6 * * *\"\nlength = \"30m\"\nchime = \"chime.wav\"\n");
    let id = d.upload_approved(
        &fixture("tone.mp3"),
        &[("title", "ข่าวเช้า"), ("plays_per_day", "1")],
    );
    let out = d.cli(&[
        "plan",
        "--from",
        "2030-01-01T00:00:00+07:00",
        "--to",
        "2030-01-03T00:00:00+07:00",
        "--json",
    ]);
    let plan: Vec<Value> = serde_json::from_str(&out).unwrap();
    // Two days × two outputs.
    assert_eq!(plan.len(), 4, "{plan:#?}");
    assert!(plan
        .iter()
        .all(|p| p["announcement_id"] == id && p["slot"] == "morning"));
    let table = d.cli(&[
        "plan",
        "--from",
        "2030-01-01T00:00:00+07:00",
        "--to",
        "2030-01-02T00:00:00+07:00",
    ]);
    assert!(
        table.contains("ข่าวเช้า") && table.contains("2573"),
        "{table}"
    );
}
