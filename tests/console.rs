//! The web console as the daemon serves it (issue #5): the page and its assets come out of the
//! binary with the right types and caching, nothing else can be reached through `/assets/`, and
//! the page names nothing outside the box. (What the page does is tested in a real browser:
//! tests/e2e.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Daemon;

/// One slot a day: these tests only read static files.
const SLOT: &str = "[[slot]]\nname = \"morning\"\ncron = \"0 0 6 * * *\"\nlength = \"30m\"\n";

struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A GET with the path sent exactly as written (an HTTP client would tidy `..` away).
fn raw_get(d: &Daemon, path: &str, extra: &str) -> Raw {
    let addr = d.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
    }
}

#[test]
fn the_console_page_and_its_assets_are_served_from_the_binary() {
    let d = Daemon::start(SLOT);

    let page = raw_get(&d, "/", "");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("<html lang=\"th\">"), "Thai by default");
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("default-src 'none'"), "CSP: {csp}");
    assert!(csp.contains("connect-src 'self'"), "CSP: {csp}");
    assert_eq!(page.header("cache-control"), Some("no-cache"));

    for (path, ty) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/i18n.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = raw_get(&d, path, "");
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        // Revalidation is cheap: the same ETag answers 304 with no body.
        let tag = r.header("etag").expect("an ETag").to_string();
        let again = raw_get(&d, path, &format!("If-None-Match: {tag}\r\n"));
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
    }
}

#[test]
fn only_the_embedded_files_can_be_fetched() {
    let d = Daemon::start(SLOT);
    for path in [
        "/assets/nope.js",
        "/assets/",
        "/assets/APP.JS",
        "/assets/app.js.map",
        "/assets/../Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/%2e%2e/%2e%2e/etc/passwd",
        "/assets/console/app.js",
        "/assets//etc/passwd",
        "/assets/index.html/../app.js/..",
    ] {
        let r = raw_get(&d, path, "");
        assert_eq!(r.status, 404, "{path}");
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", r.body));
        assert!(v["error"].is_string() && v["message"].is_string(), "{path}");
    }
}

#[test]
fn the_console_names_nothing_outside_the_box() {
    let d = Daemon::start(SLOT);
    for path in [
        "/",
        "/assets/app.js",
        "/assets/i18n.js",
        "/assets/app.css",
        "/assets/icon.svg",
    ] {
        let r = raw_get(&d, path, "");
        let outside: Vec<String> = ["http://", "https://", "//fonts.", "//cdn"]
            .iter()
            .flat_map(|p| r.body.match_indices(p))
            .map(|(i, _)| r.body[i..].chars().take(40).collect::<String>())
            .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(outside.is_empty(), "{path} names {outside:?}");
    }
}
