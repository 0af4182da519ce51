//! Shared helpers for the integration tests: run the real `hokrajai` binary on 127.0.0.1:0 with a
//! real SQLite file in a temp dir, outputs that keep real time (wav and null), and tokens made by
//! the real `hokrajai token add`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client, Response};
use serde_json::Value;

pub mod nginx;

pub const BIN: &str = env!("CARGO_BIN_EXE_hokrajai");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A 16-bit mono 48 kHz WAV of `secs` seconds of a 440 Hz tone at amplitude `amp`.
pub fn tone_wav(path: &Path, secs: f32, amp: f32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (secs * 48_000.0) as usize;
    for i in 0..n {
        let v = (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * amp;
        w.write_sample((v * i16::MAX as f32) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// A slot that starts every `every` seconds (on multiples of it) and lasts `length` seconds, on
/// both outputs, with the shipped chime.
pub fn every_seconds_slot(every: u32, length: u32) -> String {
    format!(
        "[[slot]]\nname = \"test\"\ncron = \"*/{every} * * * * *\"\nlength = \"{length}s\"\noutputs = [\"tower\", \"pa\"]\nchime = \"chime.wav\"\n"
    )
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub base: String,
    pub tokens: HashMap<&'static str, String>,
    child: Option<Child>,
    pub http: Client,
}

impl Daemon {
    /// Write a config (tower: wav file, pa: null; pause 0.5 s) plus `slots` as the only slot file,
    /// make one token per role (and a second uploader and approver), start the daemon.
    pub fn start(slots: &str) -> Daemon {
        Self::start_with(slots, "")
    }

    pub fn start_with(slots: &str, extra_config: &str) -> Daemon {
        // Slots every few seconds, all day: the planner spreads an item's plays per day over the
        // day's slots, so just after local midnight an item that has aired once is *ahead* of
        // its spread and waits half an hour. Tests that count on repeated airings would then fail
        // between 00:00 and 00:30 local time; they run in a zone where it is evening instead.
        // (Tests that write Bangkok clock times into their crons keep Bangkok.)
        let every_few_seconds = slots
            .lines()
            .filter(|l| l.trim_start().starts_with("cron"))
            .all(|l| l.trim_end().ends_with("* * * * *\""));
        let zone = if every_few_seconds && !extra_config.contains("timezone") {
            format!("timezone = \"{}\"\n", evening_zone())
        } else {
            String::new()
        };
        let extra_config = format!("{zone}{extra_config}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("schedules")).unwrap();
        std::fs::write(dir.path().join("schedules/test.toml"), slots).unwrap();
        let config = dir.path().join("hokrajai.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nschedules_dir = \"schedules\"\npause = \"1s\"\n{extra_config}\n\
                 [[output]]\nname = \"tower\"\nkind = \"wav\"\ndevice = \"tower.wav\"\n\n\
                 [[output]]\nname = \"pa\"\nkind = \"null\"\n"
            ),
        )
        .unwrap();
        let mut d = Daemon {
            dir,
            config,
            base: String::new(),
            tokens: HashMap::new(),
            child: None,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        for (key, name, role) in [
            ("uploader", "somchai", "uploader"),
            ("uploader2", "malee", "uploader"),
            ("approver", "kanya", "approver"),
            ("auditor", "prasit", "auditor"),
            ("admin", "wichai", "admin"),
        ] {
            let t = d.cli(&["token", "add", "--name", name, "--role", role]);
            d.tokens.insert(key, t.trim().to_string());
        }
        d.spawn();
        d
    }

    /// Run a CLI command against this daemon's config; returns stdout, panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hokrajai {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn spawn(&mut self) {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,hokrajai=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log_path = self.dir.path().join("daemon.log");
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("daemon did not start; log:\n{}", self.log()));
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to close anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("daemon did not stop on SIGTERM; log:\n{}", self.log());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str, who: Option<&str>) -> Response {
        let mut r = self.http.get(self.url(path));
        if let Some(w) = who {
            r = r.bearer_auth(&self.tokens[w]);
        }
        r.send().unwrap()
    }

    pub fn get_json(&self, path: &str, who: &str) -> Value {
        let r = self.get(path, Some(who));
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().unwrap()
    }

    pub fn post(&self, path: &str, who: Option<&str>, body: Value) -> Response {
        let mut r = self.http.post(self.url(path)).json(&body);
        if let Some(w) = who {
            r = r.bearer_auth(&self.tokens[w]);
        }
        r.send().unwrap()
    }

    /// Upload `file` with `fields` as `who`; returns the response.
    pub fn upload(&self, who: &str, file: &Path, fields: &[(&str, &str)]) -> Response {
        let mut form = multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        let bytes = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        form = form.part("audio", multipart::Part::bytes(bytes).file_name(name));
        self.http
            .post(self.url("/api/v1/announcements"))
            .bearer_auth(&self.tokens[who])
            .multipart(form)
            .send()
            .unwrap()
    }

    /// Upload as the uploader and approve as the approver; returns the announcement id.
    pub fn upload_approved(&self, file: &Path, fields: &[(&str, &str)]) -> i64 {
        let r = self.upload("uploader", file, fields);
        assert_eq!(r.status(), 201, "upload: {}", r.text().unwrap());
        let id = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
        let r = self.post(
            &format!("/api/v1/announcements/{id}/approve"),
            Some("approver"),
            serde_json::json!({}),
        );
        assert_eq!(r.status(), 200, "approve: {}", r.text().unwrap());
        id
    }

    /// Every airtime row (all pages).
    pub fn airtime(&self) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut cursor = String::new();
        loop {
            let v = self.get_json(&format!("/api/v1/airtime?limit=1000{cursor}"), "auditor");
            rows.extend(v["rows"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_i64() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return rows,
            }
        }
    }

    /// Poll the airtime log until `pred` holds or `timeout` passes.
    pub fn wait_airtime(&self, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.airtime();
            if pred(&rows) {
                return rows;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting on the airtime log; rows: {rows:#?}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Rows of `rows` with this status.
pub fn with_status<'a>(rows: &'a [Value], status: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["status"] == status).collect()
}

// ---- helpers for the trust and fault tests (issue #4) ----

impl Daemon {
    /// Run a CLI command against this daemon's config, success or not: (success, stdout, stderr).
    pub fn cli_result(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Make a token with `role` and revoke it at once; returns its text (now useless).
    pub fn revoked_token(&self, role: &str) -> String {
        let token = self
            .cli(&["token", "add", "--name", "revoked-one", "--role", role])
            .trim()
            .to_string();
        let list = self.cli(&["token", "list"]);
        let id = list
            .lines()
            .find(|l| l.contains("revoked-one") && l.contains("active"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_string();
        self.cli(&["token", "revoke", &id]);
        token
    }

    /// The box's public key, as `hokrajai audit pubkey` prints it.
    pub fn pubkey(&self) -> String {
        self.cli(&["audit", "pubkey"]).trim().to_string()
    }

    /// The whole airtime export, as an auditor.
    pub fn export(&self, query: &str) -> String {
        let r = self.get(&format!("/api/v1/airtime/export{query}"), Some("auditor"));
        assert_eq!(r.status(), 200, "export");
        r.text().unwrap()
    }
}

/// A blocking HTTP client whose connections come from `local` (on Linux every 127.x.y.z is a
/// local address), to act as another machine on the office network.
pub fn client_from(local: std::net::IpAddr) -> Client {
    Client::builder()
        .local_address(local)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A multipart form (text `fields`, then `file` as `audio`) as one body: (content type, bytes).
/// reqwest's blocking client streams a `multipart::Form`, and when the server answers before
/// reading it all (a refusal: 403, 503, 507) the send fails on the client's side instead of
/// showing the status; a body sent whole does not.
pub fn multipart_whole(fields: &[(&str, &str)], file: &Path) -> (String, Vec<u8>) {
    let boundary = "hokrajai-test-boundary-7d1c";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .into_bytes(),
        );
    }
    let name = file.file_name().unwrap().to_string_lossy();
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes(),
    );
    body.extend(std::fs::read(file).unwrap());
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Daemon {
    /// [`Daemon::upload`] with the body sent whole (see [`multipart_whole`]): for uploads that
    /// may be refused before they are read.
    pub fn upload_whole(&self, who: &str, file: &Path, fields: &[(&str, &str)]) -> Response {
        let (content_type, body) = multipart_whole(fields, file);
        self.http
            .post(self.url("/api/v1/announcements"))
            .bearer_auth(&self.tokens[who])
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    }
}

/// An IANA zone in which it is now about 18:00, so an item with 48 plays a day is far behind
/// its spread over the day and airs in every slot (the planner spreads plays evenly).
pub fn evening_zone() -> String {
    use chrono::Timelike;
    let h = chrono::Utc::now().hour() as i32;
    let mut offset = (18 - h).rem_euclid(24);
    if offset > 14 {
        offset -= 24;
    }
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"), // POSIX sign: GMT-7 is UTC+7
        o => format!("Etc/GMT+{}", -o),
    }
}
