//! A real nginx (Debian's package) serving a folder on 127.0.0.1, as the province's web server
//! in the publish and pull tests: static files with ETag, If-None-Match and Range as nginx does
//! them by default, and an optional rate limit so a test can cut a download mid-way (`stop`,
//! then `start` again on the same port).
//!
//! Everything nginx writes (config, pid, logs, temp paths) lives in the harness's own temp dir,
//! so it runs the same as root or not. `master_process off`: one process, so `stop` (SIGKILL)
//! leaves no worker behind holding the port.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts it.
pub const NGINX_BIN: &str = "/usr/sbin/nginx";

pub struct Nginx {
    dir: tempfile::TempDir,
    root: PathBuf,
    port: u16,
    limit_rate: Option<u64>,
    child: Option<Child>,
}

/// The nginx binary: `HOKRAJAI_NGINX`, Debian's path, or `nginx` on PATH. Panics, saying how to
/// get it, if there is none.
pub fn nginx_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOKRAJAI_NGINX") {
        return PathBuf::from(p);
    }
    let debian = Path::new(NGINX_BIN);
    if debian.is_file() {
        return debian.to_path_buf();
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    panic!(
        "nginx is not installed (looked for {NGINX_BIN} and nginx on PATH). These tests serve the \
         published folder with a real nginx: run `bash .ci/run` (CI installs Debian's nginx), \
         or `apt-get install -y nginx`"
    );
}

impl Nginx {
    /// Serve `root` on a free port of 127.0.0.1.
    pub fn serve(root: &Path) -> Nginx {
        Nginx::serve_limited(root, None)
    }

    /// Serve `root`, sending each response at most `bytes_per_sec` (nginx `limit_rate`).
    pub fn serve_limited(root: &Path, bytes_per_sec: Option<u64>) -> Nginx {
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("nginx root {}: {e}", root.display()));
        let mut n = Nginx {
            dir: tempfile::tempdir().unwrap(),
            root,
            port: 0,
            limit_rate: bytes_per_sec,
            child: None,
        };
        // The port is free when asked for, but another test may take it before nginx binds it:
        // then try another.
        for attempt in 0.. {
            n.port = free_port();
            match n.try_start() {
                Ok(()) => return n,
                Err(e) if attempt < 5 && e.contains("in use") => continue,
                Err(e) => panic!("nginx did not start: {e}"),
            }
        }
        unreachable!()
    }

    /// Start again (after `stop`) on the same port and folder, with the current rate limit.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "nginx is already running");
        // The old socket is gone once the process is; retry briefly if the kernel lags.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_start() {
                Ok(()) => return,
                Err(e) if e.contains("in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("nginx did not start again on port {}: {e}", self.port),
            }
        }
    }

    /// Kill nginx (SIGKILL): connections in flight are cut, as when a server dies.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The rate limit for the next `start` (None: unlimited).
    pub fn set_limit_rate(&mut self, bytes_per_sec: Option<u64>) {
        self.limit_rate = bytes_per_sec;
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `path` (starting with '/') on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    fn try_start(&mut self) -> Result<(), String> {
        let bin = nginx_bin();
        let conf = self.dir.path().join("nginx.conf");
        std::fs::write(&conf, self.config(&bin)).unwrap();
        let _ = std::fs::remove_file(self.dir.path().join("error.log"));
        let stderr = std::fs::File::create(self.dir.path().join("stderr.log")).unwrap();
        let mut child = Command::new(&bin)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-e")
            .arg(self.dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let stderr =
                    std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
                return Err(format!(
                    "nginx exited ({status}):\n{stderr}\n{}",
                    self.error_log()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not listening on {addr} after 15 s:\n{}",
                    self.error_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn config(&self, bin: &Path) -> String {
        let dir = self.dir.path().display().to_string();
        // Every temp path nginx would otherwise create under /var/lib/nginx (refused to a
        // non-root user), but only for modules this build has: an unknown directive is fatal.
        let built = Command::new(bin)
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        let mut temp_paths = format!("    client_body_temp_path \"{dir}/client_body\";\n");
        for module in ["proxy", "fastcgi", "uwsgi", "scgi"] {
            if !built.contains(&format!("--without-http_{module}_module")) {
                temp_paths += &format!("    {module}_temp_path \"{dir}/{module}\";\n");
            }
        }
        let limit = self
            .limit_rate
            .map(|r| format!("limit_rate {r};"))
            .unwrap_or_default();
        format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid "{dir}/nginx.pid";
error_log "{dir}/error.log" info;
events {{
    worker_connections 64;
}}
http {{
    access_log "{dir}/access.log";
{temp_paths}    types {{
        application/json json;
    }}
    default_type application/octet-stream;
    sendfile on;
    etag on;
    server_tokens off;
    keepalive_timeout 5s;
    server {{
        listen 127.0.0.1:{port};
        root "{root}";
        location / {{
            {limit}
        }}
    }}
}}
"#,
            port = self.port,
            root = self.root.display(),
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
