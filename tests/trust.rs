//! Trust (issue #4), driven through the real binary: who may do what (every role × every
//! endpoint), the brake on token guessing, bounded requests, and the tamper-evident airtime log
//! (signed exports verified offline, a database edited behind the daemon's back, the day report).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{client_from, every_seconds_slot, fixture, with_status, Daemon, BIN};
use reqwest::blocking::{multipart, Client};
use serde_json::{json, Value};

/// A slot that will not fire during a test.
const QUIET_SLOT: &str = "[[slot]]\nname = \"night\"\ncron = \"0 0 3 1 1 *\"\nlength = \"10m\"\n";

/// Who calls, in the order of every row of the matrix.
const WHO: [&str; 7] = [
    "uploader", "approver", "auditor", "admin", "box", "none", "revoked",
];

enum Send {
    Nothing,
    Json(Value),
    Upload,
    Xml(String),
}

/// One row of the matrix: the expected status per caller in `WHO` order, or `None` for a public
/// page (the console), where every caller must get the same answer and none of them a refusal.
struct Row {
    method: &'static str,
    path: Box<dyn Fn(usize) -> String>,
    send: Send,
    expect: Option<[u16; 7]>,
}

fn row(
    method: &'static str,
    path: impl Fn(usize) -> String + 'static,
    send: Send,
    expect: Option<[u16; 7]>,
) -> Row {
    Row {
        method,
        path: Box::new(path),
        send,
        expect,
    }
}

fn fixed(p: &str) -> impl Fn(usize) -> String + 'static {
    let p = p.to_string();
    move |_| p.clone()
}

fn call(d: &Daemon, who: usize, r: &Row, cell: usize) -> u16 {
    // A revoked token is a bad token: each of those cells comes from its own address, so the
    // brake on guessing (tested below) does not decide the cell.
    let client: Client = if WHO[who] == "revoked" {
        client_from(format!("127.0.2.{}", 1 + cell % 250).parse().unwrap())
    } else {
        d.http.clone()
    };
    let url = d.url(&(r.path)(who));
    let mut req = match r.method {
        "GET" => client.get(&url),
        _ => client.post(&url),
    };
    if WHO[who] != "none" {
        req = req.bearer_auth(&d.tokens[WHO[who]]);
    }
    req = match &r.send {
        Send::Nothing => req,
        Send::Json(v) => req.json(v),
        Send::Xml(x) => req
            .header("content-type", "application/xml")
            .body(x.clone()),
        // Sent whole, not streamed: a refusal may come before the body is read.
        Send::Upload => {
            let (content_type, body) =
                common::multipart_whole(&[("title", "matrix upload")], &fixture("alac.m4a"));
            req.header("content-type", content_type).body(body)
        }
    };
    req.send().unwrap().status().as_u16()
}

#[test]
fn every_role_on_every_endpoint_gets_exactly_its_answer() {
    let mut d = Daemon::start(QUIET_SLOT);
    let revoked = d.revoked_token("admin");
    d.tokens.insert("revoked", revoked);
    let box_token = d.cli(&["token", "add", "--name", "box-5012", "--role", "box"]);
    d.tokens.insert("box", box_token.trim().to_string());
    let base = d.upload_approved(&fixture("alac.m4a"), &[("title", "base")]);
    // A pending announcement (uploaded by `uploader`) per caller for each decision.
    let pending = |d: &Daemon| -> Vec<i64> {
        (0..WHO.len())
            .map(|_| {
                let r = d.upload("uploader", &fixture("alac.m4a"), &[("title", "to decide")]);
                assert_eq!(r.status(), 201);
                r.json::<Value>().unwrap()["id"].as_i64().unwrap()
            })
            .collect()
    };
    let (to_approve, to_reject, to_withdraw) = (pending(&d), pending(&d), pending(&d));
    let any_role = Some([200, 200, 200, 200, 403, 401, 401]);
    let rows = vec![
        row("GET", fixed("/healthz"), Send::Nothing, Some([200; 7])),
        row("GET", fixed("/api/v1/status"), Send::Nothing, any_role),
        // The one reading endpoint a box token opens.
        row(
            "GET",
            fixed("/api/v1/whoami"),
            Send::Nothing,
            Some([200, 200, 200, 200, 200, 401, 401]),
        ),
        row("GET", fixed("/api/v1/slots"), Send::Nothing, any_role),
        row("GET", fixed("/api/v1/plan"), Send::Nothing, any_role),
        row("GET", fixed("/api/v1/calendar"), Send::Nothing, any_role),
        row(
            "GET",
            fixed("/api/v1/announcements"),
            Send::Nothing,
            any_role,
        ),
        row(
            "POST",
            fixed("/api/v1/announcements"),
            Send::Upload,
            Some([201, 403, 403, 201, 403, 401, 401]),
        ),
        row(
            "GET",
            move |_| format!("/api/v1/announcements/{base}"),
            Send::Nothing,
            any_role,
        ),
        row(
            "GET",
            move |_| format!("/api/v1/announcements/{base}/audio"),
            Send::Nothing,
            any_role,
        ),
        // Nothing a client sends names a file: an id that is a path is not an id.
        row(
            "GET",
            fixed("/api/v1/announcements/..%2F..%2Fhokrajai.db/audio"),
            Send::Nothing,
            Some([400, 400, 400, 400, 403, 401, 401]),
        ),
        row(
            "POST",
            move |w| format!("/api/v1/announcements/{}/approve", to_approve[w]),
            Send::Json(json!({})),
            Some([403, 200, 403, 200, 403, 401, 401]),
        ),
        row(
            "POST",
            move |w| format!("/api/v1/announcements/{}/reject", to_reject[w]),
            Send::Json(json!({"reason": "ทดสอบ / test"})),
            Some([403, 200, 403, 200, 403, 401, 401]),
        ),
        // The uploader withdraws their own.
        row(
            "POST",
            move |w| format!("/api/v1/announcements/{}/withdraw", to_withdraw[w]),
            Send::Json(json!({})),
            Some([200, 200, 403, 200, 403, 401, 401]),
        ),
        row(
            "GET",
            fixed("/api/v1/airtime"),
            Send::Nothing,
            Some([403, 200, 200, 200, 403, 401, 401]),
        ),
        row(
            "GET",
            fixed("/api/v1/airtime/export"),
            Send::Nothing,
            Some([403, 403, 200, 200, 403, 401, 401]),
        ),
        row(
            "GET",
            fixed("/api/v1/audit/report"),
            Send::Nothing,
            Some([403, 200, 200, 200, 403, 401, 401]),
        ),
        row(
            "POST",
            fixed("/api/v1/emergency"),
            Send::Json(json!({"announcement_id": base, "repeat": 1})),
            Some([403, 202, 403, 202, 403, 401, 401]),
        ),
        row(
            "POST",
            fixed("/api/v1/playout/stop"),
            Send::Nothing,
            Some([403, 403, 403, 200, 403, 401, 401]),
        ),
        // The provincial link (issue 3).
        row(
            "GET",
            fixed("/api/v1/link"),
            Send::Nothing,
            Some([200, 200, 200, 200, 403, 401, 401]),
        ),
        row(
            "GET",
            fixed("/api/v1/cap"),
            Send::Nothing,
            Some([403, 200, 200, 200, 403, 401, 401]),
        ),
        row(
            "POST",
            fixed("/api/v1/cap"),
            Send::Xml(std::fs::read_to_string(fixture("cap/wrong-area.xml")).unwrap()),
            Some([403, 200, 403, 200, 200, 401, 401]),
        ),
        // A box reports as itself only; without its Idempotency-Key the body is refused.
        row(
            "POST",
            fixed("/api/v1/reports"),
            Send::Nothing,
            Some([403, 403, 403, 403, 400, 401, 401]),
        ),
        row(
            "GET",
            fixed("/api/v1/boxes"),
            Send::Nothing,
            Some([403, 200, 200, 200, 403, 401, 401]),
        ),
        row("GET", fixed("/"), Send::Nothing, None),
        row("GET", fixed("/assets/app.js"), Send::Nothing, None),
        row(
            "GET",
            fixed("/api/v1/no-such-thing"),
            Send::Nothing,
            Some([404; 7]),
        ),
    ];

    let mut wrong = Vec::new();
    let mut cells = 0;
    for (i, r) in rows.iter().enumerate() {
        let got: Vec<u16> = (0..WHO.len())
            .map(|w| call(&d, w, r, i * WHO.len() + w))
            .collect();
        cells += got.len();
        let path = (r.path)(0);
        match r.expect {
            Some(expect) => {
                for (w, (g, e)) in got.iter().zip(expect).enumerate() {
                    if *g != e {
                        wrong.push(format!(
                            "{} {path} as {}: got {g}, expected {e}",
                            r.method, WHO[w]
                        ));
                    }
                }
            }
            None => {
                let refused = got
                    .iter()
                    .any(|s| matches!(s, 401 | 403 | 429) || *s >= 500);
                if refused || got.iter().any(|s| *s != got[0]) {
                    wrong.push(format!(
                        "{} {path} is public: every caller must get the same answer, none a refusal; got {got:?}",
                        r.method
                    ));
                }
            }
        }
    }
    eprintln!(
        "roles matrix: {} endpoints × {} callers = {cells} cells checked",
        rows.len(),
        WHO.len()
    );
    assert_eq!(cells, rows.len() * WHO.len());
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn repeated_bad_tokens_from_one_address_are_slowed_down_and_only_that_address() {
    let d = Daemon::start(QUIET_SLOT);
    let attacker = client_from("127.0.3.1".parse().unwrap());
    let status = |c: &Client, token: Option<&str>| {
        let mut r = c.get(d.url("/api/v1/status"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    };
    for i in 0..10 {
        let r = status(&attacker, Some(&format!("hkr_guess{i:02}")));
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = status(&attacker, Some("hkr_guess10"));
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(r.json::<Value>().unwrap()["error"], "too_many_bad_tokens");
    // Even a good token is not looked at from there until the window passes...
    assert_eq!(status(&attacker, Some(&d.tokens["admin"])).status(), 429);
    // ... but the same good token from another address works, and so does the health check.
    let office = client_from("127.0.3.2".parse().unwrap());
    assert_eq!(status(&office, Some(&d.tokens["admin"])).status(), 200);
    assert_eq!(
        attacker.get(d.url("/healthz")).send().unwrap().status(),
        200
    );
    // A malformed header counts as a bad token too.
    let other = client_from("127.0.3.3".parse().unwrap());
    for _ in 0..10 {
        let r = other
            .get(d.url("/api/v1/status"))
            .header("authorization", "Basic eDp5")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(status(&other, Some(&d.tokens["admin"])).status(), 429);
}

/// An upload body that trickles in, to hold an upload open.
struct Slow {
    data: Vec<u8>,
    at: usize,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(150));
        let n = buf.len().min(2048).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn requests_are_bounded_headers_uri_uploads_at_once_and_pending_per_person() {
    let d = Daemon::start(QUIET_SLOT);
    let admin = &d.tokens["admin"];
    // Headers and URI.
    let mut r = d.http.get(d.url("/api/v1/status")).bearer_auth(admin);
    for i in 0..80 {
        r = r.header(format!("x-filler-{i}"), "x");
    }
    assert_eq!(r.send().unwrap().status(), 431);
    let r = d
        .http
        .get(d.url("/api/v1/status"))
        .bearer_auth(admin)
        .header("x-big", "y".repeat(20_000))
        .send()
        .unwrap();
    assert_eq!(r.status(), 431);
    let long = format!("/api/v1/plan?from={}", "2".repeat(9000));
    assert_eq!(d.get(&long, Some("admin")).status(), 414);
    // A small JSON body limit holds for decisions.
    let r = d.post(
        "/api/v1/announcements/1/reject",
        Some("approver"),
        json!({"reason": "x".repeat(100_000)}),
    );
    assert_eq!(r.status(), 413);

    // Two uploads at once are received; a third waits its turn (503 + Retry-After).
    let bytes = std::fs::read(fixture("tone.mp3")).unwrap();
    let slow = |who: &'static str| {
        let (url, token, bytes) = (
            d.url("/api/v1/announcements"),
            d.tokens[who].clone(),
            bytes.clone(),
        );
        std::thread::spawn(move || {
            let form = multipart::Form::new().text("title", "slow").part(
                "audio",
                multipart::Part::reader(Slow { data: bytes, at: 0 }).file_name("slow.mp3"),
            );
            Client::new()
                .post(url)
                .bearer_auth(token)
                .multipart(form)
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let a = slow("uploader");
    let b = slow("uploader2");
    std::thread::sleep(Duration::from_millis(800));
    let r = d.upload_whole("admin", &fixture("alac.m4a"), &[("title", "third")]);
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.json::<Value>().unwrap()["error"], "busy_uploading");
    assert_eq!((a.join().unwrap(), b.join().unwrap()), (201, 201));
    let r = d.upload(
        "admin",
        &fixture("alac.m4a"),
        &[("title", "now there is room")],
    );
    assert_eq!(r.status(), 201);

    // Pending per person: the 50th waiting announcement is the last one accepted.
    let mut ids = Vec::new();
    for i in 0..49 {
        // `uploader2` already has one pending (the slow upload).
        let r = d.upload(
            "uploader2",
            &fixture("alac.m4a"),
            &[("title", &format!("p{i}"))],
        );
        assert_eq!(r.status(), 201, "upload {i}");
        ids.push(r.json::<Value>().unwrap()["id"].as_i64().unwrap());
    }
    let r = d.upload(
        "uploader2",
        &fixture("alac.m4a"),
        &[("title", "one too many")],
    );
    assert_eq!(r.status(), 429);
    assert_eq!(r.json::<Value>().unwrap()["error"], "too_many_pending");
    // Others are not affected, and a decision makes room.
    assert_eq!(
        d.upload("uploader", &fixture("alac.m4a"), &[("title", "x")])
            .status(),
        201
    );
    let r = d.post(
        &format!("/api/v1/announcements/{}/reject", ids[0]),
        Some("approver"),
        json!({"reason": "ซ้ำ"}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(
        d.upload(
            "uploader2",
            &fixture("alac.m4a"),
            &[("title", "fits again")]
        )
        .status(),
        201
    );

    // A file name is never a path: whatever it says, the audio is stored by its hash.
    let r = d
        .http
        .post(d.url("/api/v1/announcements"))
        .bearer_auth(admin)
        .multipart(
            multipart::Form::new().text("title", "sneaky").part(
                "audio",
                multipart::Part::bytes(std::fs::read(fixture("tone.ogg")).unwrap())
                    .file_name("../../../../tmp/hokrajai-evil.ogg"),
            ),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let sha = r.json::<Value>().unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.data().join("audio").join(&sha).is_file());
    assert!(!Path::new("/tmp/hokrajai-evil.ogg").exists());
}

// ---- the tamper-evident log ----

fn verify_cli(file: &Path, pubkey: &str) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(file)
        .args(["--pubkey", pubkey])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Write `lines` as an export file and verify it.
fn verify_lines(dir: &Path, name: &str, lines: &[String], pubkey: &str) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    verify_cli(&path, pubkey)
}

fn named(v: &str) -> (i64, i64) {
    let l: Value = serde_json::from_str(v).unwrap();
    (l["id"].as_i64().unwrap(), l["seq"].as_i64().unwrap())
}

/// Recompute every hash after `lines[from]`'s contents changed, as an attacker who knows the
/// format would.
fn rehash(lines: &mut [String], from: usize) {
    use hokrajai::audit::chain::{link, Link};
    let mut prev: Option<String> = None;
    for (i, line) in lines.iter_mut().enumerate() {
        if line.starts_with("{\"signature\"") {
            break;
        }
        let mut l: Link = serde_json::from_str(line).unwrap();
        if i >= from {
            if let Some(p) = &prev {
                l.prev_hash = p.clone();
            }
            l = link(&l.prev_hash, l.row).unwrap();
            *line = serde_json::to_string(&l).unwrap();
        }
        prev = Some(l.hash);
    }
}

/// A daemon that has aired and failed enough to have a chain of at least `n` rows, stopped.
fn aired_box(n: usize) -> Daemon {
    let d = Daemon::start(&every_seconds_slot(10, 9));
    let short = d.dir.path().join("short.wav");
    common::tone_wav(&short, 1.0, 0.3);
    d.upload_approved(&short, &[("title", "สั้น"), ("plays_per_day", "48")]);
    d.upload_approved(
        &fixture("alac.m4a"),
        &[("title", "alac"), ("plays_per_day", "48")],
    );
    let gone = d.upload_approved(
        &fixture("tone.flac"),
        &[("title", "gone"), ("plays_per_day", "48")],
    );
    let sha = d.get_json(&format!("/api/v1/announcements/{gone}"), "auditor")["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(d.data().join("audio").join(sha)).unwrap();
    d.wait_airtime(Duration::from_secs(60), |rows| {
        rows.len() - with_status(rows, "playing").len() >= n
            && !with_status(rows, "failed").is_empty()
    });
    d
}

#[test]
fn a_signed_export_verifies_offline_and_every_kind_of_edit_is_named() {
    let mut d = aired_box(8);
    let pubkey = d.pubkey();
    assert_eq!(pubkey.len(), 64);
    assert_eq!(
        std::fs::read_to_string(d.data().join("box.pub"))
            .unwrap()
            .trim(),
        pubkey
    );
    let text = d.export("");
    d.stop();
    let dir = d.dir.path().to_path_buf();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len() - 1;
    assert!(n >= 8, "{text}");
    assert!(lines[n].starts_with("{\"signature\""), "{}", lines[n]);
    let sig: Value = serde_json::from_str(&lines[n]).unwrap();
    assert_eq!(sig["signature"]["rows"], n as i64);
    assert_eq!(sig["signature"]["box_public_key"], pubkey.as_str());
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev_hash"], "0".repeat(64));
    // Every finished row is there, in chain order; the API's rows agree.
    for (i, l) in lines[..n].iter().enumerate() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["seq"], i as i64 + 1);
        assert_ne!(v["status"], "playing");
    }

    let (ok, out) = verify_lines(&dir, "good.jsonl", &lines, &pubkey);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("OK: {n} rows")), "{out}");
    // The public key may also be given as the file the box wrote.
    let (ok, out) = verify_cli(
        &dir.join("good.jsonl"),
        d.data().join("box.pub").to_str().unwrap(),
    );
    assert!(ok, "{out}");

    let expect = |name: &str, lines: &[String], needle: &str| {
        let (ok, out) = verify_lines(&dir, name, lines, &pubkey);
        assert!(!ok, "{name}: an altered export verified: {out}");
        assert!(
            out.contains(needle),
            "{name}: expected '{needle}' in: {out}"
        );
    };
    // Changed: one field of the third row.
    let mut changed = lines.clone();
    let mut v: Value = serde_json::from_str(&changed[2]).unwrap();
    v["duration_ms"] = json!(v["duration_ms"].as_i64().unwrap_or(0) + 60_000);
    changed[2] = v.to_string();
    let (id, seq) = named(&lines[2]);
    expect(
        "changed.jsonl",
        &changed,
        &format!("line 3 (airtime row id {id}, seq {seq}): the row's contents hash to"),
    );
    // Changed and re-hashed from there on: only the signature can tell.
    let mut rehashed = changed.clone();
    rehash(&mut rehashed, 2);
    expect(
        "rehashed.jsonl",
        &rehashed,
        "changed and re-hashed after the export was signed",
    );
    // Removed: the row after it no longer follows.
    let mut removed = lines.clone();
    removed.remove(2);
    let (id, seq) = named(&lines[3]);
    expect(
        "removed.jsonl",
        &removed,
        &format!("line 3 (airtime row id {id}, seq {seq}): expected seq 3"),
    );
    // Reordered.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let (id, seq) = named(&lines[3]);
    expect(
        "reordered.jsonl",
        &swapped,
        &format!("line 3 (airtime row id {id}, seq {seq}): expected seq 3"),
    );
    // The first row removed, the last row removed, a row appended after the signature.
    let mut no_first = lines.clone();
    no_first.remove(0);
    expect(
        "no-first.jsonl",
        &no_first,
        "rows at the start were removed",
    );
    let mut no_last = lines.clone();
    no_last.remove(n - 1);
    expect("no-last.jsonl", &no_last, "rows at the end were removed");
    let mut appended = lines.clone();
    appended.push(lines[0].clone());
    expect("appended.jsonl", &appended, "after the signature record");
    let mut unsigned = lines.clone();
    unsigned.pop();
    expect("unsigned.jsonl", &unsigned, "no signature record");
    // Another box's key.
    let other = tempfile::tempdir().unwrap();
    let other_key = hokrajai::audit::BoxKey::load_or_create(other.path()).unwrap();
    let (ok, out) = verify_lines(&dir, "good.jsonl", &lines, &other_key.public_hex());
    assert!(!ok && out.contains("the signature does not match"), "{out}");

    // A range: rows that became final in it, still one verifiable piece of the chain.
    let v1: Value = serde_json::from_str(&lines[3]).unwrap();
    let v2: Value = serde_json::from_str(&lines[6]).unwrap();
    let from = v1["finalized_at"].as_str().unwrap();
    let to = v2["finalized_at"].as_str().unwrap();
    let out = d.cli(&["audit", "export", "--from", from, "--to", to]);
    let part: Vec<String> = out.lines().map(str::to_string).collect();
    let (ok, msg) = verify_lines(&dir, "part.jsonl", &part, &pubkey);
    assert!(ok, "{msg}");
    let firsts: Value = serde_json::from_str(&part[0]).unwrap();
    assert!(firsts["seq"].as_i64().unwrap() <= 4, "{}", part[0]);
    assert!(part.len() > 3, "{out}");
    // An empty range verifies too (and says so).
    let out = d.cli(&[
        "audit",
        "export",
        "--from",
        "2001-01-01T00:00:00Z",
        "--to",
        "2001-01-02T00:00:00Z",
    ]);
    let empty: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(empty.len(), 1);
    let (ok, msg) = verify_lines(&dir, "empty.jsonl", &empty, &pubkey);
    assert!(ok && msg.contains("OK: 0 rows"), "{msg}");
}

/// A copy of the stopped box's database in `<dir>/<name>/hokrajai.db`, edited with `sql` run
/// with every airtime trigger dropped (an attacker with the SQLite file and a shell).
fn tampered_copy(d: &Daemon, name: &str, sql: &str) -> PathBuf {
    let dir = d.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let db = rusqlite::Connection::open(d.data().join("hokrajai.db")).unwrap();
    db.execute(
        "VACUUM INTO ?1",
        [dir.join("hokrajai.db").to_str().unwrap()],
    )
    .unwrap();
    drop(db);
    let db = rusqlite::Connection::open(dir.join("hokrajai.db")).unwrap();
    let triggers: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'airtime'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(triggers.len() >= 5, "{triggers:?}");
    for t in triggers {
        db.execute_batch(&format!("DROP TRIGGER {t}")).unwrap();
    }
    db.execute_batch(sql).unwrap();
    dir
}

fn verify_db(d: &Daemon, dir: &Path, against: Option<(&Path, &str)>) -> (bool, String) {
    let mut args = vec!["audit", "verify-db", "--data-dir", dir.to_str().unwrap()];
    if let Some((file, key)) = against {
        args.extend(["--against", file.to_str().unwrap(), "--pubkey", key]);
    }
    let (ok, out, err) = d.cli_result(&args);
    (ok, format!("{out}{err}"))
}

fn id_at(d: &Daemon, seq: i64) -> i64 {
    let db = rusqlite::Connection::open(d.data().join("hokrajai.db")).unwrap();
    db.query_row("SELECT id FROM airtime WHERE seq = ?1", [seq], |r| r.get(0))
        .unwrap()
}

#[test]
fn the_database_edited_behind_the_daemons_back_is_caught_and_the_row_named() {
    let mut d = aired_box(6);
    d.stop();
    let pubkey = d.pubkey();
    let (ok, out, err) = d.cli_result(&["audit", "verify-db"]);
    assert!(ok, "{out}{err}");
    // The triggers hold without an attacker's help.
    let db = rusqlite::Connection::open(d.data().join("hokrajai.db")).unwrap();
    for sql in [
        "UPDATE airtime SET detail = 'edited' WHERE seq = 2",
        "DELETE FROM airtime WHERE seq = 2",
        "UPDATE airtime SET seq = 99 WHERE seq = 2",
    ] {
        assert!(db.execute_batch(sql).is_err(), "{sql} was allowed");
    }
    drop(db);
    // A pristine export to hold the database against later.
    let export = d.dir.path().join("before.jsonl");
    std::fs::write(&export, d.cli(&["audit", "export"])).unwrap();
    let last: i64 = {
        let db = rusqlite::Connection::open(d.data().join("hokrajai.db")).unwrap();
        db.query_row("SELECT MAX(seq) FROM airtime", [], |r| r.get(0))
            .unwrap()
    };

    let expect = |name: &str, sql: &str, needle: &str| {
        let dir = tampered_copy(&d, name, sql);
        let (ok, out) = verify_db(&d, &dir, None);
        assert!(!ok, "{name}: tampering not found: {out}");
        assert!(
            out.contains(needle),
            "{name}: expected '{needle}' in: {out}"
        );
    };
    let (id2, id3) = (id_at(&d, 2), id_at(&d, 3));
    expect(
        "changed",
        "UPDATE airtime SET detail = detail || ' (edited)' WHERE seq = 3",
        &format!("airtime row id {id3} (seq 3): the row's contents hash to"),
    );
    expect(
        "removed",
        "DELETE FROM airtime WHERE seq = 2",
        &format!("airtime row id {id3} (seq 3): expected seq 2, found seq 3"),
    );
    expect(
        "reordered",
        "UPDATE airtime SET seq = -1 WHERE seq = 2; UPDATE airtime SET seq = 2 WHERE seq = 3; \
         UPDATE airtime SET seq = 3 WHERE seq = -1;",
        &format!("airtime row id {id3} (seq 2): prev_hash"),
    );
    expect(
        "reordered-ids",
        &format!(
            "UPDATE airtime SET id = -1 WHERE id = {id2}; UPDATE airtime SET id = {id2} WHERE id = {id3}; \
             UPDATE airtime SET id = {id3} WHERE id = -1;"
        ),
        "(seq 2): the row's contents hash to",
    );
    expect(
        "sneaked-in",
        "INSERT INTO airtime (title, sha256, output, slot, scheduled_at, started_at, ended_at, duration_ms, status) \
         VALUES ('ghost', 'x', 'tower', 'test', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', \
         '2026-01-01T00:00:03.000Z', 2000, 'completed')",
        "has no place in the chain",
    );

    // The last row removed: the chain alone cannot tell (nothing follows it), an earlier export can.
    let dir = tampered_copy(
        &d,
        "tail",
        &format!("DELETE FROM airtime WHERE seq = {last}"),
    );
    let (ok, out) = verify_db(&d, &dir, None);
    assert!(ok, "{out}");
    let (ok, out) = verify_db(&d, &dir, Some((&export, &pubkey)));
    assert!(!ok && out.contains("has no such row"), "{out}");
    // A row changed and the whole chain re-hashed after it: consistent in itself, but not with
    // what the province already holds.
    let dir = tampered_copy(
        &d,
        "rewritten",
        "UPDATE airtime SET detail = 'rewritten' WHERE seq = 2",
    );
    {
        use hokrajai::audit::chain::{link, ChainRow, GENESIS};
        let db = rusqlite::Connection::open(dir.join("hokrajai.db")).unwrap();
        let mut prev = GENESIS.to_string();
        let rows: Vec<ChainRow> = db
            .prepare(
                "SELECT seq, id, announcement_id, title, sha256, output, slot, scheduled_at, started_at, \
                 ended_at, duration_ms, status, detail, finalized_at FROM airtime WHERE seq IS NOT NULL ORDER BY seq",
            )
            .unwrap()
            .query_map([], |r| {
                Ok(ChainRow {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    announcement_id: r.get(2)?,
                    title: r.get(3)?,
                    sha256: r.get(4)?,
                    output: r.get(5)?,
                    slot: r.get(6)?,
                    scheduled_at: r.get(7)?,
                    started_at: r.get(8)?,
                    ended_at: r.get(9)?,
                    duration_ms: r.get(10)?,
                    status: r.get(11)?,
                    detail: r.get(12)?,
                    finalized_at: r.get(13)?,
                })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for row in rows {
            let seq = row.seq;
            let l = link(&prev, row).unwrap();
            db.execute(
                "UPDATE airtime SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                rusqlite::params![l.prev_hash, l.hash, seq],
            )
            .unwrap();
            prev = l.hash;
        }
    }
    let (ok, out) = verify_db(&d, &dir, None);
    assert!(ok, "a consistent rewrite passes on its own: {out}");
    let (ok, out) = verify_db(&d, &dir, Some((&export, &pubkey)));
    assert!(
        !ok && out.contains("rows were removed or replaced"),
        "{out}"
    );
    // And the untouched database against the same export.
    let (ok, out) = verify_db(&d, &d.data(), Some((&export, &pubkey)));
    assert!(ok, "{out}");
}

#[test]
fn the_day_report_shows_owed_aired_and_why_not() {
    let d = Daemon::start(&every_seconds_slot(10, 9));
    let aired = d.upload_approved(&fixture("tone.mp3"), &[("title", "ออกอากาศ")]);
    let gone = d.upload_approved(&fixture("tone.flac"), &[("title", "ไฟล์หาย")]);
    let sha = d.get_json(&format!("/api/v1/announcements/{gone}"), "auditor")["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(d.data().join("audio").join(sha)).unwrap();
    d.wait_airtime(Duration::from_secs(40), |rows| {
        let of = |id: i64, s: &str| {
            rows.iter()
                .filter(|r| r["announcement_id"] == id && r["status"] == s)
                .count()
        };
        of(aired, "completed") == 2 && of(gone, "failed") >= 2
    });
    let r = d.get_json("/api/v1/audit/report", "approver");
    let items = r["items"].as_array().unwrap();
    let item = |id: i64, output: &str| {
        items
            .iter()
            .find(|i| i["announcement_id"] == id && i["output"] == output)
            .unwrap_or_else(|| panic!("no item {id} on {output}: {r:#}"))
            .clone()
    };
    for output in ["tower", "pa"] {
        let a = item(aired, output);
        assert_eq!(
            (a["owed"].as_u64(), a["completed"].as_u64()),
            (Some(1), Some(1)),
            "{a:#}"
        );
        assert!(a["not_aired"].as_array().unwrap().is_empty(), "{a:#}");
        let g = item(gone, output);
        assert_eq!(g["completed"], 0);
        assert!(g["failed"].as_u64().unwrap() >= 1, "{g:#}");
        assert_eq!(g["owed"], 1, "{g:#}");
        let why = g["not_aired"][0]["reason"].as_str().unwrap();
        assert!(why.contains("failed"), "{why}");
        assert!(
            g["airings"][0]["detail"].as_str().unwrap().len() > 5,
            "{g:#}"
        );
    }
    let day = r["day"].as_str().unwrap().to_string();
    assert!(r["totals"]["completed"].as_u64().unwrap() >= 2);
    // The CLI gives the same report.
    let cli: Value =
        serde_json::from_str(&d.cli(&["audit", "report", "--day", &day, "--json"])).unwrap();
    assert_eq!(cli["day"], r["day"]);
    assert!(cli["totals"]["completed"].as_u64() >= r["totals"]["completed"].as_u64());
    let text = d.cli(&["audit", "report", "--day", &day]);
    assert!(
        text.contains("NOT AIRED") && text.contains("totals:"),
        "{text}"
    );
    // A day that has not come: owed, nothing aired.
    let r = d.get(
        &format!("/api/v1/audit/report?day={}", "2099-01-01"),
        Some("auditor"),
    );
    assert_eq!(r.status(), 200);
    let future: Value = r.json().unwrap();
    assert_eq!(future["totals"]["completed"], 0);
    assert_eq!(
        d.get("/api/v1/audit/report?day=yesterday", Some("auditor"))
            .status(),
        400
    );
}
