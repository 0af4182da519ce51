//! `hokrajai publish` (province side): turn announcements approved in this store into a signed
//! manifest plus the audio it names, in a folder any static web server can serve.
//!
//! The published set is cumulative: each publish starts from the folder's current manifest
//! (checked with the same key), adds or replaces the items asked for, moves withdrawn ones to
//! `withdrawn`, drops expired ones, and writes sequence + 1. Audio is copied first and the
//! manifest last, each through a synced temp file and a rename, so a box never reads a manifest
//! naming audio that is not there yet, nor a half-written file.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use super::manifest::{self, Manifest, ManifestError, ManifestItem, Withdrawn};
use crate::domain::{Announcement, AnnouncementId, AnnouncementStatus};
use crate::store::{Store, StoreError};

/// The manifest's file name in the published folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What to publish.
#[derive(Debug, Clone, Default)]
pub struct PublishRequest {
    /// Announcements of this store to add (or refresh); each must be approved and still valid.
    pub items: Vec<AnnouncementId>,
    /// Manifest item ids to take back, with the reason the districts are told.
    pub withdraw: Vec<WithdrawRequest>,
    /// District codes the new `items` are for; empty means every district.
    pub districts: Vec<String>,
    /// Who publishes (written into the manifest).
    pub publisher: String,
    /// This store's output names. An item meant for all of them is published for every output
    /// (`outputs` empty), since a district's outputs need not carry the province's names.
    pub all_outputs: Vec<String>,
    /// Start over when the folder's manifest does not verify with this key (its sequence is
    /// still continued when it can be read at all).
    pub force: bool,
}

/// One `--withdraw ID[:REASON]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawRequest {
    pub id: String,
    pub reason: String,
}

impl WithdrawRequest {
    /// Parse `ID[:REASON]`; without a reason, a default one.
    pub fn parse(arg: &str) -> Result<WithdrawRequest, PublishError> {
        let (id, reason) = match arg.split_once(':') {
            Some((id, reason)) => (id.trim(), reason.trim()),
            None => (arg.trim(), ""),
        };
        if id.is_empty() {
            return Err(PublishError::BadWithdraw(arg.to_owned()));
        }
        Ok(WithdrawRequest {
            id: id.to_owned(),
            reason: if reason.is_empty() {
                DEFAULT_WITHDRAW_REASON.to_owned()
            } else {
                reason.to_owned()
            },
        })
    }
}

const DEFAULT_WITHDRAW_REASON: &str = "withdrawn by the province";

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    pub sequence: u64,
    pub manifest: PathBuf,
    /// Item ids now published, in manifest order.
    pub items: Vec<String>,
    /// Item ids added or refreshed by this publish.
    pub added: Vec<String>,
    /// Item ids moved to `withdrawn` by this publish (asked for, or withdrawn/rejected here).
    pub withdrawn: Vec<String>,
    /// Item ids dropped because their `valid_until` has passed.
    pub expired: Vec<String>,
    /// Withdrawn entries the manifest carries in all.
    pub withdrawn_total: usize,
    pub files_copied: usize,
    pub bytes_copied: u64,
}

impl fmt::Display for PublishReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        writeln!(
            f,
            "published sequence {} to {}",
            self.sequence,
            self.manifest.display()
        )?;
        writeln!(
            f,
            "  items:     {} ({})",
            self.items.len(),
            list(&self.items)
        )?;
        writeln!(f, "  added:     {}", list(&self.added))?;
        writeln!(
            f,
            "  withdrawn: {} (now {} in all)",
            list(&self.withdrawn),
            self.withdrawn_total
        )?;
        writeln!(f, "  expired:   {}", list(&self.expired))?;
        write!(
            f,
            "  audio:     {} files copied, {} bytes",
            self.files_copied, self.bytes_copied
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("announcement {0} is not in this store")]
    NotFound(AnnouncementId),
    #[error(
        "announcement {id} is {status}, not approved: only approved announcements can be published"
    )]
    NotApproved { id: AnnouncementId, status: String },
    #[error("announcement {id} expired at {until} (valid_until); it cannot be published")]
    Expired {
        id: AnnouncementId,
        until: DateTime<Utc>,
    },
    #[error("announcement {0} is approved but has no approver recorded")]
    NoApprover(AnnouncementId),
    #[error("item {0} is both to be published and withdrawn")]
    PublishAndWithdraw(String),
    #[error("'{0}' has no item id: write ID or ID:REASON")]
    BadWithdraw(String),
    #[error("reading announcement {id}: {source}")]
    Store {
        id: AnnouncementId,
        source: StoreError,
    },
    #[error("the published manifest {} does not verify with this key: {source}; check --key and --out, or pass --force to start over", path.display())]
    PreviousManifest {
        path: PathBuf,
        source: ManifestError,
    },
    #[error("item {id}: its audio {} is missing", path.display())]
    MissingAudio { id: String, path: PathBuf },
    #[error("item {id}: the audio {} does not match its hash (expected {expected}, {size} bytes; found {actual}, {found} bytes)", path.display())]
    CorruptAudio {
        id: String,
        path: PathBuf,
        expected: String,
        size: u64,
        actual: String,
        found: u64,
    },
    #[error("the new manifest would not verify: {0}")]
    Invalid(ManifestError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PublishError + 'a {
    move |source| PublishError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Publish into `out`: see the module doc. `audio_dir` is this store's content-addressed audio
/// folder (`<data_dir>/audio/<sha256>`). On error nothing in `out` is half-written: copied audio
/// may be there, the manifest is the previous one.
pub fn publish(
    store: &Store,
    audio_dir: &Path,
    key: &SigningKey,
    out: &Path,
    req: &PublishRequest,
    now: DateTime<Utc>,
) -> Result<PublishReport, PublishError> {
    let manifest_path = out.join(MANIFEST_FILE);
    let previous = read_previous(&manifest_path, key, req.force)?;
    let (mut items, mut withdrawn, last_sequence): (BTreeMap<String, ManifestItem>, _, _) =
        match previous {
            Previous::Verified(m) => (
                m.items.into_iter().map(|i| (i.id.clone(), i)).collect(),
                m.withdrawn,
                m.sequence,
            ),
            Previous::Unverified { sequence } => (BTreeMap::new(), Vec::new(), sequence),
            Previous::None => (BTreeMap::new(), Vec::new(), 0),
        };
    let mut report_withdrawn = Vec::new();

    for w in &req.withdraw {
        if req.items.iter().any(|id| id.to_string() == w.id) {
            return Err(PublishError::PublishAndWithdraw(w.id.clone()));
        }
    }

    // Items already published that were withdrawn or rejected here since.
    let published: Vec<String> = items.keys().cloned().collect();
    for id in published {
        let Ok(number) = id.parse::<AnnouncementId>() else {
            continue;
        };
        let a = match store.announcement(number) {
            Ok(a) => a,
            // Gone from this store (or never from it): keep what was published.
            Err(StoreError::NotFound) => continue,
            Err(source) => return Err(PublishError::Store { id: number, source }),
        };
        if matches!(
            a.status,
            AnnouncementStatus::Withdrawn | AnnouncementStatus::Rejected
        ) {
            items.remove(&id);
            withdrawn.retain(|w: &Withdrawn| w.id != id);
            withdrawn.push(Withdrawn {
                id: id.clone(),
                at: a.decided_at.unwrap_or(now),
                reason: a
                    .reason
                    .clone()
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| format!("{} at the province", a.status.as_str())),
            });
            report_withdrawn.push(id);
        }
    }

    let mut added = Vec::new();
    for &id in &req.items {
        let a = match store.announcement(id) {
            Ok(a) => a,
            Err(StoreError::NotFound) => return Err(PublishError::NotFound(id)),
            Err(source) => return Err(PublishError::Store { id, source }),
        };
        let item = to_item(&a, req, now)?;
        withdrawn.retain(|w| w.id != item.id);
        added.push(item.id.clone());
        items.insert(item.id.clone(), item);
    }

    for w in &req.withdraw {
        items.remove(&w.id);
        withdrawn.retain(|old| old.id != w.id);
        withdrawn.push(Withdrawn {
            id: w.id.clone(),
            at: now,
            reason: w.reason.clone(),
        });
        report_withdrawn.push(w.id.clone());
    }

    let mut expired = Vec::new();
    items.retain(|id, item| {
        let live = item.valid_until.is_none_or(|u| now < u);
        if !live {
            expired.push(id.clone());
        }
        live
    });
    // The oldest withdrawals go first if the list ever outgrows a manifest.
    if withdrawn.len() > manifest::MAX_WITHDRAWN {
        withdrawn.sort_by_key(|w| w.at);
        let excess = withdrawn.len() - manifest::MAX_WITHDRAWN;
        withdrawn.drain(..excess);
    }

    // Numeric ids in numeric order, then any others.
    let mut items: Vec<ManifestItem> = items.into_values().collect();
    items.sort_by_cached_key(|i| (i.id.parse::<i64>().unwrap_or(i64::MAX), i.id.clone()));
    let m = Manifest {
        sequence: last_sequence + 1,
        published_at: now,
        publisher: req.publisher.clone(),
        items,
        withdrawn,
    };
    let bytes = manifest::sign(&m, key);
    // What the boxes will check, checked here first.
    manifest::verify(&bytes, &[key.verifying_key()]).map_err(PublishError::Invalid)?;

    std::fs::create_dir_all(out).map_err(io_err("creating the publish folder", out))?;
    let mut files_copied = 0;
    let mut bytes_copied = 0;
    for item in &m.items {
        if let Some(n) = place_audio(audio_dir, out, item)? {
            files_copied += 1;
            bytes_copied += n;
        }
    }
    // Web servers make the ETag and Last-Modified from the mtime in whole seconds (and the
    // size): a second publish within the same second must still look changed to a box asking
    // with If-None-Match, so the new manifest's mtime is always a second past the last one's.
    let previous_mtime = std::fs::metadata(&manifest_path)
        .and_then(|m| m.modified())
        .ok();
    let mtime = match previous_mtime {
        Some(prev) => std::cmp::max(SystemTime::now(), prev + Duration::from_secs(1)),
        None => SystemTime::now(),
    };
    write_atomically(out, MANIFEST_FILE, &bytes, Some(mtime))?;

    Ok(PublishReport {
        sequence: m.sequence,
        manifest: manifest_path,
        items: m.items.iter().map(|i| i.id.clone()).collect(),
        added,
        withdrawn: report_withdrawn,
        expired,
        withdrawn_total: m.withdrawn.len(),
        files_copied,
        bytes_copied,
    })
}

enum Previous {
    None,
    Verified(Manifest),
    /// Did not verify, and --force was given: only its sequence is continued.
    Unverified {
        sequence: u64,
    },
}

fn read_previous(path: &Path, key: &SigningKey, force: bool) -> Result<Previous, PublishError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Previous::None),
        Err(e) => return Err(io_err("reading the published manifest", path)(e)),
    };
    match manifest::verify(&bytes, &[key.verifying_key()]) {
        Ok(m) => Ok(Previous::Verified(m)),
        Err(_) if force => Ok(Previous::Unverified {
            sequence: unverified_sequence(&bytes).unwrap_or(0),
        }),
        Err(source) => Err(PublishError::PreviousManifest {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The sequence an unverifiable manifest claims, so that starting over (with --force) still
/// moves the boxes forward rather than looking like a replay to them.
fn unverified_sequence(bytes: &[u8]) -> Option<u64> {
    let envelope: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let signed: serde_json::Value = serde_json::from_str(envelope.get("signed")?.as_str()?).ok()?;
    signed.get("sequence")?.as_u64()
}

fn to_item(
    a: &Announcement,
    req: &PublishRequest,
    now: DateTime<Utc>,
) -> Result<ManifestItem, PublishError> {
    if a.status != AnnouncementStatus::Approved {
        return Err(PublishError::NotApproved {
            id: a.id,
            status: a.status.as_str().to_owned(),
        });
    }
    if let Some(until) = a.valid_until {
        if until <= now {
            return Err(PublishError::Expired { id: a.id, until });
        }
    }
    let (Some(approved_by), Some(approved_at)) = (a.decided_by.clone(), a.decided_at) else {
        return Err(PublishError::NoApprover(a.id));
    };
    let for_all_outputs = !req.all_outputs.is_empty()
        && req
            .all_outputs
            .iter()
            .all(|o| a.outputs.iter().any(|x| x == o));
    Ok(ManifestItem {
        id: a.id.to_string(),
        title: a.title.clone(),
        script: a.script.clone(),
        agency: a.agency.clone(),
        priority: a.priority,
        sha256: a.sha256.clone(),
        size: a.size_bytes,
        duration_ms: a.duration_ms,
        valid_from: a.valid_from,
        valid_until: a.valid_until,
        plays_per_day: a.plays_per_day,
        districts: req.districts.clone(),
        outputs: if for_all_outputs {
            Vec::new()
        } else {
            a.outputs.clone()
        },
        approved_by,
        approved_at,
        file: a.sha256.clone(),
    })
}

/// Put `item`'s audio at `out/<sha256>` unless it is already there whole. Returns the bytes
/// copied, or None if nothing had to be.
fn place_audio(
    audio_dir: &Path,
    out: &Path,
    item: &ManifestItem,
) -> Result<Option<u64>, PublishError> {
    let dest = out.join(&item.file);
    if let Ok(meta) = std::fs::metadata(&dest) {
        if meta.is_file() && meta.len() == item.size {
            let (hash, _) = hash_file(&dest)?;
            if hash == item.sha256 {
                return Ok(None);
            }
            tracing::warn!(path = %dest.display(), id = %item.id, "published audio did not match its hash; copying it again");
        }
    }
    let src = audio_dir.join(&item.sha256);
    let mut input = match std::fs::File::open(&src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PublishError::MissingAudio {
                id: item.id.clone(),
                path: src,
            })
        }
        Err(e) => return Err(io_err("opening audio", &src)(e)),
    };
    let tmp = temp_name(out, &item.file);
    let result = (|| {
        let mut output = std::fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        let (hash, n) = copy_hashing(&mut input, &src, &mut output, &tmp)?;
        // The store's copy is checked on the way: a damaged file must not go to every district.
        if hash != item.sha256 || n != item.size {
            return Err(PublishError::CorruptAudio {
                id: item.id.clone(),
                path: src.clone(),
                expected: item.sha256.clone(),
                size: item.size,
                actual: hash,
                found: n,
            });
        }
        output.sync_all().map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io_err("renaming into place", &dest))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let n = result?;
    sync_dir(out);
    Ok(Some(n))
}

fn temp_name(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Copy `input` to `output`, returning the SHA-256 (hex) of what was copied and its length.
fn copy_hashing(
    input: &mut impl Read,
    src: &Path,
    output: &mut impl Write,
    dest: &Path,
) -> Result<(String, u64), PublishError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", src)(e)),
        };
        hasher.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(io_err("writing", dest))?;
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

fn hash_file(path: &Path) -> Result<(String, u64), PublishError> {
    let mut f = std::fs::File::open(path).map_err(io_err("opening", path))?;
    copy_hashing(&mut f, path, &mut std::io::sink(), path)
}

/// Write `bytes` to `dir/name` through a synced temp file and a rename, with this `mtime`.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mtime: Option<SystemTime>,
) -> Result<(), PublishError> {
    let tmp = temp_name(dir, name);
    let dest = dir.join(name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        f.write_all(bytes).map_err(io_err("writing", &tmp))?;
        if let Some(t) = mtime {
            f.set_modified(t)
                .map_err(io_err("setting the time of", &tmp))?;
        }
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io_err("renaming into place", &dest))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir);
    Ok(())
}

/// Make a rename durable; a failure here only weakens crash safety, so it is not an error.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Priority;
    use crate::store::NewAnnouncement;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    struct Province {
        store: Store,
        audio: tempfile::TempDir,
        out: tempfile::TempDir,
        key: SigningKey,
    }

    impl Province {
        fn new() -> Province {
            Province {
                store: Store::open_in_memory().unwrap(),
                audio: tempfile::tempdir().unwrap(),
                out: tempfile::tempdir().unwrap(),
                key: SigningKey::from_bytes(&[5; 32]),
            }
        }

        /// Store an announcement with `bytes` as its audio; approve it unless `approve` is false.
        fn add(&self, bytes: &[u8], valid_until: Option<&str>, approve: bool) -> AnnouncementId {
            let sha = hex::encode(Sha256::digest(bytes));
            std::fs::write(self.audio.path().join(&sha), bytes).unwrap();
            let a = self
                .store
                .insert_announcement(
                    &NewAnnouncement {
                        title: "ประกาศ".into(),
                        script: "ข้อความ".into(),
                        agency: "จังหวัด".into(),
                        priority: Priority::High,
                        sha256: sha,
                        size_bytes: bytes.len() as u64,
                        container: "wav".into(),
                        codec: "pcm_s16le".into(),
                        sample_rate: 48_000,
                        channels: 1,
                        duration_ms: 1000,
                        loudness_lufs: None,
                        valid_from: None,
                        valid_until: valid_until.map(at),
                        plays_per_day: 3,
                        outputs: vec!["tower".into(), "pa".into()],
                        uploaded_by: "somchai".into(),
                    },
                    at("2026-11-01T00:00:00Z"),
                )
                .unwrap();
            if approve {
                self.store
                    .decide(
                        a.id,
                        AnnouncementStatus::Approved,
                        "kanya",
                        "",
                        at("2026-11-01T01:00:00Z"),
                    )
                    .unwrap();
            }
            a.id
        }

        fn publish(&self, req: &PublishRequest, now: &str) -> Result<PublishReport, PublishError> {
            publish(
                &self.store,
                self.audio.path(),
                &self.key,
                self.out.path(),
                req,
                at(now),
            )
        }

        fn manifest(&self) -> Manifest {
            let bytes = std::fs::read(self.out.path().join(MANIFEST_FILE)).unwrap();
            manifest::verify(&bytes, &[self.key.verifying_key()]).unwrap()
        }
    }

    fn req(items: &[AnnouncementId]) -> PublishRequest {
        PublishRequest {
            items: items.to_vec(),
            publisher: "province".into(),
            all_outputs: vec!["tower".into(), "pa".into()],
            ..Default::default()
        }
    }

    #[test]
    fn cumulative_publishes_withdraw_and_expire() {
        let p = Province::new();
        let a = p.add(b"first audio", None, true);
        let b = p.add(b"second audio", Some("2026-11-10T00:00:00Z"), true);
        let r = p.publish(&req(&[a, b]), "2026-11-02T00:00:00Z").unwrap();
        assert_eq!((r.sequence, r.files_copied), (1, 2));
        let m = p.manifest();
        assert_eq!(m.items.len(), 2);
        assert_eq!(m.items[0].approved_by, "kanya");
        assert!(m.items[0].outputs.is_empty(), "all outputs → every output");
        for item in &m.items {
            assert!(p.out.path().join(&item.sha256).is_file());
        }

        // Nothing new: audio already there is not copied again. The manifest has the same size
        // and is written in the same second, yet its mtime (hence a web server's ETag) moves.
        let manifest_path = p.out.path().join(MANIFEST_FILE);
        let mtime = |path: &Path| std::fs::metadata(path).unwrap().modified().unwrap();
        let (before, size) = (
            mtime(&manifest_path),
            std::fs::metadata(&manifest_path).unwrap().len(),
        );
        let r = p.publish(&req(&[]), "2026-11-03T00:00:00Z").unwrap();
        assert_eq!((r.sequence, r.files_copied, r.items.len()), (2, 0, 2));
        assert_eq!(std::fs::metadata(&manifest_path).unwrap().len(), size);
        assert!(mtime(&manifest_path) >= before + Duration::from_secs(1));

        // Withdrawn in the store → withdrawn in the manifest, with the store's reason.
        p.store
            .decide(
                a,
                AnnouncementStatus::Withdrawn,
                "wichai",
                "ผิดวันที่",
                at("2026-11-04T00:00:00Z"),
            )
            .unwrap();
        let r = p.publish(&req(&[]), "2026-11-05T00:00:00Z").unwrap();
        assert_eq!(r.withdrawn, vec![a.to_string()]);
        let m = p.manifest();
        assert_eq!(m.withdrawn.len(), 1);
        assert_eq!(m.withdrawn[0].reason, "ผิดวันที่");

        // Past valid_until: dropped; the withdrawn entry stays.
        let r = p.publish(&req(&[]), "2026-11-11T00:00:00Z").unwrap();
        assert_eq!(r.expired, vec![b.to_string()]);
        let m = p.manifest();
        assert_eq!((m.sequence, m.items.len(), m.withdrawn.len()), (4, 0, 1));
    }

    #[test]
    fn refusals_name_the_announcement() {
        let p = Province::new();
        let pending = p.add(b"pending", None, false);
        let old = p.add(b"old", Some("2026-11-02T00:00:00Z"), true);
        let err = p
            .publish(&req(&[pending]), "2026-11-03T00:00:00Z")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("announcement {pending} is pending")),
            "{err}"
        );
        let err = p.publish(&req(&[old]), "2026-11-03T00:00:00Z").unwrap_err();
        assert!(matches!(err, PublishError::Expired { .. }), "{err}");
        let err = p.publish(&req(&[999]), "2026-11-03T00:00:00Z").unwrap_err();
        assert!(matches!(err, PublishError::NotFound(999)), "{err}");
        assert!(!p.out.path().join(MANIFEST_FILE).exists());
    }

    #[test]
    fn damaged_store_audio_is_not_published() {
        let p = Province::new();
        let a = p.add(b"good audio", None, true);
        let sha = p.store.announcement(a).unwrap().sha256;
        std::fs::write(p.audio.path().join(&sha), b"bad audio!").unwrap();
        let err = p.publish(&req(&[a]), "2026-11-03T00:00:00Z").unwrap_err();
        assert!(matches!(err, PublishError::CorruptAudio { .. }), "{err}");
        // Neither the file nor a temp file nor a manifest is left.
        assert_eq!(std::fs::read_dir(p.out.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_manifest_from_another_key_is_refused_unless_forced() {
        let p = Province::new();
        let a = p.add(b"audio", None, true);
        p.publish(&req(&[a]), "2026-11-03T00:00:00Z").unwrap();
        let other = Province {
            key: SigningKey::from_bytes(&[6; 32]),
            ..Province::new()
        };
        let err = publish(
            &p.store,
            p.audio.path(),
            &other.key,
            p.out.path(),
            &req(&[a]),
            at("2026-11-04T00:00:00Z"),
        )
        .unwrap_err();
        assert!(
            matches!(err, PublishError::PreviousManifest { .. }),
            "{err}"
        );
        let forced = PublishRequest {
            force: true,
            ..req(&[a])
        };
        let r = publish(
            &p.store,
            p.audio.path(),
            &other.key,
            p.out.path(),
            &forced,
            at("2026-11-04T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(r.sequence, 2, "the sequence carries on");
    }

    #[test]
    fn withdraw_argument() {
        assert_eq!(
            WithdrawRequest::parse("12:ผิดวันที่").unwrap(),
            WithdrawRequest {
                id: "12".into(),
                reason: "ผิดวันที่".into()
            }
        );
        assert_eq!(
            WithdrawRequest::parse("12").unwrap().reason,
            DEFAULT_WITHDRAW_REASON
        );
        assert!(WithdrawRequest::parse(":why").is_err());
    }
}
