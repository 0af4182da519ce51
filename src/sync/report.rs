//! Reporting airtime rows to the province from the outbox (district side).
//!
//! The outbox is filled by the database itself (a trigger queues each row in the transaction
//! that makes it final), so this task only has to empty it: the oldest rows, in chain order, as
//! one batch of JSON lines (each line a [`Link`] exactly as stored, so the province can check
//! every hash), gzip-compressed, `POST`ed to the province with an idempotency key
//! `<box>:<first seq>-<last seq>`. Rows leave the outbox only once the province has answered
//! 2xx, and the next batch goes at once: a box that was offline for days catches up at the
//! speed of its link, not of the report interval.
//!
//! **Who the box is.** The province names a box by its token: `POST /api/v1/reports` stores the
//! rows under the token's name and refuses a key naming another box. The box learns that name
//! once from the province's `GET /api/v1/whoami` (same token) and keeps it while the process
//! runs; a 401/403 forgets it, so a token replaced on both sides is picked up without a restart.
//! Nothing about the box's identity is configured twice.
//!
//! **When it fails.** A network error, a timeout, 5xx, 408 or 429 is passing trouble: the box
//! retries after [`backoff`] (doubling from [`FIRST_RETRY`], with jitter, up to [`retry_cap`]:
//! 5 minutes, never more than 5 report intervals). A refusal — 409 (the rows do not follow what
//! the province holds), 400, 401, 403 — will not cure itself: it is logged as an error, kept in
//! the reporter state that `/api/v1/status` shows, and tried again at the cap, forever. Rows are
//! never dropped. All of this survives a restart, since the outbox and the state are in the
//! database; a batch the province stored but whose answer was lost comes back as duplicates.

use std::io::Write;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::sync::watch;

use crate::audit::chain::Link;
use crate::clock::SharedClock;
use crate::config::ReportConfig;
use crate::store::{Store, StoreError};

/// The first retry after a failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Retries never wait longer than this (nor than 5 report intervals, see [`retry_cap`]).
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// The whole request, 500 rows up and the answer back, on a slow mobile link.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest wait between retries for a report interval: 5 minutes, or 5 intervals when that
/// is shorter (a box reporting every 10 s should not sit out 5 minutes after a blip), never
/// under [`FIRST_RETRY`].
pub fn retry_cap(interval: Duration) -> Duration {
    MAX_RETRY.min(interval.saturating_mul(5)).max(FIRST_RETRY)
}

/// The wait before the next try after `failures` failures in a row (1 after the first):
/// [`FIRST_RETRY`] doubled each time, capped at `cap`, then "equal jitter" — between half and all
/// of that step, `jitter` (in `[0, 1)`) choosing where — so boxes that lost the province together
/// do not all come back in the same second. Pure: the caller draws `jitter`.
pub fn backoff(failures: u32, cap: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let step = FIRST_RETRY.saturating_mul(1 << doublings).min(cap);
    let half = step / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A uniform draw in `[0, 1)` for [`backoff`]; 0.5 if the system has no randomness to give.
fn jitter() -> f64 {
    getrandom::u32().map_or(0.5, |r| r as f64 / (u32::MAX as f64 + 1.0))
}

/// The `Idempotency-Key` of a batch: `<box>:<first>-<last>`, the box's name percent-encoded
/// outside `A-Z a-z 0-9 . _ ~ -` (a header is ASCII; a box may be named in Thai).
pub fn idempotency_key(box_name: &str, first_seq: i64, last_seq: i64) -> String {
    let mut key = String::with_capacity(box_name.len() + 24);
    for b in box_name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') {
            key.push(b as char);
        } else {
            key.push_str(&format!("%{b:02X}"));
        }
    }
    key.push_str(&format!(":{first_seq}-{last_seq}"));
    key
}

/// The parts of an [`idempotency_key`]: (box, first seq, last seq); None if it is not one.
pub fn parse_idempotency_key(key: &str) -> Option<(String, i64, i64)> {
    let (name, range) = key.rsplit_once(':')?;
    let (first, last) = range.split_once('-')?;
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    let mut bytes = Vec::with_capacity(name.len());
    let mut it = name.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    (!name.is_empty()).then_some((name, first, last))
}

/// A batch as sent: one JSON line per link, gzip-compressed.
pub fn encode_batch(links: &[Link]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for l in links {
        serde_json::to_writer(&mut gz, l)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

/// What the province answers to a batch it took (`store::ReportOutcome` on its side).
#[derive(Debug, Deserialize)]
struct Outcome {
    accepted: u64,
    duplicates: u64,
    last_seq: i64,
}

#[derive(Deserialize)]
struct WhoAmI {
    name: String,
    role: String,
}

/// Why an attempt did not go through.
#[derive(Debug)]
enum Failure {
    /// Passing trouble: retry with backoff (at least `after`, when the province said so).
    Transient {
        reason: String,
        after: Option<Duration>,
    },
    /// The province refused, or the box cannot make a report: retry at the cap, loudly.
    Refused(String),
    /// 413: the batch is larger than the province takes.
    TooLarge(String),
    /// The daemon is stopping.
    Stopped,
}

fn transient(reason: impl Into<String>) -> Failure {
    Failure::Transient {
        reason: reason.into(),
        after: None,
    }
}

/// Run a store call on the blocking pool.
async fn blocking<T, F>(store: &Store, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    store
        .call(f)
        .await
        .map_err(|e| format!("the local database: {e}"))
}

/// An HTTP error's text, with its source chain (reqwest's own Display hides the cause).
fn http_error(what: &str, e: &reqwest::Error) -> String {
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// The province's error message from an error body, shortened.
async fn refusal_text(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    let mut message: String = message.chars().take(500).collect();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("").to_owned();
    }
    format!("the province answered {}: {message}", status.as_u16())
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

struct Reporter {
    store: Store,
    clock: SharedClock,
    cfg: ReportConfig,
    http: reqwest::Client,
    url: Url,
    whoami: Url,
    auth: HeaderValue,
    /// The province's name for this box, once asked.
    box_name: Option<String>,
    /// Rows per batch: `cfg.batch`, halved while the province says a batch is too large.
    batch: u32,
    shutdown: watch::Receiver<bool>,
}

/// Report the outbox to the province until `shutdown` turns true. Never returns early on a
/// failure: it records it (`Store::reporter_attempt`), waits and tries again.
pub async fn run(
    store: Store,
    clock: SharedClock,
    cfg: ReportConfig,
    shutdown: watch::Receiver<bool>,
) {
    let url = match Url::parse(&cfg.url) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(url = %cfg.url, error = %e, "[report] url is not a URL; airtime is not reported");
            return;
        }
    };
    // `…/api/v1/reports` → `…/api/v1/whoami`.
    let whoami = url.join("whoami").unwrap_or_else(|_| url.clone());
    let mut auth = match HeaderValue::from_str(&format!("Bearer {}", cfg.token)) {
        Ok(v) => v,
        Err(_) => {
            tracing::error!(
                "[report] token holds characters a header cannot; airtime is not reported"
            );
            return;
        }
    };
    auth.set_sensitive(true);
    let http = super::http_client();
    let batch = cfg.batch.max(1);
    let mut r = Reporter {
        store,
        clock,
        cfg,
        http,
        url,
        whoami,
        auth,
        box_name: None,
        batch,
        shutdown,
    };
    tracing::info!(url = %r.url, batch = r.batch, interval = ?r.cfg.interval, "reporting airtime to the province");
    r.run().await;
    tracing::debug!("airtime reporter stopped");
}

impl Reporter {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Wait `d`, or less if the daemon stops; false if it stops.
    async fn pause(&mut self, d: Duration) -> bool {
        if self.stopping() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            r = self.shutdown.changed() => r.is_ok() && !*self.shutdown.borrow(),
        }
    }

    async fn run(&mut self) {
        let cap = retry_cap(self.cfg.interval);
        let mut failures = 0u32;
        while !self.stopping() {
            let wait = match self.once().await {
                Ok(true) => {
                    failures = 0;
                    continue; // more may be queued: no pause while catching up
                }
                Ok(false) => {
                    failures = 0;
                    self.cfg.interval
                }
                Err(Failure::Stopped) => return,
                Err(Failure::TooLarge(reason)) if self.batch > 1 => {
                    self.batch = (self.batch / 2).max(1);
                    tracing::warn!(%reason, batch = self.batch, "the province takes smaller batches; halving");
                    continue;
                }
                Err(Failure::TooLarge(reason)) | Err(Failure::Refused(reason)) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%reason, retry_in = ?cap, "the province refuses this box's airtime report; rows stay queued");
                    self.record_failure(&reason).await;
                    cap
                }
                Err(Failure::Transient { reason, after }) => {
                    failures = failures.saturating_add(1);
                    let mut wait = backoff(failures, cap, jitter());
                    if let Some(a) = after {
                        wait = wait.max(a.min(cap));
                    }
                    tracing::warn!(%reason, failures, retry_in = ?wait, "airtime report failed; will retry");
                    self.record_failure(&reason).await;
                    wait
                }
            };
            if !self.pause(wait).await {
                return;
            }
        }
    }

    async fn record_failure(&self, reason: &str) {
        let (now, reason) = (self.clock.now(), reason.to_owned());
        if let Err(e) = blocking(&self.store, move |s| s.reporter_attempt(now, Some(&reason))).await
        {
            tracing::error!(error = %e, "cannot record the reporter's state");
        }
    }

    /// Send the oldest queued batch. Ok(true): a batch was acknowledged; Ok(false): nothing
    /// was queued.
    async fn once(&mut self) -> Result<bool, Failure> {
        let limit = self.batch;
        let links = blocking(&self.store, move |s| s.outbox_batch(limit))
            .await
            .map_err(transient)?;
        let (Some(first), Some(last)) = (links.first(), links.last()) else {
            return Ok(false);
        };
        let (first, last, rows) = (first.row.seq, last.row.seq, links.len());
        let box_name = self.box_name().await?;
        let key = idempotency_key(&box_name, first, last);
        let body = tokio::task::spawn_blocking(move || encode_batch(&links))
            .await
            .map_err(|e| Failure::Refused(format!("compressing the batch: {e}")))?
            .map_err(|e| Failure::Refused(format!("compressing the batch: {e}")))?;
        let now = self.clock.now();
        blocking(&self.store, move |s| s.reporter_attempt(now, None))
            .await
            .map_err(transient)?;
        let req = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .header(CONTENT_ENCODING, "gzip")
            .header("Idempotency-Key", key.as_str())
            .timeout(REQUEST_TIMEOUT)
            .body(body)
            .send();
        let mut stop = self.shutdown.clone();
        let resp = tokio::select! {
            r = req => r.map_err(|e| transient(http_error("sending the report", &e)))?,
            _ = stop.wait_for(|s| *s) => return Err(Failure::Stopped),
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(self.classify(resp).await);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transient(http_error("reading the province's answer", &e)))?;
        let outcome: Outcome = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Refused(format!(
                "the province answered {status} but not with a report outcome: {e}"
            ))
        })?;
        if outcome.last_seq < last {
            return Err(Failure::Refused(format!(
                "the province answered {status} for rows {first} to {last} but says it holds only up to seq {}",
                outcome.last_seq
            )));
        }
        let now = self.clock.now();
        blocking(&self.store, move |s| {
            s.outbox_acknowledged(first, last, now)
        })
        .await
        .map_err(transient)?;
        tracing::info!(
            first,
            last,
            rows,
            accepted = outcome.accepted,
            duplicates = outcome.duplicates,
            "airtime reported to the province"
        );
        Ok(true)
    }

    /// A non-2xx answer: passing trouble or a refusal.
    async fn classify(&mut self, resp: reqwest::Response) -> Failure {
        let status = resp.status();
        let after = retry_after(&resp);
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            // Ask who we are again next time: the token may have been replaced.
            self.box_name = None;
        }
        let text = refusal_text(resp).await;
        if status.is_server_error()
            || matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT
            )
        {
            Failure::Transient {
                reason: text,
                after,
            }
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            Failure::TooLarge(text)
        } else {
            Failure::Refused(text)
        }
    }

    /// The province's name for this box (asked once per run of the daemon).
    async fn box_name(&mut self) -> Result<String, Failure> {
        if let Some(n) = &self.box_name {
            return Ok(n.clone());
        }
        let req = self
            .http
            .get(self.whoami.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .timeout(REQUEST_TIMEOUT)
            .send();
        let mut stop = self.shutdown.clone();
        let resp = tokio::select! {
            r = req => r.map_err(|e| transient(http_error("asking the province who this box is", &e)))?,
            _ = stop.wait_for(|s| *s) => return Err(Failure::Stopped),
        };
        if !resp.status().is_success() {
            return Err(self.classify(resp).await);
        }
        let bytes = resp.bytes().await.map_err(|e| {
            transient(http_error(
                "reading the province's answer to who this box is",
                &e,
            ))
        })?;
        let me: WhoAmI = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Refused(format!(
                "the province's {} did not say who this box is: {e}",
                self.whoami
            ))
        })?;
        if me.role != "box" {
            return Err(Failure::Refused(format!(
                "the [report] token is '{}' on the province with role '{}', not a box token \
                 (make one there with `hokrajai token add --role box --name <box>`)",
                me.name, me.role
            )));
        }
        tracing::info!(name = %me.name, "the province knows this box as");
        self.box_name = Some(me.name.clone());
        Ok(me.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retry times over `total` of outage, starting at the first failure (t = 0), with the
    /// jitter each retry draws from `draw`.
    fn schedule(total: Duration, cap: Duration, mut draw: impl FnMut() -> f64) -> Vec<Duration> {
        let (mut t, mut failures, mut times) = (Duration::ZERO, 1u32, vec![Duration::ZERO]);
        loop {
            t += backoff(failures, cap, draw());
            if t > total {
                return times;
            }
            times.push(t);
            failures += 1;
        }
    }

    fn max_gap(times: &[Duration]) -> Duration {
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    #[test]
    fn backoff_doubles_from_a_second_up_to_the_cap_with_jitter_in_the_upper_half() {
        let cap = MAX_RETRY;
        let top: Vec<u64> = (1..=11)
            .map(|f| backoff(f, cap, 0.999_999).as_secs())
            .collect();
        assert_eq!(top, [0, 1, 3, 7, 15, 31, 63, 127, 255, 299, 299]);
        let bottom: Vec<u64> = (1..=11)
            .map(|f| backoff(f, cap, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(
            bottom,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 150000, 150000]
        );
        // Never past the cap, whatever the count (no overflow after weeks of failures).
        assert_eq!(backoff(u32::MAX, cap, 1.0), cap);
        assert_eq!(backoff(0, cap, 1.0), FIRST_RETRY);
    }

    #[test]
    fn the_cap_is_five_minutes_or_five_intervals() {
        assert_eq!(retry_cap(Duration::from_secs(60)), MAX_RETRY);
        assert_eq!(retry_cap(Duration::from_secs(3600)), MAX_RETRY);
        assert_eq!(retry_cap(Duration::from_secs(10)), Duration::from_secs(50));
        assert_eq!(retry_cap(Duration::from_secs(1)), Duration::from_secs(5));
        assert_eq!(retry_cap(Duration::ZERO), FIRST_RETRY);
    }

    #[test]
    fn an_hour_without_the_province_costs_a_few_dozen_tries_and_no_gap_over_the_cap() {
        let hour = Duration::from_secs(3600);
        let cap = retry_cap(Duration::from_secs(60));
        // A fixed pseudo-random sequence (xorshift), so the figures are the same every run.
        let mut x = 0x9e37_79b9_u32;
        let mut draw = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as f64 / (u32::MAX as f64 + 1.0)
        };
        let times = schedule(hour, cap, &mut draw);
        assert!(
            (18..=32).contains(&times.len()),
            "{} tries in an hour",
            times.len()
        );
        assert!(max_gap(&times) <= cap, "{:?}", max_gap(&times));
        // The extremes of the jitter bound the count: 20 tries with the longest waits, 32 with
        // the shortest (9 while doubling, then one every 2.5 to 5 minutes).
        let slow = schedule(hour, cap, || 0.999_999);
        let fast = schedule(hour, cap, || 0.0);
        assert_eq!((slow.len(), fast.len()), (20, 32));
        assert!(max_gap(&slow) <= cap);
        // The first tries come quickly: a blip costs seconds, not minutes.
        assert!(times[3] < Duration::from_secs(8), "{:?}", &times[..4]);
    }

    #[test]
    fn a_test_box_reporting_every_second_retries_at_most_every_five_seconds() {
        let cap = retry_cap(Duration::from_secs(1));
        let times = schedule(Duration::from_secs(60), cap, || 0.999_999);
        assert!(max_gap(&times) <= Duration::from_secs(5));
        assert!(times.len() >= 12, "{}", times.len());
    }

    #[test]
    fn the_idempotency_key_names_the_box_and_the_rows_and_reads_back() {
        assert_eq!(idempotency_key("box-5012", 1, 500), "box-5012:1-500");
        let thai = idempotency_key("อำเภอ:1", 7, 9);
        assert!(thai.is_ascii(), "{thai}");
        assert_eq!(
            parse_idempotency_key(&thai),
            Some(("อำเภอ:1".to_owned(), 7, 9))
        );
        assert_eq!(
            parse_idempotency_key("box-5012:1-500"),
            Some(("box-5012".to_owned(), 1, 500))
        );
        for bad in ["box-5012", ":1-2", "b:1", "b:x-2", "b%Z1:1-2", "b%:1-2"] {
            assert_eq!(parse_idempotency_key(bad), None, "{bad}");
        }
    }
}
