//! The province side of issue 3: `hokrajai keygen`, `hokrajai publish` from a real province
//! store, and the published folder served by a real nginx the way a district box fetches it
//! (verify against the trusted key, If-None-Match, Range).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::nginx::Nginx;
use common::{fixture, Daemon, BIN};
use hokrajai::sync::manifest::{self, ManifestError};
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_NONE_MATCH, RANGE};
use serde_json::Value;
use sha2::Digest;

/// A slot that will not fire during a test.
const QUIET_SLOT: &str = "[[slot]]\nname = \"night\"\ncron = \"0 0 3 1 1 *\"\nlength = \"10m\"\n";

/// `hokrajai keygen --out path`: (success, stdout, stderr).
fn keygen(path: &Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new key pair in `dir/name`; returns the public key as verify takes it.
fn new_key(dir: &Path, name: &str) -> (PathBuf, ed25519_dalek::VerifyingKey) {
    let path = dir.join(name);
    let (ok, stdout, stderr) = keygen(&path);
    assert!(ok, "keygen: {stderr}");
    let public = hokrajai::audit::parse_public_key(stdout.trim()).unwrap();
    (path, public)
}

/// A province: its daemon (store), two approved announcements and one pending.
struct Province {
    d: Daemon,
    approved: [i64; 2],
    pending: i64,
    out: PathBuf,
}

impl Province {
    fn new() -> Province {
        let d = Daemon::start(QUIET_SLOT);
        let a = d.upload_approved(
            &fixture("tone.mp3"),
            &[
                ("title", "ประชุมประจำเดือน"),
                ("agency", "สำนักงานจังหวัด"),
                ("plays_per_day", "2"),
            ],
        );
        let b = d.upload_approved(
            &fixture("tone.flac"),
            &[("title", "ฉีดวัคซีน"), ("priority", "high")],
        );
        let r = d.upload("uploader", &fixture("tone.ogg"), &[("title", "ยังไม่อนุมัติ")]);
        assert_eq!(r.status(), 201, "upload: {}", r.text().unwrap());
        let pending = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
        let out = d.dir.path().join("published");
        Province {
            d,
            approved: [a, b],
            pending,
            out,
        }
    }

    /// `hokrajai publish --key key --out <out> args...`: (success, stdout, stderr).
    fn publish(&self, key: &Path, args: &[&str]) -> (bool, String, String) {
        let mut all = vec![
            "publish",
            "--key",
            key.to_str().unwrap(),
            "--out",
            self.out.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        self.d.cli_result(&all)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("province.key");
    let (ok, stdout, stderr) = keygen(&path);
    assert!(ok, "{stderr}");
    let public = stdout.trim();
    assert!(manifest::is_sha256_hex(public), "64 hex digits: {public}");
    let seed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(seed.trim().len(), 64);
    assert_ne!(seed.trim(), public);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("province.key.pub"))
            .unwrap()
            .trim(),
        public
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let (ok, _, stderr) = keygen(&path);
    assert!(!ok, "a second keygen onto the same file must fail");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), seed, "untouched");
    assert_eq!(files_in(dir.path()), ["province.key", "province.key.pub"]);
}

#[test]
fn approved_announcements_are_published_signed_and_served_by_nginx() {
    let p = Province::new();
    let [a, b] = p.approved;
    let (key, public) = new_key(p.d.dir.path(), "province.key");

    let (ok, stdout, stderr) = p.publish(
        &key,
        &[
            "--publisher",
            "สำนักงานจังหวัดทดสอบ",
            &a.to_string(),
            &b.to_string(),
        ],
    );
    assert!(ok, "publish: {stderr}");
    assert!(stdout.contains("sequence 1"), "{stdout}");

    // The manifest and the audio named by its hash; nothing else (no temp files).
    let audio_a = std::fs::read(fixture("tone.mp3")).unwrap();
    let audio_b = std::fs::read(fixture("tone.flac")).unwrap();
    let mut expected = vec![
        "manifest.json".to_owned(),
        sha256_hex(&audio_a),
        sha256_hex(&audio_b),
    ];
    expected.sort();
    assert_eq!(files_in(&p.out), expected);

    // Served by nginx, fetched and verified as a district box would.
    let nginx = Nginx::serve(&p.out);
    let http = Client::new();
    let r = http.get(nginx.url("/manifest.json")).send().unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()[ETAG].to_str().unwrap().to_owned();
    let m = manifest::verify(&r.bytes().unwrap(), &[public]).unwrap();
    assert_eq!(m.sequence, 1);
    assert_eq!(m.publisher, "สำนักงานจังหวัดทดสอบ");
    assert!(m.withdrawn.is_empty());
    let ids: Vec<&str> = m.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [a.to_string(), b.to_string()]);
    let first = &m.items[0];
    assert_eq!(first.title, "ประชุมประจำเดือน");
    assert_eq!(first.agency, "สำนักงานจังหวัด");
    assert_eq!(first.plays_per_day, 2);
    assert_eq!(first.approved_by, "kanya");
    assert!(first.districts.is_empty() && first.outputs.is_empty());
    assert_eq!(m.items[1].priority, hokrajai::domain::Priority::High);
    for (item, audio) in m.items.iter().zip([&audio_a, &audio_b]) {
        assert_eq!(item.sha256, sha256_hex(audio));
        assert_eq!(item.size, audio.len() as u64);
        assert!(item.duration_ms > 0);
        let r = http
            .get(nginx.url(&format!("/{}", item.file)))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().unwrap()[..], &audio[..]);
    }

    // Unchanged since: 304, no body.
    let r = http
        .get(nginx.url("/manifest.json"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);

    // A download resumed part-way: 206 and exactly those bytes.
    let r = http
        .get(nginx.url(&format!("/{}", first.file)))
        .header(RANGE, "bytes=100-1099")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()[CONTENT_RANGE].to_str().unwrap(),
        format!("bytes 100-1099/{}", audio_a.len())
    );
    assert_eq!(&r.bytes().unwrap()[..], &audio_a[100..1100]);

    // Only approved announcements go out; the error names the id and its status.
    let (ok, _, stderr) = p.publish(&key, &[&p.pending.to_string()]);
    assert!(!ok, "publishing a pending announcement must fail");
    assert!(
        stderr.contains(&format!(
            "announcement {} is pending, not approved",
            p.pending
        )),
        "{stderr}"
    );

    // Withdrawing: the item moves to `withdrawn`, the sequence goes on, the ETag changes.
    let (ok, stdout, stderr) = p.publish(&key, &["--withdraw", &format!("{a}:ผิดวันที่")]);
    assert!(ok, "publish --withdraw: {stderr}");
    assert!(stdout.contains("sequence 2"), "{stdout}");
    let r = http
        .get(nginx.url("/manifest.json"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "a new manifest is not 'not modified'");
    assert_ne!(r.headers()[ETAG].to_str().unwrap(), etag);
    let m = manifest::verify(&r.bytes().unwrap(), &[public]).unwrap();
    assert_eq!(m.sequence, 2);
    assert_eq!(
        manifest::check_sequence(Some(1), m.sequence).unwrap(),
        manifest::SequenceStep::Newer
    );
    let ids: Vec<&str> = m.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [b.to_string()]);
    assert_eq!(m.withdrawn.len(), 1);
    assert_eq!(m.withdrawn[0].id, a.to_string());
    assert_eq!(m.withdrawn[0].reason, "ผิดวันที่");

    // Another key cannot publish over this folder without --force.
    let (other, _) = new_key(p.d.dir.path(), "other.key");
    let (ok, _, stderr) = p.publish(&other, &[&b.to_string()]);
    assert!(!ok);
    assert!(stderr.contains("does not verify with this key"), "{stderr}");
    assert!(nginx.error_log().lines().all(|l| !l.contains("[emerg]")));
}

#[test]
fn a_manifest_signed_by_another_key_is_refused() {
    let p = Province::new();
    let dir = p.d.dir.path();
    let (_, trusted) = new_key(dir, "province.key");
    let (impostor, impostor_public) = new_key(dir, "impostor.key");
    let (ok, _, stderr) = p.publish(&impostor, &[&p.approved[0].to_string()]);
    assert!(ok, "{stderr}");

    let nginx = Nginx::serve(&p.out);
    let bytes = Client::new()
        .get(nginx.url("/manifest.json"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let err = manifest::verify(&bytes, &[trusted]).unwrap_err();
    assert!(matches!(err, ManifestError::UntrustedKey(_)), "{err}");
    assert!(err.to_string().contains("does not trust"), "{err}");
    // The same bytes are fine for a box that trusts that key: the refusal is about the key.
    manifest::verify(&bytes, &[impostor_public]).unwrap();
}

#[test]
fn nginx_can_be_stopped_mid_download_and_started_again_on_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big"), &body).unwrap();
    let mut nginx = Nginx::serve_limited(dir.path(), Some(20_000));
    let port = nginx.port();
    let http = Client::new();
    let mut r = http.get(nginx.url("/big")).send().unwrap();
    assert_eq!(r.status(), 200);
    let mut got = vec![0u8; 10_000];
    std::io::Read::read_exact(&mut r, &mut got).unwrap();
    nginx.stop();
    let mut rest = Vec::new();
    assert!(
        std::io::Read::read_to_end(&mut r, &mut rest).is_err()
            || got.len() + rest.len() < body.len(),
        "the download must be cut"
    );
    nginx.set_limit_rate(None);
    nginx.start();
    assert_eq!(nginx.port(), port);
    let r = http
        .get(nginx.url("/big"))
        .header(RANGE, format!("bytes={}-", got.len()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    got.extend_from_slice(&r.bytes().unwrap());
    assert_eq!(got, body);
}
