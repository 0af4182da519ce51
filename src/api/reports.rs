//! Airtime reported by district boxes (province side, issue #3): `POST /api/v1/reports` takes
//! one batch of a box's finished rows, and `GET /api/v1/boxes` lists who has reported.
//!
//! A box reports only as itself: the rows are stored under its token's name, and a key naming
//! another box is refused. The batch is JSON lines of links exactly as the box stored them
//! (`audit::chain::Link`), gzip or plain, bounded before and after decompression; the store
//! checks every hash and that the batch follows on from what is held, and takes a batch sent
//! again as duplicates, so a box may retry anything it is not sure arrived.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::{AnyCaller, ApiError, AppState, Caller};
use crate::audit::chain::Link;
use crate::domain::Role;
use crate::store::StoreError;
use crate::sync::report::parse_idempotency_key;

/// A batch as sent (gzip): a box sends at most 5,000 rows, ~50 bytes each once compressed.
pub const MAX_COMPRESSED_BYTES: usize = 8 * 1024 * 1024;
/// A batch once decompressed: bounds a gzip bomb.
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;
/// Rows in one batch (a box's `[report] batch` is at most this too).
pub const MAX_LINES: usize = 5000;
/// Batches decompressed and checked at once: a province with hundreds of boxes coming back
/// from an outage together takes them a few at a time rather than holding them all in memory.
static CHECKING: Semaphore = Semaphore::const_new(4);

fn too_large(what: String) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "report_too_large",
        format!("รายงานใหญ่เกินไป / {what}; send smaller batches"),
    )
}

/// The body as JSON lines of links: decompressed (within bounds), each line parsed.
fn read_batch(body: &[u8], gzip: bool) -> Result<Vec<Link>, ApiError> {
    let mut text = Vec::new();
    if gzip {
        flate2::read::GzDecoder::new(body)
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| {
                ApiError::bad_request(
                    "bad_gzip",
                    format!("อ่านรายงานไม่ได้ / the body is not valid gzip: {e}"),
                )
            })?;
        if text.len() as u64 > MAX_DECOMPRESSED_BYTES {
            return Err(too_large(format!(
                "the batch is more than {} MiB once decompressed",
                MAX_DECOMPRESSED_BYTES / (1024 * 1024)
            )));
        }
    } else {
        text.extend_from_slice(body);
    }
    let lines: Vec<(usize, &[u8])> = text
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.len() > MAX_LINES {
        return Err(too_large(format!(
            "{} rows in one batch; at most {MAX_LINES} are taken",
            lines.len()
        )));
    }
    lines
        .into_iter()
        .map(|(i, l)| {
            serde_json::from_slice::<Link>(l).map_err(|e| {
                ApiError::bad_request(
                    "bad_line",
                    format!(
                        "บรรทัดที่ {n} ไม่ถูกต้อง / line {n} is not an airtime row: {e}",
                        n = i + 1
                    ),
                )
            })
        })
        .collect()
}

/// `POST /api/v1/reports` (box tokens only): store one batch of the calling box's rows.
/// 200 `{accepted, duplicates, last_seq}`; 409 with the reason when the rows do not follow on
/// from what is held (nothing of the batch is stored then).
pub async fn report(
    State(st): State<AppState>,
    AnyCaller(caller): AnyCaller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    if caller.role != Role::Box {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "ไม่มีสิทธิ์ / only a box token may report airtime (yours is '{}')",
                caller.role
            ),
        ));
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_idempotency_key",
                "ต้องมี Idempotency-Key / an 'Idempotency-Key: <box>:<first seq>-<last seq>' header is required",
            )
        })?
        .to_owned();
    let Some((key_box, key_first, key_last)) = parse_idempotency_key(&key) else {
        return Err(ApiError::bad_request(
            "bad_idempotency_key",
            format!("Idempotency-Key '{key}' is not '<box>:<first seq>-<last seq>'"),
        ));
    };
    if key_box != caller.name {
        tracing::warn!(token = %caller.name, claimed = %key_box, "a box tried to report as another box");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_this_box",
            format!(
                "รายงานได้เฉพาะของตนเอง / this token is box '{}' and may not report as '{key_box}'",
                caller.name
            ),
        ));
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_encoding",
                format!("Content-Encoding '{other}' is not gzip or identity"),
            ))
        }
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(format!(
                "the body is more than {} MiB",
                MAX_COMPRESSED_BYTES / (1024 * 1024)
            ))
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    let _permit = CHECKING
        .acquire()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let links = tokio::task::spawn_blocking(move || read_batch(&body, gzip))
        .await
        .map_err(|e| ApiError::internal(format!("reading a report failed: {e}")))??;
    let (Some(first), Some(last)) = (links.first(), links.last()) else {
        return Err(ApiError::bad_request(
            "empty_report",
            "รายงานว่างเปล่า / the report holds no rows",
        ));
    };
    if (first.row.seq, last.row.seq) != (key_first, key_last) {
        return Err(ApiError::bad_request(
            "key_mismatch",
            format!(
                "Idempotency-Key says rows {key_first} to {key_last} but the batch holds rows {} to {}",
                first.row.seq, last.row.seq
            ),
        ));
    }
    let now = st.runner.clock.now();
    let box_name = caller.name.clone();
    let outcome = st
        .store()
        .call(move |s| s.accept_report(&box_name, &key, &links, now))
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => {
                tracing::warn!(r#box = %caller.name, reason = %m, "airtime report refused");
                ApiError::new(
                    StatusCode::CONFLICT,
                    "report_refused",
                    format!("ไม่รับรายงาน: แถวไม่ต่อเนื่องกับที่มีอยู่ / the report was refused: {m}"),
                )
            }
            other => ApiError::from(other),
        })?;
    tracing::info!(
        r#box = %caller.name,
        first = key_first,
        last = key_last,
        accepted = outcome.accepted,
        duplicates = outcome.duplicates,
        "airtime report received"
    );
    Ok(Json(json!(outcome)))
}

/// `GET /api/v1/boxes` (auditor, approver, admin): the boxes that have reported, their rows,
/// highest seq and when their last report arrived.
pub async fn boxes(State(st): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Auditor, Role::Approver, Role::Admin])?;
    let (boxes, last) = st
        .db(|s| Ok((s.reporting_boxes()?, s.box_last_reports()?)))
        .await?;
    let boxes: Vec<Value> = boxes
        .into_iter()
        .map(|(name, rows, last_seq)| {
            let at = last.iter().find(|(b, _)| *b == name).map(|(_, at)| *at);
            json!({"box": name, "rows": rows, "last_seq": last_seq, "last_report_at": at})
        })
        .collect();
    Ok(Json(json!({ "boxes": boxes })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: i64) -> String {
        format!(
            r#"{{"seq":{seq},"id":{seq},"announcement_id":1,"title":"t","sha256":"ab","output":"tower","slot":"s","scheduled_at":"2026-11-23T23:00:00.000Z","started_at":null,"ended_at":null,"duration_ms":null,"status":"failed","detail":"","finalized_at":"2026-11-23T23:00:00.000Z","prev_hash":"00","hash":"11"}}"#
        )
    }

    #[test]
    fn a_batch_reads_plain_or_gzip_and_names_the_bad_line() {
        let text = format!("{}\n{}\n", line(1), line(2));
        assert_eq!(read_batch(text.as_bytes(), false).unwrap().len(), 2);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(read_batch(&gz, true).unwrap()[1].row.seq, 2);
        let bad = format!("{}\n{{\"seq\":2}}\n", line(1));
        let e = read_batch(bad.as_bytes(), false).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("line 2"), "{}", e.message);
        assert_eq!(read_batch(b"not gzip", true).unwrap_err().code, "bad_gzip");
    }

    #[test]
    fn a_gzip_bomb_and_too_many_rows_are_refused() {
        // 65 MiB of newlines compress to ~65 KiB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b'\n'; 1024 * 1024];
        for _ in 0..65 {
            std::io::Write::write_all(&mut gz, &zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < MAX_COMPRESSED_BYTES);
        assert_eq!(
            read_batch(&bomb, true).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let many: String = (1..=MAX_LINES as i64 + 1).map(|s| line(s) + "\n").collect();
        assert_eq!(
            read_batch(many.as_bytes(), false).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
