//! Pulling the province's signed manifest and its audio (district side, issue #3).
//!
//! One task per `[[upstream]]`. Each poll asks for the manifest with `If-None-Match`; a manifest
//! that does not verify against the configured keys, or whose sequence goes backwards, is
//! refused whole and the box keeps what it has. A newer one is applied: withdrawals first (the
//! item leaves the plan and, if airing, is stopped), then every item for this district whose
//! audio the box lacks is downloaded — into `<data_dir>/incoming/<sha256>.part`, resumed with
//! `Range` after a cut, checked for size and SHA-256, probed by decoding in a child process,
//! renamed into the audio store — and only then stored as approved, marked as coming from the
//! province. The sequence and ETag are recorded only when every item is in place, so a cut link
//! means the next poll tries again (and resumes the partial files) rather than forgetting.
//!
//! The manifest is the province's whole current set: an item this box got from it earlier that
//! is neither listed nor withdrawn any more is withdrawn here too. Validity is enforced by the
//! planner at air time, whatever the network does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::manifest::{self, Manifest, ManifestError, ManifestItem, SequenceStep};
use super::{BodyError, OnAir, STALL};
use crate::clock::SharedClock;
use crate::config::UpstreamConfig;
use crate::domain::{AnnouncementStatus, Source};
use crate::store::{NewAnnouncement, Store, StoreError, UpstreamUpdate};

/// How long one probe of a pulled file may take.
const PROBE_BUDGET: Duration = Duration::from_secs(120);
/// Retries after a failed poll start here and double up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// A probed duration may differ from the manifest's by this much (decoders count the last
/// frames differently); more means the file is not what the province described.
const DURATION_SLACK_MS: u64 = 1500;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("the province could not be reached at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the manifest was refused: {0}")]
    Manifest(#[from] ManifestError),
    #[error("the manifest has sequence {0} like the one applied, but different content: refused")]
    SameSequenceDifferentContent(u64),
    #[error("{failed} of {total} items could not be made ready (tried again next poll): {first}")]
    Items {
        failed: usize,
        total: usize,
        first: String,
    },
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// The server said nothing changed (304), or the same sequence came back.
    pub unchanged: bool,
    pub sequence: Option<u64>,
    pub added: usize,
    pub updated: usize,
    pub withdrawn: usize,
    /// Items not for this district or this box's outputs, or already past their validity.
    pub skipped: usize,
    pub bytes_downloaded: u64,
}

/// One upstream's puller.
pub struct Puller {
    pub store: Store,
    pub clock: SharedClock,
    pub upstream: UpstreamConfig,
    pub district: Option<String>,
    /// The box's output names (an item for "every output" airs on all of them).
    pub outputs: Vec<String>,
    pub data_dir: PathBuf,
    pub max_item_bytes: u64,
    pub on_air: Arc<dyn OnAir>,
    pub http: reqwest::Client,
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> PullError {
    PullError::Unreachable {
        url: url.to_string(),
        why: e.to_string(),
    }
}

impl Puller {
    fn source_ref(&self, id: &str) -> String {
        format!("{}/{}", self.upstream.name, id)
    }

    fn actor(&self) -> String {
        format!("province:{}", self.upstream.name)
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, PullError> {
        Ok(self.store.call(f).await?)
    }

    /// Poll until `shutdown` turns true: every `poll` interval, sooner after a failure.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut retry = FIRST_RETRY;
        loop {
            let wait = match self.poll_once().await {
                Ok(r) => {
                    if !r.unchanged {
                        tracing::info!(upstream = %self.upstream.name, sequence = ?r.sequence, added = r.added,
                            updated = r.updated, withdrawn = r.withdrawn, skipped = r.skipped,
                            bytes = r.bytes_downloaded, "applied the province's manifest");
                    }
                    retry = FIRST_RETRY;
                    self.upstream.poll
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.upstream.name, error = %e, "pull failed; keeping what the box has");
                    let w = retry.min(self.upstream.poll);
                    retry = (retry * 2).min(self.upstream.poll);
                    w
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// One poll. Records its outcome in the store (status shows it) and returns it.
    pub async fn poll_once(&self) -> Result<PollReport, PullError> {
        let name = self.upstream.name.clone();
        let url = self.upstream.manifest_url.clone();
        let now = self.clock.now();
        let (n, u) = (name.clone(), url.clone());
        self.db(move |s| s.upstream_attempt(&n, &u, now)).await?;
        let result = self.poll_inner().await;
        let at = self.clock.now();
        if let Err(e) = &result {
            let (n, msg) = (name.clone(), e.to_string());
            self.db(move |s| s.upstream_failed(&n, &msg, at)).await?;
        }
        result
    }

    async fn poll_inner(&self) -> Result<PollReport, PullError> {
        let name = self.upstream.name.clone();
        let url = self.upstream.manifest_url.clone();
        let n = name.clone();
        let state = self.db(move |s| s.upstream(&n)).await?.unwrap_or_default();
        let mut req = self.http.get(&url).timeout(Duration::from_secs(120));
        // Only a manifest already applied may be skipped by its ETag.
        if let (Some(etag), Some(_)) = (&state.etag, state.sequence) {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let resp = req.send().await.map_err(|e| unreachable(&url, e))?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            let at = self.clock.now();
            self.db(move |s| s.upstream_ok(&name, None, None, false, at))
                .await?;
            return Ok(PollReport {
                unchanged: true,
                sequence: state.sequence,
                ..Default::default()
            });
        }
        if !resp.status().is_success() {
            return Err(PullError::Status {
                url,
                status: resp.status().as_u16(),
            });
        }
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_bounded(resp, manifest::MAX_MANIFEST_BYTES, &url).await?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let m = manifest::verify(&bytes, &self.upstream.keys)?;
        let step = manifest::check_sequence(state.sequence, m.sequence)?;
        if step == SequenceStep::Unchanged {
            if state.manifest_sha256.as_deref() != Some(sha.as_str()) {
                return Err(PullError::SameSequenceDifferentContent(m.sequence));
            }
            let at = self.clock.now();
            let e = etag.clone();
            self.db(move |s| s.upstream_ok(&name, e.as_deref(), None, false, at))
                .await?;
            return Ok(PollReport {
                unchanged: true,
                sequence: Some(m.sequence),
                ..Default::default()
            });
        }
        let mut report = self.apply(&m).await?;
        report.sequence = Some(m.sequence);
        let at = self.clock.now();
        let in_force = (report.added + report.updated) as u64;
        let seq = m.sequence;
        self.db(move |s| {
            s.upstream_ok(
                &name,
                etag.as_deref(),
                Some((seq, &sha, in_force)),
                true,
                at,
            )
        })
        .await?;
        Ok(report)
    }

    /// Apply a verified, newer manifest. Withdrawals always; items as far as they can be made
    /// ready. Errors (after doing all it could) when an item could not be made ready.
    async fn apply(&self, m: &Manifest) -> Result<PollReport, PullError> {
        let mut report = PollReport::default();
        let now = self.clock.now();
        // Withdrawn by name, then anything of ours the manifest no longer lists.
        let mut gone: Vec<(String, String)> = m
            .withdrawn
            .iter()
            .map(|w| {
                let why = if w.reason.is_empty() {
                    format!("withdrawn by the province (manifest {})", m.sequence)
                } else {
                    format!(
                        "withdrawn by the province: {} (manifest {})",
                        w.reason, m.sequence
                    )
                };
                (self.source_ref(&w.id), why)
            })
            .collect();
        // Listed for this district (expired ones too: they simply stop being planned).
        let listed: std::collections::HashSet<String> = m
            .items
            .iter()
            .filter(|i| i.for_district(self.district.as_deref()))
            .map(|i| self.source_ref(&i.id))
            .collect();
        let prefix = format!("{}/", self.upstream.name);
        let ours = self
            .db(move |s| s.approved_from(Source::Province, &prefix))
            .await?;
        for (_, r) in ours {
            if !listed.contains(&r) && !gone.iter().any(|(g, _)| *g == r) {
                gone.push((
                    r,
                    format!(
                        "no longer in the province's manifest for this box (manifest {})",
                        m.sequence
                    ),
                ));
            }
        }
        for (r, why) in gone {
            let actor = self.actor();
            let w = why.clone();
            let done = self
                .db(move |s| {
                    let Some(a) = s.announcement_by_source(Source::Province, &r)? else {
                        return Ok(None);
                    };
                    if a.status != AnnouncementStatus::Approved {
                        return Ok(None);
                    }
                    s.decide(a.id, AnnouncementStatus::Withdrawn, &actor, &w, now)
                        .map(|a| Some(a.id))
                })
                .await?;
            if let Some(id) = done {
                report.withdrawn += 1;
                self.on_air.withdrawn(id, &why);
            }
        }

        let mut failures: Vec<String> = Vec::new();
        for item in &m.items {
            if let Err(why) = self.wanted(item, now) {
                tracing::debug!(upstream = %self.upstream.name, item = %item.id, %why, "item skipped");
                report.skipped += 1;
                continue;
            }
            match self.take_item(item, m.sequence, &mut report).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(upstream = %self.upstream.name, item = %item.id, error = %e, "item not ready");
                    failures.push(format!("item {}: {e}", item.id));
                }
            }
        }
        if report.added + report.updated + report.withdrawn > 0 {
            self.on_air.changed();
        }
        if let Some(first) = failures.first() {
            return Err(PullError::Items {
                failed: failures.len(),
                total: m.items.len(),
                first: first.clone(),
            });
        }
        Ok(report)
    }

    /// Is this item for this box now? Err says why not.
    fn wanted(&self, item: &ManifestItem, now: DateTime<Utc>) -> Result<(), String> {
        if !item.for_district(self.district.as_deref()) {
            return Err("for other districts".into());
        }
        if item.valid_until.is_some_and(|u| u <= now) {
            return Err("its validity has ended".into());
        }
        if self.outputs_for(item).is_empty() {
            return Err("for outputs this box does not have".into());
        }
        if item.size > self.max_item_bytes {
            return Err(format!(
                "{} bytes, more than this box takes ({})",
                item.size, self.max_item_bytes
            ));
        }
        Ok(())
    }

    fn outputs_for(&self, item: &ManifestItem) -> Vec<String> {
        if item.outputs.is_empty() {
            self.outputs.clone()
        } else {
            self.outputs
                .iter()
                .filter(|o| item.outputs.contains(o))
                .cloned()
                .collect()
        }
    }

    /// Make one item ready: stored already (update its rules if they changed), or downloaded,
    /// checked, probed and stored.
    async fn take_item(
        &self,
        item: &ManifestItem,
        sequence: u64,
        report: &mut PollReport,
    ) -> Result<(), String> {
        let r = self.source_ref(&item.id);
        let now = self.clock.now();
        let existing = self
            .db(move |s| s.announcement_by_source(Source::Province, &r))
            .await
            .map_err(|e| e.to_string())?;
        let outputs = self.outputs_for(item);
        if let Some(a) = existing {
            if a.sha256 != item.sha256 {
                return Err(format!(
                    "its audio changed (was {}, now {}); the province must publish new audio under a new id",
                    a.sha256, item.sha256
                ));
            }
            if a.status != AnnouncementStatus::Approved {
                // Withdrawn here (by the province earlier, or by the district): stays so.
                report.skipped += 1;
                return Ok(());
            }
            let update = UpstreamUpdate {
                title: item.title.clone(),
                script: item.script.clone(),
                agency: item.agency.clone(),
                priority: item.priority,
                valid_from: item.valid_from,
                valid_until: item.valid_until,
                plays_per_day: item.plays_per_day,
                outputs,
            };
            let same = a.title == update.title
                && a.script == update.script
                && a.agency == update.agency
                && a.priority == update.priority
                && a.valid_from == update.valid_from
                && a.valid_until == update.valid_until
                && a.plays_per_day == update.plays_per_day
                && a.outputs == update.outputs;
            if !same {
                let actor = self.actor();
                let detail = format!("changed in the province's manifest {sequence}");
                self.db(move |s| s.update_from_upstream(a.id, &update, &actor, &detail, now))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            report.updated += 1;
            return Ok(());
        }

        let audio = self.data_dir.join("audio").join(&item.sha256);
        if !file_matches(&audio, item.size, &item.sha256).await {
            report.bytes_downloaded += self.download(item, &audio).await?;
        }
        let probe = crate::media::probe_in_child(audio.clone(), PROBE_BUDGET)
            .await
            .map_err(|e| format!("the audio cannot be played: {e}"))?;
        if probe.duration_ms.abs_diff(item.duration_ms) > DURATION_SLACK_MS {
            return Err(format!(
                "the audio lasts {} ms, the manifest says {} ms",
                probe.duration_ms, item.duration_ms
            ));
        }
        let new = NewAnnouncement {
            title: item.title.clone(),
            script: item.script.clone(),
            agency: item.agency.clone(),
            priority: item.priority,
            sha256: item.sha256.clone(),
            size_bytes: item.size,
            container: probe.container,
            codec: probe.codec,
            sample_rate: probe.sample_rate,
            channels: probe.channels,
            duration_ms: probe.duration_ms,
            loudness_lufs: probe.loudness_lufs,
            valid_from: item.valid_from,
            valid_until: item.valid_until,
            plays_per_day: item.plays_per_day,
            outputs,
            uploaded_by: self.actor(),
        };
        let r = self.source_ref(&item.id);
        let (by, at) = (item.approved_by.clone(), item.approved_at);
        let detail = format!(
            "pulled from {} (manifest {sequence}, item {})",
            self.upstream.manifest_url, item.id
        );
        self.db(move |s| {
            s.insert_approved(
                &new,
                Source::Province,
                &r,
                &format!("province: {by}"),
                at,
                &detail,
                now,
            )
        })
        .await
        .map_err(|e| e.to_string())?;
        report.added += 1;
        Ok(())
    }

    /// Download `item` to `dest`, resuming a partial file. Returns the bytes fetched now.
    async fn download(&self, item: &ManifestItem, dest: &Path) -> Result<u64, String> {
        let url = resolve(&self.upstream.manifest_url, &item.file)?;
        let incoming = self.data_dir.join("incoming");
        tokio::fs::create_dir_all(&incoming)
            .await
            .map_err(|e| format!("{}: {e}", incoming.display()))?;
        let part = incoming.join(format!("{}.part", item.sha256));
        let mut have = tokio::fs::metadata(&part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if have > item.size {
            // Longer than the item: not ours to keep.
            let _ = tokio::fs::remove_file(&part).await;
            have = 0;
        }
        let mut fetched = 0u64;
        if have < item.size {
            let mut req = self.http.get(&url);
            if have > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
            }
            let resp = req
                .send()
                .await
                .map_err(|e| unreachable(&url, e).to_string())?;
            let status = resp.status();
            let append = match status.as_u16() {
                206 if have > 0 => {
                    let starts_at_have = resp
                        .headers()
                        .get(reqwest::header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok())
                        == Some(have);
                    if !starts_at_have {
                        return Err(format!("{url}: the server resumed at the wrong place"));
                    }
                    true
                }
                200 => false,
                s => return Err(format!("{url} answered HTTP {s}")),
            };
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(&part)
                .await
                .map_err(|e| format!("{}: {e}", part.display()))?;
            if !append {
                have = 0;
            }
            let mut body = resp.bytes_stream();
            loop {
                let next = tokio::time::timeout(STALL, body.next())
                    .await
                    .map_err(|_| {
                        format!("{url}: no data for {} s; will resume", STALL.as_secs())
                    })?;
                let Some(chunk) = next else { break };
                let chunk = chunk.map_err(|e| {
                    format!("{url}: cut off after {} bytes ({e}); will resume", have)
                })?;
                if have + chunk.len() as u64 > item.size {
                    drop(file);
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(format!(
                        "{url} is longer than the {} bytes the manifest says: refused",
                        item.size
                    ));
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|e| format!("{}: {e}", part.display()))?;
                have += chunk.len() as u64;
                fetched += chunk.len() as u64;
            }
            file.sync_all()
                .await
                .map_err(|e| format!("{}: {e}", part.display()))?;
        }
        if have != item.size {
            return Err(format!(
                "{url}: got {have} of {} bytes; will resume",
                item.size
            ));
        }
        let sha = hash_file(&part)
            .await
            .map_err(|e| format!("{}: {e}", part.display()))?;
        if sha != item.sha256 {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(format!(
                "{url}: the file's SHA-256 is {sha}, not the signed {}: refused and deleted",
                item.sha256
            ));
        }
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        tokio::fs::rename(&part, dest)
            .await
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        Ok(fetched)
    }
}

/// A file already in the audio store with the right size and hash (shared by uploads, or a
/// download finished before a crash).
async fn file_matches(path: &Path, size: u64, sha256: &str) -> bool {
    match tokio::fs::metadata(path).await {
        Ok(m) if m.len() == size => hash_file(path).await.is_ok_and(|h| h == sha256),
        _ => false,
    }
}

async fn hash_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(path)?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(hex::encode(h.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The URL of `file` next to the manifest.
fn resolve(manifest_url: &str, file: &str) -> Result<String, String> {
    if !manifest::is_sha256_hex(file) {
        return Err(format!("'{file}' is not a content address"));
    }
    let base = manifest_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .ok_or_else(|| format!("'{manifest_url}' has no directory"))?;
    Ok(format!("{base}/{file}"))
}

/// The manifest's body, refused past `max` bytes.
async fn read_bounded(
    resp: reqwest::Response,
    max: usize,
    url: &str,
) -> Result<Vec<u8>, PullError> {
    super::read_body(resp, max).await.map_err(|e| match e {
        BodyError::TooLarge { size, max } => ManifestError::TooLarge { size, max }.into(),
        BodyError::Read(why) => unreachable(url, format!("the manifest download: {why}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_fetched_next_to_the_manifest_and_only_by_content_address() {
        let sha = "ab".repeat(32);
        assert_eq!(
            resolve("http://127.0.0.1:8081/prov/manifest.json", &sha).unwrap(),
            format!("http://127.0.0.1:8081/prov/{sha}")
        );
        assert!(resolve("http://x/manifest.json", "../etc/passwd").is_err());
        assert!(resolve("http://x/manifest.json", &"AB".repeat(32)).is_err());
    }
}
