//! The signed manifest of approved content the province publishes: its types, signing, and the
//! checks a district box makes before it believes one. Pure: serde and ed25519-dalek, no IO.
//!
//! The file served is `manifest.json`, an envelope around the manifest *as a JSON string*:
//!
//! ```json
//! {"format": "hokrajai-manifest/1", "key": "<64 hex>", "signature": "<128 hex>",
//!  "signed": "{\"sequence\":1, ...}"}
//! ```
//!
//! The signature covers the exact UTF-8 bytes of `signed`, so nothing has to be re-serialized
//! the same way on both sides to check it. The embedded `key` only says which key signed; it
//! is believed only if it is one the box was told to trust.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::domain::Priority;

/// The envelope's `format`; a box refuses any other.
pub const FORMAT: &str = "hokrajai-manifest/1";
/// The largest manifest a box reads (callers also stop the download there).
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;
/// The most items one manifest may carry.
pub const MAX_ITEMS: usize = 10_000;
/// The most withdrawn entries one manifest may carry (they are kept across publishes).
pub const MAX_WITHDRAWN: usize = 100_000;
/// The longest item id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// What the province publishes: everything currently approved for the districts, and what was
/// taken back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// 1 for the first publish, one more for each after; a box never goes backwards.
    pub sequence: u64,
    pub published_at: DateTime<Utc>,
    /// Who published (the province office's name).
    pub publisher: String,
    pub items: Vec<ManifestItem>,
    /// Items taken back, kept across publishes so a box that missed one still learns.
    #[serde(default)]
    pub withdrawn: Vec<Withdrawn>,
}

/// One approved announcement in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestItem {
    /// The province's id, stable across publishes (the province announcement id, in decimal).
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub script: String,
    #[serde(default)]
    pub agency: String,
    pub priority: Priority,
    /// SHA-256 of the audio, 64 lowercase hex digits.
    pub sha256: String,
    /// Bytes of audio.
    pub size: u64,
    pub duration_ms: u64,
    #[serde(default)]
    pub valid_from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    pub plays_per_day: u32,
    /// District codes this is for; empty means every district.
    #[serde(default)]
    pub districts: Vec<String>,
    /// Output names this is for; empty means every output of the box.
    #[serde(default)]
    pub outputs: Vec<String>,
    pub approved_by: String,
    pub approved_at: DateTime<Utc>,
    /// Where the audio is, relative to the manifest: always exactly `sha256`.
    pub file: String,
}

/// An item the province took back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    pub id: String,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub reason: String,
}

impl ManifestItem {
    /// Is this item for the district with this code? An item with no districts is for every
    /// district. A box with no district code configured takes only those: it cannot tell
    /// whether another district's item is meant for it.
    pub fn for_district(&self, code: Option<&str>) -> bool {
        if self.districts.is_empty() {
            return true;
        }
        match code.map(str::trim) {
            Some(code) if !code.is_empty() => self
                .districts
                .iter()
                .any(|d| d.trim().eq_ignore_ascii_case(code)),
            _ => false,
        }
    }
}

/// How a verified manifest's sequence relates to the last one applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceStep {
    /// The same sequence as the one applied: nothing to do.
    Unchanged,
    /// A later one (or the first): apply it.
    Newer,
}

/// Why a manifest was not believed. Each says what was wrong, and with which item.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("the manifest envelope is not valid JSON of the expected shape: {0}")]
    Envelope(String),
    #[error("the manifest format is '{0}', not '{FORMAT}' (is this box too old?)")]
    UnknownFormat(String),
    #[error("the manifest's key '{0}' is not an Ed25519 public key (64 hex digits)")]
    BadKey(String),
    #[error("the manifest is signed by key {0}, which this box does not trust")]
    UntrustedKey(String),
    #[error(
        "the manifest's signature does not match its content (altered, or not signed by key {0})"
    )]
    BadSignature(String),
    #[error("the signed manifest is not valid JSON of the expected shape: {0}")]
    Content(String),
    #[error("the manifest's sequence is 0; sequences start at 1")]
    ZeroSequence,
    #[error("the manifest has {count} {what}, more than the {max} allowed")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("a manifest item has an empty id, or one longer than {MAX_ID_BYTES} bytes or with control characters: '{0}'")]
    BadId(String),
    #[error("item '{0}' appears more than once in the manifest")]
    DuplicateId(String),
    #[error("item '{id}': sha256 '{sha256}' is not 64 lowercase hex digits")]
    BadSha256 { id: String, sha256: String },
    #[error("item '{id}': file '{file}' must be exactly its sha256 (no other name or path)")]
    BadFile { id: String, file: String },
    #[error("item '{0}': the audio size is 0")]
    EmptyAudio(String),
    #[error("item '{0}': the duration is 0")]
    ZeroDuration(String),
    #[error("item '{0}': valid_until is not after valid_from")]
    BadValidity(String),
    #[error("item '{0}' is both published and withdrawn")]
    WithdrawnAndPublished(String),
    #[error("manifest sequence {new} is older than the one already applied ({last}): a replayed or rolled-back manifest is refused")]
    Replayed { last: u64, new: u64 },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    key: String,
    signature: String,
    signed: String,
}

/// The envelope bytes (pretty JSON, ending in a newline) for `m` signed by `key`.
pub fn sign(m: &Manifest, key: &SigningKey) -> Vec<u8> {
    // Plain structs of strings, numbers and timestamps: serializing cannot fail.
    let signed = serde_json::to_string(m).unwrap_or_default();
    let envelope = Envelope {
        format: FORMAT.to_owned(),
        key: hex::encode(key.verifying_key().as_bytes()),
        signature: hex::encode(key.sign(signed.as_bytes()).to_bytes()),
        signed,
    };
    let mut bytes = serde_json::to_vec_pretty(&envelope).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Believe a manifest only if its envelope names one of `trusted` (compared byte for byte),
/// its signature checks out (strictly) over the exact `signed` text, and its content passes
/// [`validate`]. Returns the manifest; the caller still checks the sequence
/// ([`check_sequence`]).
pub fn verify(bytes: &[u8], trusted: &[VerifyingKey]) -> Result<Manifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            size: bytes.len(),
            max: MAX_MANIFEST_BYTES,
        });
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Envelope(e.to_string()))?;
    if envelope.format != FORMAT {
        return Err(ManifestError::UnknownFormat(
            envelope.format.chars().take(64).collect(),
        ));
    }
    let shown_key: String = envelope.key.chars().take(80).collect();
    let mut key_bytes = [0u8; 32];
    hex::decode_to_slice(envelope.key.trim(), &mut key_bytes)
        .map_err(|_| ManifestError::BadKey(shown_key.clone()))?;
    let key = trusted
        .iter()
        .find(|k| k.as_bytes() == &key_bytes)
        .ok_or_else(|| ManifestError::UntrustedKey(hex::encode(key_bytes)))?;
    let mut sig_bytes = [0u8; 64];
    hex::decode_to_slice(envelope.signature.trim(), &mut sig_bytes)
        .map_err(|_| ManifestError::BadSignature(hex::encode(key_bytes)))?;
    key.verify_strict(
        envelope.signed.as_bytes(),
        &Signature::from_bytes(&sig_bytes),
    )
    .map_err(|_| ManifestError::BadSignature(hex::encode(key_bytes)))?;
    let manifest: Manifest = serde_json::from_str(&envelope.signed)
        .map_err(|e| ManifestError::Content(e.to_string()))?;
    validate(&manifest)?;
    Ok(manifest)
}

/// The content rules every manifest must meet, signed or not (the publisher checks its own
/// output with them too).
pub fn validate(m: &Manifest) -> Result<(), ManifestError> {
    if m.sequence == 0 {
        return Err(ManifestError::ZeroSequence);
    }
    for (what, count, max) in [
        ("items", m.items.len(), MAX_ITEMS),
        ("withdrawn entries", m.withdrawn.len(), MAX_WITHDRAWN),
    ] {
        if count > max {
            return Err(ManifestError::TooMany { what, count, max });
        }
    }
    let mut ids = HashSet::with_capacity(m.items.len());
    for item in &m.items {
        let id = &item.id;
        check_id(id)?;
        if !ids.insert(id.as_str()) {
            return Err(ManifestError::DuplicateId(id.clone()));
        }
        if !is_sha256_hex(&item.sha256) {
            return Err(ManifestError::BadSha256 {
                id: id.clone(),
                sha256: item.sha256.chars().take(80).collect(),
            });
        }
        // Equal to a checked hash, so it cannot hold '/', '..' or anything else of a path.
        if item.file != item.sha256 {
            return Err(ManifestError::BadFile {
                id: id.clone(),
                file: item.file.chars().take(200).collect(),
            });
        }
        if item.size == 0 {
            return Err(ManifestError::EmptyAudio(id.clone()));
        }
        if item.duration_ms == 0 {
            return Err(ManifestError::ZeroDuration(id.clone()));
        }
        if let (Some(from), Some(until)) = (item.valid_from, item.valid_until) {
            if from >= until {
                return Err(ManifestError::BadValidity(id.clone()));
            }
        }
    }
    for w in &m.withdrawn {
        check_id(&w.id)?;
        if ids.contains(w.id.as_str()) {
            return Err(ManifestError::WithdrawnAndPublished(w.id.clone()));
        }
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), ManifestError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(ManifestError::BadId(id.chars().take(200).collect()));
    }
    Ok(())
}

/// 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where a verified manifest with sequence `new` stands against the last one applied: an older
/// one is a replay (or the province rolled back) and is refused.
pub fn check_sequence(last_applied: Option<u64>, new: u64) -> Result<SequenceStep, ManifestError> {
    match last_applied {
        Some(last) if new < last => Err(ManifestError::Replayed { last, new }),
        Some(last) if new == last => Ok(SequenceStep::Unchanged),
        _ => Ok(SequenceStep::Newer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn item(id: &str, sha: char) -> ManifestItem {
        let sha256: String = std::iter::repeat_n(sha, 64).collect();
        ManifestItem {
            id: id.into(),
            title: "ประชุมประจำเดือน".into(),
            script: "ขอเชิญชาวบ้านร่วมประชุม".into(),
            agency: "ที่ว่าการอำเภอ".into(),
            priority: Priority::Normal,
            file: sha256.clone(),
            sha256,
            size: 1234,
            duration_ms: 5000,
            valid_from: Some(at("2026-11-01T00:00:00Z")),
            valid_until: Some(at("2026-12-01T00:00:00Z")),
            plays_per_day: 2,
            districts: vec![],
            outputs: vec![],
            approved_by: "kanya".into(),
            approved_at: at("2026-10-31T03:00:00Z"),
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            sequence: 3,
            published_at: at("2026-11-01T01:00:00Z"),
            publisher: "สำนักงานจังหวัด".into(),
            items: vec![item("1", 'a'), item("2", 'b')],
            withdrawn: vec![Withdrawn {
                id: "7".into(),
                at: at("2026-10-30T00:00:00Z"),
                reason: "ผิดวันที่".into(),
            }],
        }
    }

    /// Rewrite the envelope's `signed` text (keeping the signature) with `f`.
    fn tamper_signed(bytes: &[u8], f: impl Fn(&str) -> String) -> Vec<u8> {
        let mut env: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let signed = f(env["signed"].as_str().unwrap());
        env["signed"] = signed.into();
        serde_json::to_vec(&env).unwrap()
    }

    /// Sign `m` without the checks `verify` applies to content (to test those checks).
    fn signed(m: &Manifest) -> Vec<u8> {
        sign(m, &key(1))
    }

    fn trusted() -> Vec<VerifyingKey> {
        vec![key(9).verifying_key(), key(1).verifying_key()]
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let m = manifest();
        let bytes = sign(&m, &key(1));
        let env: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(env["format"], FORMAT);
        assert_eq!(env["key"], hex::encode(key(1).verifying_key().as_bytes()));
        assert_eq!(env["signature"].as_str().unwrap().len(), 128);
        assert_eq!(verify(&bytes, &trusted()).unwrap(), m);
    }

    #[test]
    fn altered_signed_text_is_refused() {
        let bytes = sign(&manifest(), &key(1));
        let bad = tamper_signed(&bytes, |s| {
            s.replace("\"plays_per_day\":2", "\"plays_per_day\":20")
        });
        assert!(matches!(
            verify(&bad, &trusted()),
            Err(ManifestError::BadSignature(_))
        ));
        // Even whitespace: the signature covers the exact bytes.
        let bad = tamper_signed(&bytes, |s| format!("{s} "));
        assert!(matches!(
            verify(&bad, &trusted()),
            Err(ManifestError::BadSignature(_))
        ));
    }

    #[test]
    fn altered_signature_is_refused() {
        let bytes = sign(&manifest(), &key(1));
        let mut env: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let sig = env["signature"].as_str().unwrap().to_owned();
        let flipped = format!(
            "{}{}",
            if sig.starts_with('0') { "1" } else { "0" },
            &sig[1..]
        );
        env["signature"] = flipped.into();
        let bad = serde_json::to_vec(&env).unwrap();
        assert!(matches!(
            verify(&bad, &trusted()),
            Err(ManifestError::BadSignature(_))
        ));
        env["signature"] = "00".into();
        let bad = serde_json::to_vec(&env).unwrap();
        assert!(matches!(
            verify(&bad, &trusted()),
            Err(ManifestError::BadSignature(_))
        ));
    }

    #[test]
    fn a_key_the_box_does_not_trust_is_refused_even_if_the_signature_is_good() {
        let bytes = sign(&manifest(), &key(2));
        let err = verify(&bytes, &trusted()).unwrap_err();
        assert!(matches!(err, ManifestError::UntrustedKey(_)), "{err}");
        assert!(err
            .to_string()
            .contains(&hex::encode(key(2).verifying_key().as_bytes())));
        assert!(matches!(
            verify(&bytes, &[]),
            Err(ManifestError::UntrustedKey(_))
        ));
        // A trusted key named in the envelope does not help a signature made by another one.
        let mut env: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        env["key"] = hex::encode(key(1).verifying_key().as_bytes()).into();
        assert!(matches!(
            verify(&serde_json::to_vec(&env).unwrap(), &trusted()),
            Err(ManifestError::BadSignature(_))
        ));
    }

    #[test]
    fn envelope_problems_are_named() {
        let bytes = sign(&manifest(), &key(1));
        let mut env: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        env["format"] = "hokrajai-manifest/2".into();
        assert!(matches!(
            verify(&serde_json::to_vec(&env).unwrap(), &trusted()),
            Err(ManifestError::UnknownFormat(f)) if f == "hokrajai-manifest/2"
        ));
        env["format"] = FORMAT.into();
        env["key"] = "xyz".into();
        assert!(matches!(
            verify(&serde_json::to_vec(&env).unwrap(), &trusted()),
            Err(ManifestError::BadKey(_))
        ));
        assert!(matches!(
            verify(b"<html>", &trusted()),
            Err(ManifestError::Envelope(_))
        ));
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            verify(&huge, &trusted()),
            Err(ManifestError::TooLarge { .. })
        ));
    }

    #[test]
    fn replayed_sequences_are_refused() {
        assert_eq!(check_sequence(None, 1).unwrap(), SequenceStep::Newer);
        assert_eq!(check_sequence(Some(3), 3).unwrap(), SequenceStep::Unchanged);
        assert_eq!(check_sequence(Some(3), 5).unwrap(), SequenceStep::Newer);
        let err = check_sequence(Some(3), 2).unwrap_err();
        assert!(matches!(err, ManifestError::Replayed { last: 3, new: 2 }));
        assert!(err.to_string().contains("older"), "{err}");
    }

    #[test]
    fn content_rules() {
        type Case = (&'static str, fn(&mut Manifest), fn(&ManifestError) -> bool);
        let table: [Case; 10] = [
            (
                "duplicate ids",
                |m| m.items[1].id = "1".into(),
                |e| matches!(e, ManifestError::DuplicateId(id) if id == "1"),
            ),
            (
                "uppercase sha",
                |m| {
                    m.items[0].sha256 = "A".repeat(64);
                    m.items[0].file = "A".repeat(64);
                },
                |e| matches!(e, ManifestError::BadSha256 { id, .. } if id == "1"),
            ),
            (
                "short sha",
                |m| {
                    m.items[0].sha256 = "ab".into();
                    m.items[0].file = "ab".into();
                },
                |e| matches!(e, ManifestError::BadSha256 { .. }),
            ),
            (
                "traversal in file",
                |m| m.items[1].file = format!("../../etc/{}", m.items[1].sha256),
                |e| matches!(e, ManifestError::BadFile { id, .. } if id == "2"),
            ),
            (
                "file names another item's audio",
                |m| m.items[1].file = m.items[0].sha256.clone(),
                |e| matches!(e, ManifestError::BadFile { .. }),
            ),
            (
                "withdrawn and published",
                |m| m.withdrawn[0].id = "2".into(),
                |e| matches!(e, ManifestError::WithdrawnAndPublished(id) if id == "2"),
            ),
            (
                "empty audio",
                |m| m.items[0].size = 0,
                |e| matches!(e, ManifestError::EmptyAudio(_)),
            ),
            (
                "zero duration",
                |m| m.items[0].duration_ms = 0,
                |e| matches!(e, ManifestError::ZeroDuration(_)),
            ),
            (
                "validity backwards",
                |m| m.items[0].valid_until = m.items[0].valid_from,
                |e| matches!(e, ManifestError::BadValidity(_)),
            ),
            (
                "sequence zero",
                |m| m.sequence = 0,
                |e| matches!(e, ManifestError::ZeroSequence),
            ),
        ];
        for (name, change, expected) in table {
            let mut m = manifest();
            change(&mut m);
            let err = verify(&signed(&m), &trusted()).unwrap_err();
            assert!(expected(&err), "{name}: got {err:?}");
        }
        let mut m = manifest();
        m.items = (0..=MAX_ITEMS)
            .map(|i| {
                let mut it = item(&i.to_string(), 'c');
                it.valid_from = None;
                it
            })
            .collect();
        m.withdrawn.clear();
        assert!(matches!(
            validate(&m),
            Err(ManifestError::TooMany { what: "items", .. })
        ));
        let mut m = manifest();
        m.items[0].id = "a\nb".into();
        assert!(matches!(validate(&m), Err(ManifestError::BadId(_))));
    }

    #[test]
    fn districts() {
        let mut it = item("1", 'a');
        assert!(it.for_district(Some("5701")));
        assert!(it.for_district(None));
        it.districts = vec!["5701".into(), "5702".into()];
        assert!(it.for_district(Some("5702")));
        assert!(!it.for_district(Some("5703")));
        assert!(!it.for_district(None));
        assert!(!it.for_district(Some("")));
    }
}
