//! The district side of issue 3's content link, end to end: a province (a real hokrajai with its
//! own store) publishes signed manifests into a folder served by a real nginx; a district box
//! (another real hokrajai) pulls them, checks them, airs what they hold and refuses what it must.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::{fixture, tone_wav, Daemon};
use serde_json::Value;

/// A slot that will not fire during a test.
const QUIET_SLOT: &str = "[[slot]]\nname = \"night\"\ncron = \"0 0 3 1 1 *\"\nlength = \"10m\"\n";

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A province daemon, its signing key and the folder nginx serves.
struct Province {
    d: Daemon,
    key: PathBuf,
    public: String,
    out: PathBuf,
    nginx: Nginx,
}

impl Province {
    fn new(limit_rate: Option<u64>) -> Province {
        let d = Daemon::start(QUIET_SLOT);
        let key = d.dir.path().join("province.key");
        let public = keygen(&key);
        let out = d.dir.path().join("published");
        std::fs::create_dir_all(&out).unwrap();
        let nginx = Nginx::serve_limited(&out, limit_rate);
        Province {
            d,
            key,
            public,
            out,
            nginx,
        }
    }

    fn publish(&self, args: &[&str]) -> String {
        let mut all = vec![
            "publish",
            "--key",
            self.key.to_str().unwrap(),
            "--out",
            self.out.to_str().unwrap(),
            "--publisher",
            "สำนักงานประชาสัมพันธ์จังหวัดทดสอบ",
        ];
        all.extend_from_slice(args);
        self.d.cli(&all)
    }

    /// The config a district box needs to pull from this province.
    fn box_config(&self) -> String {
        format!(
            "[district]\ncode = \"5012\"\nname = \"อำเภอทดสอบ\"\n\n[[upstream]]\nname = \"province\"\n\
             manifest_url = \"{}\"\nkeys = [\"{}\"]\npoll = \"1s\"\n",
            self.nginx.url("/manifest.json"),
            self.public
        )
    }
}

/// `hokrajai keygen --out path`; returns the public key.
fn keygen(path: &Path) -> String {
    let out = std::process::Command::new(common::BIN)
        .args(["keygen", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn link(d: &Daemon) -> Value {
    d.get_json("/api/v1/link", "admin")
}

fn upstream(d: &Daemon) -> Value {
    link(d)["upstreams"][0].clone()
}

/// The box's announcements that came from the province, by title.
fn from_province(d: &Daemon) -> Vec<Value> {
    let v = d.get_json("/api/v1/announcements", "admin");
    let list = v["announcements"]
        .as_array()
        .or(v.as_array())
        .cloned()
        .unwrap_or_default();
    list.into_iter()
        .filter(|a| a["source"] == "province")
        .collect()
}

fn by_title(d: &Daemon, title: &str) -> Option<Value> {
    from_province(d).into_iter().find(|a| a["title"] == title)
}

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn published_content_is_pulled_aired_and_stopped_on_air_when_withdrawn() {
    let p = Province::new(None);
    let long = p.d.dir.path().join("long.wav");
    tone_wav(&long, 20.0, 0.3);
    let a = p.d.upload_approved(
        &long,
        &[
            ("title", "จังหวัด: ประกาศยาว"),
            ("agency", "ปชส.จังหวัด"),
            ("plays_per_day", "5"),
        ],
    );
    let other =
        p.d.upload_approved(&fixture("tone.mp3"), &[("title", "จังหวัด: อำเภออื่น")]);
    let out = p.publish(&[&a.to_string()]);
    assert!(out.contains("sequence 1"), "{out}");
    // Sequence 2: the second item, for another district only.
    let out = p.publish(&["--district", "9999", &other.to_string()]);
    assert!(out.contains("sequence 2"), "{out}");

    let b = Daemon::start_with(&common::every_seconds_slot(30, 28), &p.box_config());
    let item = wait_for(
        "the province item on the box",
        Duration::from_secs(30),
        || by_title(&b, "จังหวัด: ประกาศยาว"),
    );
    assert_eq!(item["status"], "approved", "{item}");
    assert_eq!(item["decided_by"], "province: kanya", "{item}");
    assert_eq!(item["agency"], "ปชส.จังหวัด");
    assert_eq!(item["source_ref"], format!("province/{a}"));
    assert_eq!(item["sha256"], sha256_file(&long));
    assert!(
        by_title(&b, "จังหวัด: อำเภออื่น").is_none(),
        "another district's item stays out"
    );
    let u = upstream(&b);
    assert_eq!(u["sequence"], 2, "{u}");
    assert!(
        u["last_success_at"].is_string() && u["last_error"].is_null(),
        "{u}"
    );
    assert!(link(&b)["last_pull_at"].is_string());

    // It airs in the next slot; withdrawn by the province while on air, it stops.
    let id = item["id"].as_i64().unwrap();
    b.wait_airtime(Duration::from_secs(45), |rows| {
        rows.iter()
            .any(|r| r["announcement_id"] == id && r["status"] == "playing")
    });
    let out = p.publish(&["--withdraw", &format!("{a}:ยกเลิกโดยจังหวัด")]);
    assert!(out.contains("sequence 3"), "{out}");
    let rows = b.wait_airtime(Duration::from_secs(15), |rows| {
        rows.iter().any(|r| {
            r["announcement_id"] == id && r["output"] == "tower" && r["status"] == "interrupted"
        })
    });
    let cut = rows
        .iter()
        .find(|r| r["announcement_id"] == id && r["output"] == "tower")
        .unwrap();
    assert!(
        cut["detail"].as_str().unwrap().contains("ยกเลิกโดยจังหวัด"),
        "the log says why: {cut}"
    );
    assert!(
        cut["duration_ms"].as_u64().unwrap() < 19_000,
        "cut short: {cut}"
    );
    let item = by_title(&b, "จังหวัด: ประกาศยาว").unwrap();
    assert_eq!(item["status"], "withdrawn");
    let hist = b.get_json(&format!("/api/v1/announcements/{id}"), "admin");
    assert!(hist.to_string().contains("province:province"), "{hist}");
}

#[test]
fn tampered_audio_bad_signatures_and_replayed_manifests_are_refused() {
    let p = Province::new(None);
    let a =
        p.d.upload_approved(&fixture("tone.mp3"), &[("title", "จังหวัด: หนึ่ง")]);
    let c =
        p.d.upload_approved(&fixture("tone.flac"), &[("title", "จังหวัด: สอง")]);
    p.publish(&[&a.to_string()]);
    let b = Daemon::start_with(QUIET_SLOT, &p.box_config());
    wait_for("item one", Duration::from_secs(30), || {
        by_title(&b, "จังหวัด: หนึ่ง")
    });
    let seq1 = std::fs::read(p.out.join("manifest.json")).unwrap();

    // A file changed on the server after signing: refused, deleted, item not made eligible.
    p.publish(&[&c.to_string()]);
    let sha_c = sha256_file(&fixture("tone.flac"));
    let served = p.out.join(&sha_c);
    let mut bytes = std::fs::read(&served).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&served, &bytes).unwrap();
    let err = wait_for("the tampered file refused", Duration::from_secs(30), || {
        let u = upstream(&b);
        u["last_error"]
            .as_str()
            .filter(|e| e.contains("SHA-256"))
            .map(str::to_string)
    });
    assert!(err.contains(&sha_c), "{err}");
    // The status (and so the console) shows the last pull and the problem.
    let st = b.get_json("/api/v1/status", "uploader");
    assert!(st["sync"]["last_pull_at"].is_string(), "{st}");
    assert!(
        st["sync"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("SHA-256"),
        "{st}"
    );
    assert!(by_title(&b, "จังหวัด: สอง").is_none(), "not eligible");
    assert_eq!(
        upstream(&b)["sequence"],
        1,
        "the manifest is not applied until all is in place"
    );
    assert!(!b.data().join("audio").join(&sha_c).exists());
    // Put right on the server: the next poll takes it.
    std::fs::copy(fixture("tone.flac"), &served).unwrap();
    wait_for("item two after the fix", Duration::from_secs(30), || {
        by_title(&b, "จังหวัด: สอง")
    });
    assert_eq!(upstream(&b)["sequence"], 2);
    let seq2 = std::fs::read(p.out.join("manifest.json")).unwrap();

    // Signed by a key the box does not trust: refused whole.
    let rogue = p.d.dir.path().join("rogue.key");
    keygen(&rogue);
    let rogue_out = p.d.dir.path().join("rogue");
    p.d.cli(&[
        "publish",
        "--key",
        rogue.to_str().unwrap(),
        "--out",
        rogue_out.to_str().unwrap(),
        "--withdraw",
        &a.to_string(),
        &c.to_string(),
    ]);
    std::fs::copy(rogue_out.join("manifest.json"), p.out.join("manifest.json")).unwrap();
    wait_for(
        "the rogue manifest refused",
        Duration::from_secs(30),
        || {
            upstream(&b)["last_error"]
                .as_str()
                .filter(|e| e.contains("does not trust"))
                .map(|_| ())
        },
    );
    assert_eq!(by_title(&b, "จังหวัด: หนึ่ง").unwrap()["status"], "approved");

    // A signed manifest with a tampered body: the signature no longer fits.
    let text = String::from_utf8(seq2.clone()).unwrap();
    let forged = text.replace("จังหวัด: สอง", "ข่าวลือ");
    assert_ne!(forged, text);
    std::fs::write(p.out.join("manifest.json"), forged).unwrap();
    wait_for(
        "the forged manifest refused",
        Duration::from_secs(30),
        || {
            upstream(&b)["last_error"]
                .as_str()
                .filter(|e| e.contains("signature"))
                .map(|_| ())
        },
    );
    assert!(from_province(&b).iter().all(|x| x["title"] != "ข่าวลือ"));

    // Withdrawn in sequence 3; then the old sequence 1 served again (a replay): refused, and
    // the withdrawal stands.
    std::fs::write(p.out.join("manifest.json"), &seq2).unwrap();
    p.publish(&["--withdraw", &format!("{a}:ข้อมูลผิด")]);
    wait_for("item one withdrawn", Duration::from_secs(30), || {
        by_title(&b, "จังหวัด: หนึ่ง").filter(|x| x["status"] == "withdrawn")
    });
    std::fs::write(p.out.join("manifest.json"), &seq1).unwrap();
    wait_for("the replay refused", Duration::from_secs(30), || {
        upstream(&b)["last_error"]
            .as_str()
            .filter(|e| e.contains("sequence"))
            .map(|_| ())
    });
    assert_eq!(upstream(&b)["sequence"], 3);
    assert_eq!(by_title(&b, "จังหวัด: หนึ่ง").unwrap()["status"], "withdrawn");
    assert_eq!(by_title(&b, "จังหวัด: สอง").unwrap()["status"], "approved");
}

#[test]
fn a_download_cut_mid_way_resumes_where_it_stopped() {
    // 30 s of 44.1 kHz stereo WAV (~5.3 MB) at 400 kB/s: ~13 s to download whole.
    let mut p = Province::new(Some(400_000));
    let long = p.d.dir.path().join("long.wav");
    tone_wav(&long, 30.0, 0.3);
    let size = std::fs::metadata(&long).unwrap().len();
    let a = p.d.upload_approved(&long, &[("title", "จังหวัด: ไฟล์ใหญ่")]);
    p.publish(&[&a.to_string()]);
    let sha = sha256_file(&long);

    let b = Daemon::start_with(QUIET_SLOT, &p.box_config());
    let part = b.data().join("incoming").join(format!("{sha}.part"));
    wait_for("part of the download", Duration::from_secs(30), || {
        std::fs::metadata(&part)
            .ok()
            .filter(|m| m.len() > 200_000)
            .map(|_| ())
    });
    // The link drops.
    p.nginx.stop();
    let err = wait_for("the cut noticed", Duration::from_secs(90), || {
        upstream(&b)["last_error"].as_str().map(str::to_string)
    });
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(
        kept > 0 && kept < size,
        "partial file kept: {kept} of {size} ({err})"
    );
    assert!(by_title(&b, "จังหวัด: ไฟล์ใหญ่").is_none());

    // Back, at full speed: the box asks only for the rest.
    p.nginx.set_limit_rate(None);
    p.nginx.start();
    let item = wait_for("the item after resuming", Duration::from_secs(60), || {
        by_title(&b, "จังหวัด: ไฟล์ใหญ่")
    });
    assert_eq!(item["size_bytes"], size);
    assert!(!part.exists(), "the partial file became the audio");
    assert_eq!(sha256_file(&b.data().join("audio").join(&sha)), sha);
    let log = p.nginx.access_log();
    assert!(
        log.lines().any(|l| l.contains(&sha) && l.contains(" 206 ")),
        "a Range request answered 206 Partial Content:\n{log}"
    );
    assert!(upstream(&b)["last_error"].is_null());
}

/// The whole loop of issue 3 with two real daemons: the province publishes, the box pulls and
/// airs, the box reports, and the province's own airtime query shows the airing under the box.
#[test]
fn publish_pull_air_report_and_the_province_sees_it_aired() {
    let p = Province::new(None);
    let a = p.d.upload_approved(
        &fixture("tone.mp3"),
        &[("title", "จังหวัด: วงจรครบ"), ("plays_per_day", "48")],
    );
    p.publish(&[&a.to_string()]);
    let box_token =
        p.d.cli(&["token", "add", "--name", "box-5012", "--role", "box"]);
    let report = format!(
        "\n[report]\nurl = \"{}\"\ntoken = \"{}\"\ninterval = \"1s\"\n",
        p.d.url("/api/v1/reports"),
        box_token.trim()
    );
    let b = Daemon::start_with(
        &common::every_seconds_slot(10, 8),
        &(p.box_config() + &report),
    );
    let item = wait_for("the item on the box", Duration::from_secs(30), || {
        by_title(&b, "จังหวัด: วงจรครบ")
    });
    b.wait_airtime(Duration::from_secs(30), |rows| {
        rows.iter()
            .any(|r| r["announcement_id"] == item["id"] && r["status"] == "completed")
    });
    let sha = item["sha256"].as_str().unwrap().to_string();
    let rows = wait_for(
        "the airing reported to the province",
        Duration::from_secs(60),
        || {
            let v =
                p.d.get_json("/api/v1/airtime?box=box-5012&limit=1000", "auditor");
            let rows = v["rows"].as_array().cloned().unwrap_or_default();
            rows.iter()
                .any(|r| {
                    r["title"] == "จังหวัด: วงจรครบ"
                        && r["status"] == "completed"
                        && r["sha256"] == sha.as_str()
                })
                .then_some(rows)
        },
    );
    assert!(rows.iter().all(|r| r["box"] == "box-5012"), "{rows:?}");
    let boxes = p.d.get_json("/api/v1/boxes", "auditor");
    assert!(boxes.to_string().contains("box-5012"), "{boxes}");
    let l = link(&b);
    assert!(
        l["report"]["state"]["reported_rows"].as_u64().unwrap() >= 1,
        "{l}"
    );
}
