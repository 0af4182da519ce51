//! The provincial link (issue #3): signed manifests of approved content pulled from the
//! province, airtime reported back through an outbox, and CAP 1.2 emergency alerts.
//!
//! Everything here runs beside the playout and can fail without touching it: a province that is
//! down for days only means the box keeps airing what it has (and what is still valid), with the
//! last success and the last error in the status.

pub mod alerts;
pub mod cap;
pub mod manifest;
pub mod publish;
pub mod pull;
pub mod report;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;

use crate::domain::AnnouncementId;
use crate::runner::Runner;

/// What the link tells the playout: the plan may have changed; an announcement was withdrawn
/// (it leaves the plan, and stops if it is on air). Called from tokio tasks; must not block.
pub trait OnAir: Send + Sync + 'static {
    fn changed(&self);
    fn withdrawn(&self, id: AnnouncementId, reason: &str);
}

impl OnAir for Runner {
    fn changed(&self) {
        self.replan();
    }

    fn withdrawn(&self, id: AnnouncementId, reason: &str) {
        self.stop_announcement(id, reason);
    }
}

/// The longest wait for the next bytes of a body before the transfer is given up.
pub const STALL: Duration = Duration::from_secs(60);

/// The HTTP client every part of the link shares (manifests, audio, reports, CAP): bounded
/// connects, our name in User-Agent. Built on first use, so a box with no link never loads the
/// TLS root store (2 MB); cloning it is cheap and shares its connections.
pub fn http_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("hokrajai/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot build the HTTP client with our settings; using defaults");
                    reqwest::Client::new()
                })
        })
        .clone()
}

/// Why [`read_body`] gave up.
#[derive(Debug)]
pub enum BodyError {
    /// More than the caller's limit (the claimed length, or what arrived).
    TooLarge { size: usize, max: usize },
    /// Cut off, or no bytes for [`STALL`].
    Read(String),
}

/// A response body in memory, refused past `max` bytes whatever Content-Length claims.
pub async fn read_body(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if let Some(n) = resp.content_length().filter(|n| *n > max as u64) {
        return Err(BodyError::TooLarge {
            size: n as usize,
            max,
        });
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(STALL, body.next())
        .await
        .map_err(|_| BodyError::Read(format!("no data for {} s", STALL.as_secs())))?
    {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if out.len() + chunk.len() > max {
            return Err(BodyError::TooLarge {
                size: out.len() + chunk.len(),
                max,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { size, max } => {
                write!(f, "{size} bytes, more than the {max} allowed")
            }
            BodyError::Read(why) => f.write_str(why),
        }
    }
}

/// Start the link's tasks for this configuration: a puller per `[[upstream]]`, the reporter if
/// `[report]` is set, the CAP feed poller if `[cap] feed_url` is. They end when `shutdown`
/// turns true.
pub fn spawn(
    runner: Arc<Runner>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = runner.config.clone();
    let mut tasks = Vec::new();
    for u in &config.upstreams {
        let puller = pull::Puller {
            store: runner.store.clone(),
            clock: runner.clock.clone(),
            upstream: u.clone(),
            district: config.district.as_ref().map(|d| d.code.clone()),
            outputs: config.output_names(),
            data_dir: config.data_dir.clone(),
            max_item_bytes: config.max_upload_bytes,
            on_air: runner.clone(),
            http: http_client(),
        };
        tracing::info!(upstream = %u.name, url = %u.manifest_url, every = ?u.poll, "pulling approved content from the province");
        tasks.push(tokio::spawn(puller.run(shutdown.clone())));
    }
    if let Some(report) = &config.report {
        tracing::info!(url = %report.url, every = ?report.interval, "reporting airtime to the province");
        tasks.push(tokio::spawn(report::run(
            runner.store.clone(),
            runner.clock.clone(),
            report.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(url) = &config.cap.feed_url {
        tracing::info!(%url, every = ?config.cap.poll, "polling the CAP alert feed");
        tasks.push(tokio::spawn(alerts::poll_feed(
            runner.clone(),
            url.clone(),
            config.cap.poll,
            shutdown.clone(),
        )));
    }
    tasks
}
