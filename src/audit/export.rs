//! Signed exports of the airtime chain and their offline verification.
//!
//! An export is JSON lines: one finished row per line in chain order (see [`super::chain`] for
//! the fields, `prev_hash` and `hash`), then one last line `{"signature": {...}}` binding the
//! range (first seq and the hash before it, last seq and its hash, the row count, the requested
//! `from`/`to` and when it was made) with the box's Ed25519 key. Removing the first or last row,
//! appending one, or re-hashing the whole piece after an edit all break that signature; anything
//! inside breaks a link.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::chain::{Link, Walker};
use super::key::{verify_hex, BoxKey};
use crate::store::{ts, Store, StoreError};

pub const FORMAT: &str = "hokrajai-airtime-export/1";

/// How many rows are read from the database at a time while exporting.
const PAGE: u32 = 2000;

/// The last line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    pub format: String,
    /// For people; verification uses the key the auditor already holds.
    pub box_public_key: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub generated_at: String,
    /// The first row's seq; with no rows, the seq the next row will have.
    pub first_seq: i64,
    /// The hash the first row follows (the chain's head when there are no rows).
    pub first_prev_hash: String,
    pub last_seq: i64,
    pub last_hash: String,
    pub rows: i64,
    /// Ed25519 over [`Signed::message`], 128 hex digits.
    pub ed25519: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureLine {
    signature: Signed,
}

impl Signed {
    /// The bytes that are signed: every field but the signature, one `key=value` per line.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{}\nbox_public_key={}\nfrom={}\nto={}\ngenerated_at={}\nfirst_seq={}\nfirst_prev_hash={}\nlast_seq={}\nlast_hash={}\nrows={}\n",
            self.format,
            self.box_public_key,
            self.from.as_deref().unwrap_or(""),
            self.to.as_deref().unwrap_or(""),
            self.generated_at,
            self.first_seq,
            self.first_prev_hash,
            self.last_seq,
            self.last_hash,
            self.rows
        )
        .into_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the reader went away")]
    Closed,
}

/// What an export covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub rows: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: String,
}

/// Write the export of rows that became final in `[from, to)` (all when unbounded) as text
/// chunks to `emit`, which returns false when its reader has gone. The range is fixed when the
/// export starts; rows finishing meanwhile are left for the next export. Blocking (SQLite): call
/// from a blocking thread.
pub fn export(
    store: &Store,
    key: &BoxKey,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    mut emit: impl FnMut(String) -> bool,
) -> Result<ExportSummary, ExportError> {
    let (head_seq, head_hash) = store.chain_head()?;
    let span = store.chain_span(from, to)?;
    let (first_seq, last_seq, first_prev_hash) = match span {
        Some((first, last)) => (first, last, store.chain_prev_hash(first)?),
        None => (head_seq + 1, head_seq, head_hash.clone()),
    };
    let mut last_hash = first_prev_hash.clone();
    let mut rows = 0i64;
    let mut next = first_seq;
    while next <= last_seq {
        let links = store.chain_links(next, last_seq, PAGE)?;
        if links.is_empty() {
            break;
        }
        let mut chunk = String::new();
        for l in &links {
            // A Link always serializes (strings and integers only).
            chunk.push_str(&serde_json::to_string(l).unwrap_or_default());
            chunk.push('\n');
            last_hash = l.hash.clone();
            next = l.row.seq + 1;
            rows += 1;
        }
        if !emit(chunk) {
            return Err(ExportError::Closed);
        }
    }
    let mut signed = Signed {
        format: FORMAT.to_owned(),
        box_public_key: key.public_hex(),
        from: from.map(ts),
        to: to.map(ts),
        generated_at: ts(now),
        first_seq,
        first_prev_hash,
        last_seq: first_seq + rows - 1,
        last_hash: last_hash.clone(),
        rows,
        ed25519: String::new(),
    };
    signed.ed25519 = key.sign_hex(&signed.message());
    let line = serde_json::to_string(&SignatureLine {
        signature: signed.clone(),
    })
    .unwrap_or_default();
    if !emit(format!("{line}\n")) {
        return Err(ExportError::Closed);
    }
    Ok(ExportSummary {
        rows,
        first_seq: signed.first_seq,
        last_seq: signed.last_seq,
        last_hash,
    })
}

/// Where an export stops fitting: the line (1-based) and, when the line is a row, which row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub seq: Option<i64>,
    pub id: Option<i64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        match (self.id, self.seq) {
            (Some(id), Some(seq)) => write!(f, " (airtime row id {id}, seq {seq})")?,
            (None, Some(seq)) => write!(f, " (seq {seq})")?,
            _ => {}
        }
        write!(f, ": {}", self.what)
    }
}

/// What a good export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub signed: Signed,
}

/// Check an export offline: every link, then the signature with `key`. Returns the first thing
/// that does not fit.
pub fn verify(reader: impl BufRead, key: &VerifyingKey) -> Result<Verified, Problem> {
    let problem = |line: usize, link: Option<&Link>, what: String| Problem {
        line,
        seq: link.map(|l| l.row.seq),
        id: link.map(|l| l.row.id),
        what,
    };
    let mut walker: Option<Walker> = None;
    // The first row's line, seq and prev_hash, to hold against the signed range.
    let mut first: Option<(usize, i64, String)> = None;
    let mut walk_problem: Option<Problem> = None;
    let mut rows = 0i64;
    let mut signed: Option<(usize, Signed)> = None;
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| problem(n, None, format!("cannot read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some((at, _)) = &signed {
            return Err(problem(
                n,
                None,
                format!("text after the signature record on line {at}: rows were appended"),
            ));
        }
        if line.trim_start().starts_with("{\"signature\"") {
            let s: SignatureLine = serde_json::from_str(&line)
                .map_err(|e| problem(n, None, format!("the signature record is damaged: {e}")))?;
            signed = Some((n, s.signature));
            continue;
        }
        if walk_problem.is_some() {
            // The chain is already broken above; keep reading only to find the signature.
            continue;
        }
        let link: Link = match serde_json::from_str(&line) {
            Ok(l) => l,
            Err(e) => {
                walk_problem = Some(problem(n, None, format!("not an airtime row: {e}")));
                continue;
            }
        };
        let w = walker.get_or_insert_with(|| {
            first = Some((n, link.row.seq, link.prev_hash.clone()));
            Walker::new(link.row.seq, &link.prev_hash)
        });
        match w.step(&link) {
            Ok(()) => rows += 1,
            Err(m) => walk_problem = Some(problem(n, Some(&link), m.to_string())),
        }
    }
    let Some((sig_line, signed)) = signed else {
        return Err(problem(
            0,
            None,
            "no signature record at the end: the export is incomplete or was cut".into(),
        ));
    };
    if signed.format != FORMAT {
        return Err(problem(
            sig_line,
            None,
            format!("unknown export format '{}'", signed.format),
        ));
    }
    // The signed range must start exactly at the first row present: a row taken off the start,
    // or one added there, shows here (and it comes before anything later in the file).
    if let Some((line, seq, prev)) = &first {
        if *seq != signed.first_seq || *prev != signed.first_prev_hash {
            return Err(Problem {
                line: *line,
                seq: Some(*seq),
                id: None,
                what: format!(
                    "the export is signed as starting at seq {} (after hash {}), but its first row is seq {seq}: rows at the start were removed or added",
                    signed.first_seq, signed.first_prev_hash
                ),
            });
        }
    }
    if let Some(p) = walk_problem {
        return Err(p);
    }
    let (last_seq, last_hash) = match &walker {
        Some(w) => (w.next_seq() - 1, w.head().to_owned()),
        None => (signed.first_seq - 1, signed.first_prev_hash.clone()),
    };
    if rows == signed.rows && last_seq == signed.last_seq && last_hash != signed.last_hash {
        return Err(problem(
            sig_line,
            None,
            format!(
                "the last row's hash {last_hash} is not the signed {}: rows were changed and re-hashed after the export was signed",
                signed.last_hash
            ),
        ));
    }
    if rows != signed.rows || last_seq != signed.last_seq || last_hash != signed.last_hash {
        return Err(problem(
            sig_line,
            None,
            format!(
                "the export holds {rows} rows ending at seq {last_seq} (hash {last_hash}), but is signed for {} rows ending at seq {} (hash {}): rows at the end were removed or added",
                signed.rows, signed.last_seq, signed.last_hash
            ),
        ));
    }
    verify_hex(key, &signed.message(), &signed.ed25519).map_err(|_| {
        problem(
            sig_line,
            None,
            "the signature does not match this box's public key: the export was altered (or re-hashed) after it was signed, or comes from another box".into(),
        )
    })?;
    Ok(Verified { signed })
}
