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

use std::sync::Arc;

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

/// Start the link's tasks for this configuration: a puller per `[[upstream]]`, the reporter if
/// `[report]` is set, the CAP feed poller if `[cap] feed_url` is. They end when `shutdown`
/// turns true.
pub fn spawn(
    runner: Arc<Runner>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = runner.config.clone();
    let mut tasks = Vec::new();
    // Built only when an upstream is configured: the TLS client and its root store cost a box
    // that is not linked about 2 MB of memory for nothing.
    let http = (!config.upstreams.is_empty()).then(pull::http_client);
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
            http: http.clone().unwrap_or_else(pull::http_client),
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
