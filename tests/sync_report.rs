//! Reporting airtime back to the province (issue #3), with two real daemons: a province and a
//! district box whose `[report]` points at it. Every row the box finishes must arrive exactly
//! once, through the province going down, the box being killed, and batches sent twice; and a
//! box may only ever report as itself.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{fixture, Daemon};
use hokrajai::audit::chain::{self, ChainRow, Link, GENESIS};
use hokrajai::sync::report::{encode_batch, idempotency_key};
use reqwest::blocking::Response;
use serde_json::{json, Value};

const BOX: &str = "box-5012";

/// Held by the test that airs in real time and by the one that loads both cores draining a
/// backlog, so the second does not starve the first's playout.
static REAL_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Poll `f` every 200 ms until it gives a value; after `timeout`, panic naming `what` with the
/// end of each daemon's log.
fn wait_for<T>(
    timeout: Duration,
    what: &str,
    logs: &[&Daemon],
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let tails: Vec<String> = logs
                .iter()
                .map(|d| {
                    let log = d.log();
                    let lines: Vec<&str> = log.lines().collect();
                    lines[lines.len().saturating_sub(40)..].join("\n")
                })
                .collect();
            panic!(
                "timed out waiting for {what}; logs:\n{}",
                tails.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A province: no slot ever has anything to air; its port stays the same across restarts; a
/// box token for `box-5012` (and one for another box) made with the real CLI.
fn province() -> Daemon {
    let mut p = Daemon::start(&common::every_seconds_slot(10, 9));
    let addr = p.base.trim_start_matches("http://").to_owned();
    let text = std::fs::read_to_string(&p.config).unwrap();
    let pinned = text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    assert_ne!(text, pinned, "the harness config changed its listen line");
    std::fs::write(&p.config, pinned).unwrap();
    for (key, name) in [("box", BOX), ("box2", "box-5013")] {
        let t = p.cli(&["token", "add", "--name", name, "--role", "box"]);
        p.tokens.insert(key, t.trim().to_owned());
    }
    p
}

/// A box reporting to `province` every second, `batch` rows at a time. Its slot comes every
/// 5 s with no chime, so two short items air on both outputs in each: 4 rows per 5 s.
fn district_box(province: &Daemon, batch: u32) -> Daemon {
    let slots = "[[slot]]\nname = \"test\"\ncron = \"*/5 * * * * *\"\nlength = \"5s\"\noutputs = [\"tower\", \"pa\"]\n";
    let extra = format!(
        "timezone = \"{}\"\n[report]\nurl = \"{}\"\ntoken = \"{}\"\ninterval = \"1s\"\nbatch = {batch}\n",
        common::evening_zone(),
        province.url("/api/v1/reports"),
        province.tokens["box"],
    );
    Daemon::start_with(slots, &extra)
}

/// Every row the province holds for `which` (`box=` value), all pages, in the order received.
fn reported(p: &Daemon, which: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor = String::new();
    loop {
        let v = p.get_json(
            &format!("/api/v1/airtime?box={which}&limit=1000{cursor}"),
            "auditor",
        );
        rows.extend(v["rows"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_i64() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return rows,
        }
    }
}

/// The box's own chain, from its signed export: (seq, hash) in order.
fn exported(d: &Daemon) -> Vec<(i64, String)> {
    d.export("")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("hash").is_some())
        .map(|v| {
            (
                v["seq"].as_i64().unwrap(),
                v["hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn seqs_and_hashes(rows: &[Value]) -> Vec<(i64, String)> {
    rows.iter()
        .map(|r| {
            (
                r["seq"].as_i64().unwrap(),
                r["hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn outbox_len(d: &Daemon) -> i64 {
    let db = rusqlite::Connection::open(d.data().join("hokrajai.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_row_reaches_the_province_exactly_once_through_outages_and_restarts() {
    let _one_at_a_time = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut prov = province();
    let mut boxd = district_box(&prov, 3);
    let items: Vec<i64> = [("float.wav", "ข่าวเช้า"), ("tone.ogg", "ข่าวเย็น")]
        .iter()
        .map(|(f, title)| {
            boxd.upload_approved(&fixture(f), &[("title", title), ("plays_per_day", "48")])
        })
        .collect();

    // Rows arrive, with the hashes of the box's own export.
    wait_for(
        Duration::from_secs(90),
        "the first rows at the province",
        &[&boxd, &prov],
        || (reported(&prov, BOX).len() >= 4).then_some(()),
    );
    let rows = reported(&prov, BOX);
    let chain = exported(&boxd);
    for (seq, hash) in seqs_and_hashes(&rows) {
        assert_eq!(chain[(seq - 1) as usize], (seq, hash.clone()), "seq {seq}");
    }
    assert!(rows.iter().all(|r| r["box"] == BOX), "{rows:#?}");
    assert!(items.iter().any(|id| rows[0]["announcement_id"] == *id));

    // The province goes away; the box keeps airing, and is itself killed half-way.
    prov.kill9();
    let before = exported(&boxd).len();
    wait_for(
        Duration::from_secs(40),
        "rows made while the province is down",
        &[&boxd, &prov],
        || (exported(&boxd).len() >= before + 4).then_some(()),
    );
    boxd.kill9();
    boxd.spawn();
    let queued = wait_for(
        Duration::from_secs(40),
        "more rows after the box's restart",
        &[&boxd, &prov],
        || {
            let n = exported(&boxd).len();
            (n >= before + 8).then_some(n)
        },
    );
    assert!(outbox_len(&boxd) > 0, "rows wait in the outbox");

    // The province comes back: the box catches up by itself (retry cap 5 s at interval 1 s).
    prov.spawn();
    wait_for(
        Duration::from_secs(30),
        "the backlog to arrive",
        &[&boxd, &prov],
        || (reported(&prov, BOX).len() >= queued).then_some(()),
    );

    // Stop airing, then every finished row is at the province once, seq 1..n, same hashes.
    for id in &items {
        let r = boxd.post(
            &format!("/api/v1/announcements/{id}/withdraw"),
            Some("admin"),
            json!({"reason": "end of test"}),
        );
        assert_eq!(r.status(), 200, "withdraw: {}", r.text().unwrap());
    }
    let (chain, rows) = wait_for(
        Duration::from_secs(40),
        "the box and province to agree",
        &[&boxd, &prov],
        || {
            let open = boxd.airtime().iter().any(|r| r["status"] == "playing");
            let chain = exported(&boxd);
            let rows = reported(&prov, BOX);
            (!open && rows.len() == chain.len() && outbox_len(&boxd) == 0).then_some((chain, rows))
        },
    );
    assert_eq!(
        seqs_and_hashes(&rows),
        chain,
        "exactly once, in order, unchanged"
    );
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=chain.len() as i64).collect::<Vec<_>>());
    // The box's reporter state says so, and the province's own log has none of it.
    let db = rusqlite::Connection::open(boxd.data().join("hokrajai.db")).unwrap();
    let (reported_rows, through, error): (i64, i64, Option<String>) = db
        .query_row(
            "SELECT reported_rows, reported_through, last_error FROM reporter",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(through, chain.len() as i64);
    assert!(reported_rows >= chain.len() as i64);
    assert_eq!(error, None, "the last success cleared the error");
    assert!(prov.airtime().is_empty());
    let boxes = prov.get_json("/api/v1/boxes", "auditor");
    assert_eq!(boxes["boxes"][0]["box"], BOX);
    assert_eq!(boxes["boxes"][0]["rows"], chain.len() as i64);
    assert!(boxes["boxes"][0]["last_report_at"].is_string());
    // While the province was down the box said why.
    assert!(
        boxd.log().contains("airtime report failed") || boxd.log().contains("will retry"),
        "no retry logged"
    );
}

/// `n` finished rows as a box's chain would hold them, from seq `from` after `prev`.
fn links(from: i64, n: i64, mut prev: String) -> Vec<Link> {
    (from..from + n)
        .map(|seq| {
            let at = format!("2026-11-23T23:{:02}:{:02}.000Z", seq / 60 % 60, seq % 60);
            let row = ChainRow {
                seq,
                id: seq,
                announcement_id: None,
                title: format!("ประกาศ {seq}"),
                sha256: "ab".repeat(32),
                output: if seq % 2 == 0 { "pa" } else { "tower" }.into(),
                slot: "morning".into(),
                scheduled_at: at.clone(),
                started_at: None,
                ended_at: Some(at.clone()),
                duration_ms: Some(0),
                status: "failed".into(),
                detail: "file missing".into(),
                finalized_at: at,
            };
            let l = chain::link(&prev, row).unwrap();
            prev = l.hash.clone();
            l
        })
        .collect()
}

/// POST `body` (already encoded) as `who` with `key`.
fn post_report(p: &Daemon, who: &str, key: Option<&str>, gzip: bool, body: Vec<u8>) -> Response {
    let mut r = p
        .http
        .post(p.url("/api/v1/reports"))
        .bearer_auth(&p.tokens[who])
        .header("content-type", "application/x-ndjson")
        .body(body);
    if gzip {
        r = r.header("content-encoding", "gzip");
    }
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    r.send().unwrap()
}

fn send(p: &Daemon, who: &str, ls: &[Link]) -> Response {
    let key = idempotency_key(BOX, ls[0].row.seq, ls[ls.len() - 1].row.seq);
    post_report(p, who, Some(&key), true, encode_batch(ls).unwrap())
}

fn plain(ls: &[Link]) -> Vec<u8> {
    ls.iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect::<String>()
        .into_bytes()
}

fn held(p: &Daemon) -> usize {
    reported(p, BOX).len()
}

#[test]
fn a_batch_sent_twice_or_overlapping_is_stored_once() {
    let p = province();
    let all = links(1, 8, GENESIS.to_owned());
    let r = send(&p, "box", &all[..3]);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"accepted": 3, "duplicates": 0, "last_seq": 3})
    );
    // The same key again (the answer was lost), then an overlapping batch.
    let r = send(&p, "box", &all[..3]);
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"accepted": 0, "duplicates": 3, "last_seq": 3})
    );
    let r = send(&p, "box", &all[1..5]);
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"accepted": 2, "duplicates": 2, "last_seq": 5})
    );
    // Uncompressed is taken too.
    let key = idempotency_key(BOX, 6, 8);
    let r = post_report(&p, "box", Some(&key), false, plain(&all[5..]));
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let rows = reported(&p, BOX);
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    for (row, l) in rows.iter().zip(&all) {
        assert_eq!(row["hash"], l.hash.as_str());
        assert_eq!(row["title"], l.row.title.as_str());
        assert_eq!(row["box"], BOX);
    }
    // Another box's rows are its own; `box=*` reads every box, and CSV names the box.
    let other = links(1, 2, GENESIS.to_owned());
    let key = idempotency_key("box-5013", 1, 2);
    let r = post_report(&p, "box2", Some(&key), true, encode_batch(&other).unwrap());
    assert_eq!(r.status(), 200);
    assert_eq!(reported(&p, "*").len(), 10);
    assert_eq!(reported(&p, "box-5013").len(), 2);
    let page = p.get_json("/api/v1/airtime?box=*&limit=4", "auditor");
    assert_eq!(page["rows"].as_array().unwrap().len(), 4);
    assert!(page["next_cursor"].is_i64());
    let csv = p
        .get(
            &format!("/api/v1/airtime?box={BOX}&format=csv&output=pa"),
            Some("auditor"),
        )
        .text()
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0]
            .trim_start_matches('\u{feff}')
            .starts_with("box,id,"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(",seq,") && lines[0].contains(",hash,"));
    assert_eq!(lines.len(), 1 + 4, "{csv}");
    assert!(lines[1].starts_with("box-5012,2,"), "{}", lines[1]);
    assert!(lines[1].contains(&all[1].hash));
    // The province's own log is unchanged.
    assert!(p.airtime().is_empty());
}

#[test]
fn the_province_refuses_what_does_not_follow_or_is_not_the_box_itself() {
    let p = province();
    let all = links(1, 6, GENESIS.to_owned());
    assert_eq!(send(&p, "box", &all[..3]).status(), 200);

    // A tampered line: its hash no longer follows. Nothing of the batch is stored.
    let mut bad = all[3..].to_vec();
    bad[1].row.detail = "aired fine".into();
    let r = send(&p, "box", &bad);
    assert_eq!(r.status(), 409);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"], "report_refused");
    assert!(e["message"].as_str().unwrap().contains("seq 5"), "{e}");
    assert_eq!(held(&p), 3);
    // A gap after what is held.
    let r = send(&p, "box", &all[4..]);
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("missing"));
    // A rewritten history: a row 4 that does not follow the held row 3.
    let forged = links(4, 1, "11".repeat(32));
    assert_eq!(send(&p, "box", &forged).status(), 409);
    assert_eq!(held(&p), 3);

    // Only as itself: a key naming another box, an approver's token, no or a wrong key.
    let key = idempotency_key("box-5013", 4, 6);
    let r = post_report(
        &p,
        "box",
        Some(&key),
        true,
        encode_batch(&all[3..]).unwrap(),
    );
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["error"], "not_this_box");
    let key = idempotency_key(BOX, 4, 6);
    for who in ["approver", "admin"] {
        let r = post_report(&p, who, Some(&key), true, encode_batch(&all[3..]).unwrap());
        assert_eq!(r.status(), 403, "{who}");
    }
    let r = post_report(&p, "box", None, true, encode_batch(&all[3..]).unwrap());
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().unwrap()["error"],
        "missing_idempotency_key"
    );
    let r = post_report(
        &p,
        "box",
        Some(&idempotency_key(BOX, 4, 5)),
        true,
        encode_batch(&all[3..]).unwrap(),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"], "key_mismatch");
    // A line that is not a row is named by its number.
    let mut body = plain(&all[3..4]);
    body.extend_from_slice(b"{\"seq\": 5, \"extra\": true}\n");
    let r = post_report(&p, "box", Some(&idempotency_key(BOX, 4, 5)), false, body);
    assert_eq!(r.status(), 400);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"], "bad_line");
    assert!(e["message"].as_str().unwrap().contains("line 2"), "{e}");
    // More rows than a batch may hold.
    let many = links(4, 5001, all[2].hash.clone());
    let r = send(&p, "box", &many);
    assert_eq!(r.status(), 413);
    assert_eq!(held(&p), 3);

    // A box token opens nothing else; whoami tells the box its name.
    assert_eq!(p.get("/api/v1/status", Some("box")).status(), 403);
    assert_eq!(p.get("/api/v1/airtime", Some("box")).status(), 403);
    assert_eq!(p.get("/api/v1/boxes", Some("box")).status(), 403);
    let me = p.get_json("/api/v1/whoami", "box");
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some(BOX), Some("box"))
    );
    assert_eq!(p.get("/api/v1/boxes", Some("uploader")).status(), 403);

    // The right rows go through after all that.
    assert_eq!(send(&p, "box", &all[3..]).status(), 200);
    assert_eq!(held(&p), 6);
}

/// Fill a stopped box's log with `n` finished rows (one transaction), all queued for reporting.
fn fill_log(d: &Daemon, n: i64) {
    let mut db = rusqlite::Connection::open(d.data().join("hokrajai.db")).unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO airtime (id, announcement_id, title, sha256, output, slot, scheduled_at, \
                 started_at, ended_at, duration_ms, status, detail, seq, finalized_at, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
            .unwrap();
        for l in links(1, n, GENESIS.to_owned()) {
            let r = &l.row;
            ins.execute(rusqlite::params![
                r.id,
                r.announcement_id,
                r.title,
                r.sha256,
                r.output,
                r.slot,
                r.scheduled_at,
                r.started_at,
                r.ended_at,
                r.duration_ms,
                r.status,
                r.detail,
                r.seq,
                r.finalized_at,
                l.prev_hash,
                l.hash
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

#[test]
fn a_box_back_after_days_offline_drains_fifty_thousand_rows_quickly() {
    const ROWS: i64 = 50_000;
    let _one_at_a_time = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = province();
    // Nothing airs on this box: only the backlog moves.
    let mut boxd = Daemon::start_with(
        "[[slot]]\nname = \"night\"\ncron = \"0 0 3 * * *\"\nlength = \"1m\"\noutputs = [\"tower\"]\n",
        &format!(
            "[report]\nurl = \"{}\"\ntoken = \"{}\"\ninterval = \"1s\"\n",
            p.url("/api/v1/reports"),
            p.tokens["box"]
        ),
    );
    boxd.stop();
    fill_log(&boxd, ROWS);
    assert_eq!(outbox_len(&boxd), ROWS);
    let t0 = Instant::now();
    boxd.spawn();
    wait_for(
        Duration::from_secs(300),
        "the backlog to drain",
        &[&boxd, &p],
        || (outbox_len(&boxd) == 0).then_some(()),
    );
    let took = t0.elapsed();
    let boxes = p.get_json("/api/v1/boxes", "auditor");
    assert_eq!(boxes["boxes"][0]["rows"], ROWS);
    assert_eq!(boxes["boxes"][0]["last_seq"], ROWS);
    let rate = ROWS as f64 / took.as_secs_f64();
    let mut out = std::io::stderr();
    let _ = writeln!(
        out,
        "drain: {ROWS} rows in {:.1} s ({rate:.0} rows/s, batches of 500, both daemons this build's profile)",
        took.as_secs_f64()
    );
    // Even a debug build on a small machine: well under the default one-minute interval per
    // 10,000 rows (a release build is several times faster).
    assert!(took < Duration::from_secs(240), "{took:?}");
}
