//! CAP 1.2 alerts to the air (issue #3): the IO around the pure [`super::cap`] decision. Messages
//! come from `POST /api/v1/cap` and from the `[cap] feed_url` poller; both end here.
//!
//! Every message that parses is recorded in the store (`cap_messages`) with what was done and
//! why, once: the same (sender, identifier, sent) again is answered from the record. An alert
//! to air becomes an announcement marked as coming from CAP, approved by the sender's authority
//! (the box trusts its feed and the roles allowed to post), valid until the alert expires. Its
//! audio is the message's audio resource when it has one whose SHA-1 digest matches (decoded in
//! a child process, like any untrusted audio); otherwise the alert tone, with the headline as
//! the title in the airtime log and the status. A resource that fails its digest is not aired:
//! the tone and headline are, and the record says why. Emergency-level alerts preempt every
//! output; others join the slot queue at high priority. A Cancel (or an Update's references)
//! withdraws what the earlier message put on air, stopping it if it is airing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cap::{self, CapAir, CapDecision, CapError, CapLevel, CapPolicy, CapRef, CapStatus};
use crate::domain::{AnnouncementId, AnnouncementStatus, Priority, Source};
use crate::media;
use crate::runner::{Runner, ALERT};
use crate::store::{CapRecord, NewAnnouncement, Store, StoreError};

const PROBE_BUDGET: Duration = Duration::from_secs(60);
/// The largest audio resource fetched by URI.
const MAX_RESOURCE_BYTES: usize = 50 * 1024 * 1024;
/// A non-emergency alert airs at most this many times a day (spread over the day's slots).
const HIGH_PLAYS_PER_DAY: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Cap(#[from] CapError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

/// What became of one message.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The message was received before; `record` is what was done then.
    pub duplicate: bool,
    pub record: CapRecord,
    /// Outputs that took an emergency now.
    pub preempted: Vec<String>,
}

/// The policy from the box's config.
pub fn policy(runner: &Runner) -> CapPolicy {
    CapPolicy {
        geocodes: runner.config.cap.geocodes.clone(),
        air_test: runner.config.cap.air_test,
        language_prefs: vec!["th".into(), "th-TH".into(), "en".into()],
    }
}

async fn db<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AlertError> {
    Ok(store.call(f).await?)
}

fn ts(at: DateTime<Utc>) -> String {
    crate::store::ts(at)
}

/// Handle one CAP message that arrived `via` ("api:<token name>" or the feed URL).
///
/// Errors: the message does not parse as CAP 1.2 ([`AlertError::Cap`], nothing recorded: there
/// is no trustworthy identifier to record it under), or the store failed.
pub async fn handle(runner: &Arc<Runner>, bytes: &[u8], via: &str) -> Result<Outcome, AlertError> {
    let alert = cap::parse(bytes)?;
    let store = runner.store.clone();
    let sent = ts(alert.sent);
    let (s, i, t) = (alert.sender.clone(), alert.identifier.clone(), sent.clone());
    if let Some(record) = db(&store, move |st| st.cap_seen(&s, &i, &t)).await? {
        return Ok(Outcome {
            duplicate: true,
            record,
            preempted: Vec::new(),
        });
    }
    let now = runner.clock.now();
    let decision = cap::decide(&alert, &policy(runner), now);
    let mut preempted = Vec::new();
    let (decision_text, detail, announcement) = match decision {
        CapDecision::Ignore { reason, .. } => {
            tracing::info!(sender = %alert.sender, identifier = %alert.identifier, %reason, "CAP message not aired");
            ("ignored", reason, None)
        }
        CapDecision::Cancel { references, .. } => {
            let n = withdraw_refs(
                runner,
                &references,
                &format!("cancelled by CAP message {}", alert.identifier),
            )
            .await?;
            ("cancelled", format!("{n} earlier alert(s) withdrawn"), None)
        }
        CapDecision::Air(air) => {
            let mut notes = Vec::new();
            if !air.supersedes.is_empty() {
                let n = withdraw_refs(
                    runner,
                    &air.supersedes,
                    &format!("replaced by CAP update {}", air.identifier),
                )
                .await?;
                notes.push(format!("{n} earlier alert(s) replaced"));
            }
            let (id, note) = put_on_air(runner, &air, now).await?;
            notes.push(note);
            if air.level == CapLevel::Emergency {
                let a = db(&store, move |s| s.announcement(id)).await?;
                let outputs = a.outputs.clone();
                let repeat = runner.config.cap.repeat;
                let r = runner.clone();
                preempted =
                    tokio::task::spawn_blocking(move || r.emergency(&a, &outputs, repeat, now))
                        .await
                        .map_err(|e| AlertError::Io(e.to_string()))?;
                notes.push(format!("emergency on {}", preempted.join(", ")));
                ("aired", notes.join("; "), Some(id))
            } else {
                runner.replan();
                notes.push("queued at high priority".into());
                ("queued", notes.join("; "), Some(id))
            }
        }
    };
    let (s, i, v, d, dt) = (
        alert.sender.clone(),
        alert.identifier.clone(),
        via.to_string(),
        decision_text.to_string(),
        detail.clone(),
    );
    let record = db(&store, move |st| {
        st.cap_record(&s, &i, &sent, &v, &d, &dt, announcement, now)
    })
    .await?;
    tracing::info!(sender = %record.sender, identifier = %record.identifier, decision = %record.decision, detail = %record.detail, "CAP message handled");
    Ok(Outcome {
        duplicate: false,
        record,
        preempted,
    })
}

/// Withdraw (and stop, if airing) what earlier messages put on air. Returns how many.
async fn withdraw_refs(
    runner: &Arc<Runner>,
    refs: &[CapRef],
    why: &str,
) -> Result<usize, AlertError> {
    let mut n = 0;
    for r in refs {
        let (s, i) = (r.sender.clone(), r.identifier.clone());
        let Some(id) = db(&runner.store, move |st| st.cap_announcement(&s, &i)).await? else {
            continue;
        };
        let now = runner.clock.now();
        let (actor, w) = (format!("cap:{}", r.sender), why.to_string());
        let withdrew = db(&runner.store, move |st| {
            let a = st.announcement(id)?;
            if a.status != AnnouncementStatus::Approved {
                return Ok(false);
            }
            st.decide(id, AnnouncementStatus::Withdrawn, &actor, &w, now)
                .map(|_| true)
        })
        .await?;
        // Stop it even if it was already withdrawn: a repeat may still be airing.
        runner.stop_announcement(id, why);
        if withdrew {
            n += 1;
        }
    }
    Ok(n)
}

/// Store the alert as an approved announcement with the best audio it can have. Returns its
/// id and a note on the audio used.
async fn put_on_air(
    runner: &Arc<Runner>,
    air: &CapAir,
    now: DateTime<Utc>,
) -> Result<(AnnouncementId, String), AlertError> {
    let (audio, note) = match resource_audio(runner, air).await {
        Ok(Some((bytes, probe))) => (Some((bytes, probe)), "its audio resource aired".to_string()),
        Ok(None) => (
            None,
            "no audio resource: alert tone with the headline".to_string(),
        ),
        Err(why) => {
            tracing::warn!(identifier = %air.identifier, %why, "CAP audio refused; airing the alert tone with the headline");
            (
                None,
                format!("audio resource refused ({why}): alert tone with the headline"),
            )
        }
    };
    let (bytes, probe) = match audio {
        Some(a) => a,
        None => {
            let path = runner.planner.sound(ALERT).ok_or_else(|| {
                AlertError::Io(format!(
                    "the alert tone {ALERT} is missing from the audio dir"
                ))
            })?;
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| AlertError::Io(format!("{}: {e}", path.display())))?;
            let p = path.clone();
            let probe = tokio::task::spawn_blocking(move || media::probe(&p))
                .await
                .map_err(|e| AlertError::Io(e.to_string()))?
                .map_err(|e| AlertError::Io(format!("the alert tone: {e}")))?;
            (bytes, probe)
        }
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    let dest = runner.audio_path(&sha);
    if tokio::fs::metadata(&dest).await.map(|m| m.len()).ok() != Some(bytes.len() as u64) {
        write_atomically(dest, bytes.clone()).await?;
    }
    let test = matches!(air.status, CapStatus::Test | CapStatus::Exercise);
    let title = format!(
        "{}{}",
        if test {
            "[ทดสอบ / TEST] "
        } else {
            ""
        },
        air.headline
    );
    let script = [air.description.as_str(), air.instruction.as_str()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let new = NewAnnouncement {
        title: title.chars().take(200).collect(),
        script,
        agency: air.sender.clone(),
        priority: Priority::High,
        sha256: sha,
        size_bytes: bytes.len() as u64,
        container: probe.container,
        codec: probe.codec,
        sample_rate: probe.sample_rate,
        channels: probe.channels,
        duration_ms: probe.duration_ms,
        loudness_lufs: probe.loudness_lufs,
        valid_from: None,
        valid_until: air.expires,
        plays_per_day: HIGH_PLAYS_PER_DAY,
        outputs: runner.config.output_names(),
        uploaded_by: format!("cap:{}", air.sender),
    };
    let source_ref = format!("{}/{}", air.sender, air.identifier);
    let (by, sent) = (format!("cap:{}", air.sender), air.sent);
    let detail = format!(
        "CAP {} ({:?}, {}): {}",
        air.identifier,
        air.level,
        air.event,
        air.log_text()
    );
    let a = db(&runner.store, move |s| {
        s.insert_approved(&new, Source::Cap, &source_ref, &by, sent, &detail, now)
    })
    .await?;
    Ok((a.id, note))
}

/// The message's audio resource, digest-checked and probed: embedded (`derefUri`) or fetched by
/// an absolute `uri`. `Ok(None)` when there is none.
async fn resource_audio(
    runner: &Arc<Runner>,
    air: &CapAir,
) -> Result<Option<(Vec<u8>, media::ProbeInfo)>, String> {
    let Some(res) = &air.resource else {
        return Ok(None);
    };
    let bytes = match (&res.deref, &res.uri) {
        (Some(b), _) => b.clone(),
        (None, Some(uri)) if uri.starts_with("http://") || uri.starts_with("https://") => {
            fetch(uri).await?
        }
        _ => return Ok(None),
    };
    if res.digest_sha1.is_none() {
        return Err("it has no digest to check it against".into());
    }
    res.check_digest(&bytes).map_err(|e| e.to_string())?;
    let tmp_dir = runner.config.data_dir.join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(|e| e.to_string())?;
    let tmp = tmp_dir.join(format!("cap-{}.audio", hex::encode(Sha256::digest(&bytes))));
    tokio::fs::write(&tmp, &bytes)
        .await
        .map_err(|e| e.to_string())?;
    let probe = media::probe_in_child(tmp.clone(), PROBE_BUDGET).await;
    let _ = tokio::fs::remove_file(&tmp).await;
    let probe = probe.map_err(|e| format!("it cannot be played: {e}"))?;
    Ok(Some((bytes, probe)))
}

async fn fetch(uri: &str) -> Result<Vec<u8>, String> {
    let resp = super::http_client()
        .get(uri)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{uri} answered HTTP {}", resp.status().as_u16()));
    }
    super::read_body(resp, MAX_RESOURCE_BYTES)
        .await
        .map_err(|e| format!("{uri}: {e}"))
}

/// Store the alert's audio at `dest` in the audio store, whole or not at all (the same synced
/// temp file and rename as a published file).
async fn write_atomically(dest: PathBuf, bytes: Vec<u8>) -> Result<(), AlertError> {
    tokio::task::spawn_blocking(move || {
        let (Some(dir), Some(name)) = (dest.parent(), dest.file_name().and_then(|n| n.to_str()))
        else {
            return Err(format!("{} is not a file in a folder", dest.display()));
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        super::publish::write_atomically(dir, name, &bytes, None).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| AlertError::Io(e.to_string()))?
    .map_err(|e| AlertError::Io(format!("storing the alert's audio: {e}")))
}

/// Poll a CAP feed until `shutdown`: the URL answers one CAP message, or an Atom/RSS feed whose
/// entries link to CAP messages (each fetched and handled; ones already recorded cost nothing).
pub async fn poll_feed(
    runner: Arc<Runner>,
    url: String,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let http = super::http_client();
    let mut etag: Option<String> = None;
    loop {
        if let Err(e) = poll_feed_once(&runner, &http, &url, &mut etag).await {
            tracing::warn!(%url, error = %e, "CAP feed poll failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn get_bounded(
    http: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
) -> Result<Option<(Vec<u8>, Option<String>)>, String> {
    let mut req = http.get(url).timeout(Duration::from_secs(60));
    if let Some(e) = etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, e);
    }
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(format!("{url} answered HTTP {}", resp.status().as_u16()));
    }
    let tag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let out = super::read_body(resp, cap::MAX_CAP_BYTES)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(Some((out, tag)))
}

async fn poll_feed_once(
    runner: &Arc<Runner>,
    http: &reqwest::Client,
    url: &str,
    etag: &mut Option<String>,
) -> Result<(), String> {
    let Some((body, tag)) = get_bounded(http, url, etag.as_deref()).await? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&body);
    let mut failures = Vec::new();
    if text.contains(cap::CAP_1_2_NS)
        && text.contains("<alert")
        && !text.contains("<feed")
        && !text.contains("<rss")
    {
        if let Err(e) = handle(runner, &body, url).await {
            failures.push(e.to_string());
        }
    } else {
        // An index (Atom or RSS): every link to a message.
        for link in feed_links(&text) {
            let link = absolute(url, &link);
            match get_bounded(http, &link, None).await {
                Ok(Some((msg, _))) => {
                    if let Err(e) = handle(runner, &msg, &link).await {
                        failures.push(format!("{link}: {e}"));
                    }
                }
                Ok(None) => {}
                Err(e) => failures.push(e),
            }
        }
    }
    if failures.is_empty() {
        *etag = tag;
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// `href="…"` of Atom `<link>` and the text of RSS `<link>` elements, in order.
fn feed_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // The entries' links only: a channel's own <link> is its web page, not a message.
    let first_entry = ["<entry", "<item"]
        .iter()
        .filter_map(|t| text.find(t))
        .min()
        .unwrap_or(0);
    let mut rest = &text[first_entry..];
    while let Some(i) = rest.find("<link") {
        rest = &rest[i + 5..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        if let Some(h) = tag.find("href=\"") {
            let v = &tag[h + 6..];
            if let Some(q) = v.find('"') {
                out.push(v[..q].replace("&amp;", "&"));
            }
        } else if let Some(close) = rest.find("</link>") {
            let v = rest[end.min(close)..close].trim_start_matches('>').trim();
            if !v.is_empty() {
                out.push(v.replace("&amp;", "&"));
            }
        }
    }
    out.retain(|l| !l.is_empty());
    out.dedup();
    out
}

fn absolute(base: &str, link: &str) -> String {
    if link.starts_with("http://") || link.starts_with("https://") {
        return link.to_string();
    }
    match base.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{}", link.trim_start_matches("./")),
        None => link.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_links_come_from_atom_and_rss() {
        let atom = r#"<feed><entry><link rel="alternate" href="a.xml"/></entry><entry><link href="http://x/b.xml?x=1&amp;y=2"/></entry></feed>"#;
        assert_eq!(feed_links(atom), ["a.xml", "http://x/b.xml?x=1&y=2"]);
        let rss = "<rss><channel><link>http://x/</link><item><link>http://x/c.xml</link></item></channel></rss>";
        assert_eq!(feed_links(rss), ["http://x/c.xml"]);
        assert_eq!(
            absolute("http://h/feed/index.atom", "a.xml"),
            "http://h/feed/a.xml"
        );
    }
}
