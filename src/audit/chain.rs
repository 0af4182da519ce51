//! The hash chain over finished airtime rows: the one canonical form of a row and the one way a
//! link is computed, shared by the store (which links each row the moment it becomes final) and
//! the offline verifier (which recomputes every link from an export). Pure: no IO.
//!
//! A link is `hash = SHA-256(prev ‖ canonical(row))`, where `prev` is the 32 raw bytes of the
//! previous row's hash (32 zero bytes before the first row) and `canonical(row)` is the row as a
//! compact JSON object with exactly the keys of [`ChainRow`], in that order, as `serde_json`
//! writes it (UTF-8, no spaces). Hashes are written as 64 lowercase hex digits. `seq` counts
//! finished rows from 1 in the order they became final, so a missing, extra or moved row breaks
//! the chain where it happened.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One finished airtime row, as hashed. Instants are the stored text (UTC, milliseconds, `Z`),
/// never re-formatted, so the bytes hashed are the bytes stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainRow {
    pub seq: i64,
    pub id: i64,
    pub announcement_id: Option<i64>,
    pub title: String,
    pub sha256: String,
    pub output: String,
    pub slot: String,
    pub scheduled_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub status: String,
    pub detail: String,
    /// When the row became final (closed, or inserted already final), by the box's clock.
    pub finalized_at: String,
}

/// A row with its place in the chain: what the store keeps and what an export line holds (one
/// flat JSON object: the row's keys, then `prev_hash` and `hash`; no other key is accepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FlatLink", into = "FlatLink")]
pub struct Link {
    pub row: ChainRow,
    pub prev_hash: String,
    pub hash: String,
}

/// [`Link`] as written: serde's `flatten` cannot refuse unknown keys, so the flat form is
/// spelled out.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatLink {
    seq: i64,
    id: i64,
    announcement_id: Option<i64>,
    title: String,
    sha256: String,
    output: String,
    slot: String,
    scheduled_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
    duration_ms: Option<i64>,
    status: String,
    detail: String,
    finalized_at: String,
    prev_hash: String,
    hash: String,
}

impl From<FlatLink> for Link {
    fn from(f: FlatLink) -> Self {
        Link {
            row: ChainRow {
                seq: f.seq,
                id: f.id,
                announcement_id: f.announcement_id,
                title: f.title,
                sha256: f.sha256,
                output: f.output,
                slot: f.slot,
                scheduled_at: f.scheduled_at,
                started_at: f.started_at,
                ended_at: f.ended_at,
                duration_ms: f.duration_ms,
                status: f.status,
                detail: f.detail,
                finalized_at: f.finalized_at,
            },
            prev_hash: f.prev_hash,
            hash: f.hash,
        }
    }
}

impl From<Link> for FlatLink {
    fn from(l: Link) -> Self {
        let r = l.row;
        FlatLink {
            seq: r.seq,
            id: r.id,
            announcement_id: r.announcement_id,
            title: r.title,
            sha256: r.sha256,
            output: r.output,
            slot: r.slot,
            scheduled_at: r.scheduled_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            duration_ms: r.duration_ms,
            status: r.status,
            detail: r.detail,
            finalized_at: r.finalized_at,
            prev_hash: l.prev_hash,
            hash: l.hash,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("'{0}' is not a hash (64 hex digits)")]
    BadHash(String),
}

impl ChainRow {
    /// The bytes that are hashed.
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing a struct of strings, integers and options cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn hash_bytes(hex_hash: &str) -> Result<[u8; 32], ChainError> {
    let mut out = [0u8; 32];
    if hex_hash.len() != 64 || hex_hash.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ChainError::BadHash(hex_hash.chars().take(80).collect()));
    }
    hex::decode_to_slice(hex_hash, &mut out)
        .map_err(|_| ChainError::BadHash(hex_hash.chars().take(80).collect()))?;
    Ok(out)
}

/// The hash of `row` following `prev_hash`.
pub fn link_hash(prev_hash: &str, row: &ChainRow) -> Result<String, ChainError> {
    let prev = hash_bytes(prev_hash)?;
    let mut h = Sha256::new();
    h.update(prev);
    h.update(row.canonical());
    Ok(hex::encode(h.finalize()))
}

/// Link `row` after `prev_hash`.
pub fn link(prev_hash: &str, row: ChainRow) -> Result<Link, ChainError> {
    let hash = link_hash(prev_hash, &row)?;
    Ok(Link {
        row,
        prev_hash: prev_hash.to_owned(),
        hash,
    })
}

/// Why a row does not fit the chain. The first one found is reported; what follows a broken
/// link cannot be trusted either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// `seq` is not the next number: a row is missing, extra or out of order here.
    Sequence { expected: i64, found: i64 },
    /// `prev_hash` is not the hash of the row before: a row before it was removed, changed and
    /// re-hashed, or moved.
    PrevHash { expected: String, found: String },
    /// The row's contents do not give its hash: the row was changed.
    Hash { computed: String, found: String },
    /// The stored hash is not even a hash.
    Malformed(String),
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misfit::Sequence { expected, found } => write!(
                f,
                "expected seq {expected}, found seq {found}: a row is missing, added or out of order here"
            ),
            Misfit::PrevHash { expected, found } => write!(
                f,
                "prev_hash {found} is not the hash of the row before ({expected}): a row before it was removed, changed or moved"
            ),
            Misfit::Hash { computed, found } => write!(
                f,
                "the row's contents hash to {computed}, not to its recorded hash {found}: the row was changed"
            ),
            Misfit::Malformed(m) => write!(f, "{m}"),
        }
    }
}

/// Walks a chain one link at a time, from a known starting point.
#[derive(Debug, Clone)]
pub struct Walker {
    next_seq: i64,
    prev_hash: String,
}

impl Walker {
    /// Start before the row numbered `first_seq`, whose `prev_hash` must be `prev_hash`.
    pub fn new(first_seq: i64, prev_hash: &str) -> Self {
        Walker {
            next_seq: first_seq,
            prev_hash: prev_hash.to_owned(),
        }
    }

    /// From the very first row.
    pub fn from_genesis() -> Self {
        Self::new(1, GENESIS)
    }

    /// Check the next link. On success the walker moves past it.
    pub fn step(&mut self, link: &Link) -> Result<(), Misfit> {
        if link.row.seq != self.next_seq {
            return Err(Misfit::Sequence {
                expected: self.next_seq,
                found: link.row.seq,
            });
        }
        if link.prev_hash != self.prev_hash {
            return Err(Misfit::PrevHash {
                expected: self.prev_hash.clone(),
                found: link.prev_hash.clone(),
            });
        }
        let computed =
            link_hash(&link.prev_hash, &link.row).map_err(|e| Misfit::Malformed(e.to_string()))?;
        if computed != link.hash {
            return Err(Misfit::Hash {
                computed,
                found: link.hash.clone(),
            });
        }
        self.next_seq += 1;
        self.prev_hash = link.hash.clone();
        Ok(())
    }

    /// The hash of the last row checked (or the starting point).
    pub fn head(&self) -> &str {
        &self.prev_hash
    }

    /// The seq the next row must carry.
    pub fn next_seq(&self) -> i64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(seq: i64, title: &str) -> ChainRow {
        ChainRow {
            seq,
            id: seq + 100,
            announcement_id: Some(7),
            title: title.to_owned(),
            sha256: "ab".repeat(32),
            output: "tower".into(),
            slot: "morning".into(),
            scheduled_at: "2026-11-23T23:00:00.000Z".into(),
            started_at: Some("2026-11-23T23:00:03.120Z".into()),
            ended_at: Some("2026-11-23T23:00:05.120Z".into()),
            duration_ms: Some(2000),
            status: "completed".into(),
            detail: String::new(),
            finalized_at: "2026-11-23T23:00:05.120Z".into(),
        }
    }

    fn chain(n: i64) -> Vec<Link> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|s| {
                let l = link(&prev, row(s, &format!("ประกาศ {s}"))).unwrap();
                prev = l.hash.clone();
                l
            })
            .collect()
    }

    #[test]
    fn the_canonical_form_is_fixed() {
        // Changing this string changes every hash ever written: it is the format.
        let text = String::from_utf8(row(1, "ประชุม \"ด่วน\"").canonical()).unwrap();
        assert_eq!(
            text,
            r#"{"seq":1,"id":101,"announcement_id":7,"title":"ประชุม \"ด่วน\"","sha256":"abababababababababababababababababababababababababababababababab","output":"tower","slot":"morning","scheduled_at":"2026-11-23T23:00:00.000Z","started_at":"2026-11-23T23:00:03.120Z","ended_at":"2026-11-23T23:00:05.120Z","duration_ms":2000,"status":"completed","detail":"","finalized_at":"2026-11-23T23:00:05.120Z"}"#
        );
        let l = link(GENESIS, row(1, "x")).unwrap();
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(row(1, "x").canonical());
        assert_eq!(l.hash, hex::encode(h.finalize()));
    }

    #[test]
    fn a_good_chain_walks_and_each_kind_of_damage_is_named() {
        let links = chain(5);
        let mut w = Walker::from_genesis();
        for l in &links {
            w.step(l).unwrap();
        }
        assert_eq!(w.head(), links[4].hash);

        let walk = |links: &[Link]| -> Result<(), (usize, Misfit)> {
            let mut w = Walker::from_genesis();
            for (i, l) in links.iter().enumerate() {
                w.step(l).map_err(|m| (i, m))?;
            }
            Ok(())
        };
        // Changed.
        let mut changed = links.clone();
        changed[2].row.duration_ms = Some(60_000);
        assert!(matches!(walk(&changed), Err((2, Misfit::Hash { .. }))));
        // Changed and re-hashed: the next row no longer follows.
        let mut rehashed = links.clone();
        rehashed[2].row.status = "completed".into();
        rehashed[2].row.title = "something else".into();
        rehashed[2].hash = link_hash(&rehashed[2].prev_hash, &rehashed[2].row).unwrap();
        assert!(matches!(walk(&rehashed), Err((3, Misfit::PrevHash { .. }))));
        // Removed.
        let mut removed = links.clone();
        removed.remove(1);
        assert!(matches!(
            walk(&removed),
            Err((
                1,
                Misfit::Sequence {
                    expected: 2,
                    found: 3
                }
            ))
        ));
        // Reordered.
        let mut swapped = links.clone();
        swapped.swap(1, 3);
        assert!(matches!(walk(&swapped), Err((1, Misfit::Sequence { .. }))));
        // Not a hash.
        let mut bad = links;
        bad[0].prev_hash = "zz".into();
        assert!(walk(&bad).is_err());
    }

    #[test]
    fn an_export_line_round_trips_to_the_same_bytes() {
        let l = chain(1).remove(0);
        let line = serde_json::to_string(&l).unwrap();
        let back: Link = serde_json::from_str(&line).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.row.canonical(), l.row.canonical());
        assert!(
            serde_json::from_str::<Link>(&line.replace("\"seq\"", "\"extra\":1,\"seq\"")).is_err()
        );
    }
}
