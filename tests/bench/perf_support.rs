//! What the performance bench needs besides the figures themselves: the real `hokrajai` binary
//! started on 127.0.0.1:0 with a temp config, the peer programs (Debian packages, installed when
//! missing), audio generated with ffmpeg, /proc sampling of CPU and memory, a minimal HTTP/1.1
//! client with no runtime of its own, and an open-loop load generator.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hokrajai");

// ---------------------------------------------------------------------------------------------
// Peers: Debian packages

/// Make sure each package is installed (`dpkg -s`, else `apt-get install -y`). Returns, per
/// package, `Ok(())` or why it is not available, so that its column can say "n/a (why)".
pub fn ensure_packages(pkgs: &[&str]) -> BTreeMap<String, Result<(), String>> {
    let installed = |p: &str| {
        Command::new("dpkg")
            .args(["-s", p])
            .output()
            .map(|o| {
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout).contains("Status: install ok installed")
            })
            .unwrap_or(false)
    };
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        eprintln!(
            "perf: installing missing peer packages: {}",
            missing.join(" ")
        );
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
        };
        let mut ok = apt(&[&["install", "-y"][..], &missing].concat())
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            // The package lists may be stale or absent on a fresh machine.
            let _ = apt(&["update"]);
            ok = apt(&[&["install", "-y"][..], &missing].concat())
                .map(|o| o.status.success())
                .unwrap_or(false);
        }
        if !ok {
            // One at a time, so one unavailable package does not take the others with it.
            for p in &missing {
                let _ = apt(&["install", "-y", p]);
            }
        }
    }
    pkgs.iter()
        .map(|p| {
            let r = if installed(p) {
                Ok(())
            } else {
                Err(format!("package {p} not installable here"))
            };
            (p.to_string(), r)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running commands

/// Run a command to completion; Err with its stderr if it fails.
pub fn run(cmd: &mut Command) -> Result<std::process::Output, String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

/// Wall time, user and system CPU seconds and peak RSS of a child, measured by GNU time (so the
/// numbers are the kernel's rusage of exactly that process).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rusage {
    pub wall: f64,
    pub user: f64,
    pub sys: f64,
    pub max_rss_kb: u64,
}

impl Rusage {
    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// `/usr/bin/time -f ... -o FILE <argv>`; stdout is discarded, stderr kept for errors.
pub fn timed(argv: &[&str], tmp: &Path) -> Result<Rusage, String> {
    let out_file = tmp.join("rusage.txt");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %U %S %M", "-o"])
        .arg(&out_file)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    run(&mut cmd)?;
    parse_rusage(&out_file)
}

pub fn parse_rusage(file: &Path) -> Result<Rusage, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    // GNU time may put "Command exited with non-zero status" first; the numbers are last.
    let line = text.lines().last().unwrap_or("");
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    if v.len() != 4 {
        return Err(format!("cannot read GNU time output '{text}'"));
    }
    Ok(Rusage {
        wall: v[0],
        user: v[1],
        sys: v[2],
        max_rss_kb: v[3] as u64,
    })
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Clock ticks per second for /proc/PID/stat (almost always 100).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// One look at a process: CPU so far (user + system, all threads), memory, thread count and
/// context switches (summed over threads: each voluntary switch is a sleep, so their rate is
/// the number of wake-ups).
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    pub cpu_ticks: u64,
    pub rss_kb: u64,
    /// RSS split: private memory, and pages of mapped files (mostly the binary's own code).
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
    pub ctxt: u64,
}

fn status_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn proc_sample(pid: u32) -> Result<ProcSample, String> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("process {pid} is gone: {e}"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // stat(5): field 3 is state (index 0 here), 14 utime (index 11), 15 stime (index 12).
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let cpu_ticks = num(11) + num(12);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("process {pid} is gone: {e}"))?;
    let mut ctxt = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                ctxt += status_field(&s, "voluntary_ctxt_switches:")
                    + status_field(&s, "nonvoluntary_ctxt_switches:");
            }
        }
    }
    Ok(ProcSample {
        at,
        cpu_ticks,
        rss_kb: status_field(&status, "VmRSS:"),
        rss_anon_kb: status_field(&status, "RssAnon:"),
        rss_file_kb: status_field(&status, "RssFile:"),
        hwm_kb: status_field(&status, "VmHWM:"),
        threads: status_field(&status, "Threads:"),
        ctxt,
    })
}

/// CPU seconds, CPU % of one core and wake-ups per second between two samples.
pub fn cpu_between(a: &ProcSample, b: &ProcSample, tck: f64) -> (f64, f64, f64) {
    let secs = (b.at - a.at).as_secs_f64().max(1e-9);
    let cpu = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / tck;
    let wakeups = b.ctxt.saturating_sub(a.ctxt) as f64 / secs;
    (cpu, 100.0 * cpu / secs, wakeups)
}

// ---------------------------------------------------------------------------------------------
// The daemon

pub struct Daemon {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub base: String,
    pub child: Option<Child>,
    pub pid: u32,
    /// From just before spawn to the "listening on" line.
    pub spawned_at: Instant,
    pub listening_at: Instant,
}

/// A null output keeps real time (the daemon's own "null" kind).
pub fn write_config(dir: &Path, outputs: &[&str], extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("schedules")).expect("creating the schedules dir");
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nschedules_dir = \"schedules\"\n{extra}\n"
    );
    for o in outputs {
        text.push_str(&format!("\n[[output]]\nname = \"{o}\"\nkind = \"null\"\n"));
    }
    let path = dir.join("hokrajai.toml");
    std::fs::write(&path, text).expect("writing the config");
    path
}

pub fn write_slots(dir: &Path, slots: &str) {
    std::fs::create_dir_all(dir.join("schedules")).expect("creating the schedules dir");
    std::fs::write(dir.join("schedules/bench.toml"), slots).expect("writing the slot file");
}

/// `hokrajai token add`: the token is on stdout.
pub fn token(config: &Path, name: &str, role: &str) -> String {
    let out = run(Command::new(BIN)
        .args(["token", "add", "--name", name, "--role", role, "--config"])
        .arg(config))
    .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Daemon {
    /// Start `hokrajai serve --config FILE`; returns once it said where it listens.
    pub fn spawn(config: &Path) -> Daemon {
        let dir = config.parent().expect("config has a folder").to_path_buf();
        let spawned_at = Instant::now();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting hokrajai");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log_path = dir.join("daemon.log");
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send((addr, Instant::now()));
                }
                if let Some(l) = log.as_mut() {
                    let _ = writeln!(l, "{line}");
                }
            }
        });
        let (addr, listening_at) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "hokrajai did not start; log:\n{}",
                    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
                );
            }
        };
        let addr: SocketAddr = addr.parse().expect("listen address");
        let pid = child.id();
        Daemon {
            dir,
            config: config.to_path_buf(),
            addr,
            base: format!("http://{addr}"),
            child: Some(child),
            pid,
            spawned_at,
            listening_at,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn sample(&self) -> ProcSample {
        proc_sample(self.pid).unwrap_or_else(|e| panic!("{e}; log:\n{}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// SIGTERM, then wait (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("perf: hokrajai {} did not stop on SIGTERM; killing", c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// A child process that is killed (by its own pid) when dropped.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }
    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (for peers that cannot be given port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: one keep-alive connection, no runtime, no threads of its own, so
// that the load generator's own overhead is small and its timing honest.

pub struct RawHttp {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl RawHttp {
    pub fn new(addr: SocketAddr) -> Self {
        RawHttp {
            addr,
            stream: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    fn connect(&mut self) -> std::io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.stream = Some(s);
            self.buf.clear();
        }
        Ok(self.stream.as_mut().expect("just connected"))
    }

    /// GET `path`; returns the status and the body. On an IO error the connection is dropped
    /// (the next call reconnects).
    pub fn get(&mut self, path: &str, token: Option<&str>) -> std::io::Result<(u16, Vec<u8>)> {
        let r = self.get_inner(path, token);
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    fn get_inner(&mut self, path: &str, token: Option<&str>) -> std::io::Result<(u16, Vec<u8>)> {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}\r\n", self.addr);
        let s = self.connect()?;
        s.write_all(req.as_bytes())?;
        // Headers.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        self.buf.drain(..head_end);
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad response head: {head}")))?;
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let body = if let Some(len) = header("content-length") {
            let len: usize = len.parse().map_err(std::io::Error::other)?;
            while self.buf.len() < len {
                self.fill()?;
            }
            self.buf.drain(..len).collect()
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.fill()?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(std::io::Error::other)?;
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    self.fill()?;
                }
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            // Read to close.
            let mut rest = std::mem::take(&mut self.buf);
            if let Some(s) = self.stream.as_mut() {
                s.read_to_end(&mut rest)?;
            }
            self.stream = None;
            rest
        };
        if header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.stream = None;
        }
        Ok((status, body))
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let s = self
            .stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("not connected"))?;
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Open-loop load

#[derive(Debug, Default)]
pub struct LoadResult {
    pub planned: usize,
    pub ok: usize,
    pub errors: usize,
    /// Completion minus the planned send time (includes any wait behind a slow earlier request
    /// on the same connection: no coordinated omission).
    pub latency_us: Vec<u64>,
    /// Completion minus the actual send time.
    pub service_us: Vec<u64>,
    pub wall: Duration,
    pub first_error: Option<String>,
}

/// GET `path` at a fixed `rate` (requests per second) for `secs`, open loop: request `i` is due
/// at `start + i / rate` whatever happened to the earlier ones. Requests are dealt round-robin
/// to `conns` keep-alive connections, one thread each.
pub fn open_loop(
    addr: SocketAddr,
    path: &str,
    token: &str,
    rate: u32,
    secs: u32,
    conns: usize,
) -> LoadResult {
    let total = (rate * secs) as usize;
    let interval = Duration::from_secs(1) / rate;
    let start = Instant::now() + Duration::from_millis(50);
    let handles: Vec<_> = (0..conns)
        .map(|k| {
            let path = path.to_string();
            let token = token.to_string();
            std::thread::spawn(move || {
                let mut http = RawHttp::new(addr);
                let mut r = LoadResult::default();
                // Connect before the clock starts.
                let _ = http.connect();
                let mut i = k;
                while i < total {
                    let due = start + interval * i as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let sent = Instant::now();
                    match http.get(&path, Some(&token)) {
                        Ok((200, _)) => r.ok += 1,
                        Ok((code, body)) => {
                            r.errors += 1;
                            r.first_error.get_or_insert_with(|| {
                                format!("HTTP {code}: {}", String::from_utf8_lossy(&body))
                            });
                        }
                        Err(e) => {
                            r.errors += 1;
                            r.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                    let done = Instant::now();
                    r.latency_us.push((done - due).as_micros() as u64);
                    r.service_us.push((done - sent).as_micros() as u64);
                    i += conns;
                }
                r
            })
        })
        .collect();
    let mut all = LoadResult {
        planned: total,
        ..Default::default()
    };
    for h in handles {
        let r = h.join().expect("load thread");
        all.ok += r.ok;
        all.errors += r.errors;
        all.latency_us.extend(r.latency_us);
        all.service_us.extend(r.service_us);
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
    }
    all.wall = start.elapsed();
    all.latency_us.sort_unstable();
    all.service_us.sort_unstable();
    all
}

/// The `p`-th percentile (0–100) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A one-line histogram of latencies in milliseconds.
pub fn histogram(sorted_us: &[u64]) -> String {
    let edges_ms = [1, 2, 5, 10, 20, 50, 100];
    let mut out = Vec::new();
    let mut lo = 0u64;
    for e in edges_ms {
        let n = sorted_us
            .iter()
            .filter(|&&v| v >= lo * 1000 && v < e * 1000)
            .count();
        out.push(format!("{lo}-{e}ms:{n}"));
        lo = e;
    }
    let n = sorted_us.iter().filter(|&&v| v >= lo * 1000).count();
    out.push(format!(">={lo}ms:{n}"));
    out.join(" ")
}

/// Median of a few measurements.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Sleep until `at` (no-op if past).
pub fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}
