//! The airtime log for auditors: JSON pages by cursor, or the whole range as CSV (streamed, so a
//! year of rows never sits in memory). On a province, `box=NAME` (or `box=*`) reads the rows the
//! district boxes reported instead of this instance's own log: each as the box hashed it (its
//! `seq`, `prev_hash` and `hash`, instants as the box stored them), with the box's name.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::status::parse_time;
use super::{ApiError, AppState, Caller};
use crate::audit::chain::Link;
use crate::domain::{AirtimeEntry, Role};
use crate::store::{ts, AirtimeQuery, Store, StoreError};
use crate::thai::format_datetime;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
const CSV_PAGE: u32 = 5000;

#[derive(Deserialize)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
    output: Option<String>,
    announcement: Option<i64>,
    status: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
    format: Option<String>,
    /// Reported rows of this box, or of every box with `*`; absent: this instance's own log.
    #[serde(rename = "box")]
    box_name: Option<String>,
}

/// Which log a query reads.
#[derive(Clone)]
enum Log {
    Own,
    /// Rows reported by one box (`Some`) or by every box.
    Boxes(Option<String>),
}

/// A reported row as served: the box's name, then the row exactly as the box hashed it.
#[derive(Serialize)]
struct BoxRow<'a> {
    #[serde(rename = "box")]
    box_name: &'a str,
    #[serde(flatten)]
    link: &'a Link,
    received_at: &'a str,
}

pub async fn query(
    State(st): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Approver, Role::Admin])?;
    let status = p
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .transpose()
        .map_err(|m| ApiError::bad_request("bad_status", m))?;
    let log = match p.box_name.as_deref().map(str::trim) {
        None | Some("") => Log::Own,
        Some("*") => Log::Boxes(None),
        Some(name) => Log::Boxes(Some(name.to_owned())),
    };
    let mut q = AirtimeQuery {
        from: parse_time("from", p.from.as_deref())?,
        to: parse_time("to", p.to.as_deref())?,
        output: p.output.filter(|s| !s.is_empty()),
        announcement: p.announcement,
        status,
        cursor: p.cursor,
        limit: p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
    };
    match p.format.as_deref() {
        None | Some("") | Some("json") => match log {
            Log::Own => {
                let (rows, next) = st.db(move |s| s.airtime(&q)).await?;
                Ok(Json(json!({"rows": rows, "next_cursor": next})).into_response())
            }
            Log::Boxes(name) => {
                let (rows, next) = st.db(move |s| s.box_airtime(name.as_deref(), &q)).await?;
                let rows: Vec<BoxRow<'_>> = rows
                    .iter()
                    .map(|(b, link, received)| BoxRow {
                        box_name: b,
                        link,
                        received_at: received,
                    })
                    .collect();
                Ok(Json(json!({"rows": rows, "next_cursor": next})).into_response())
            }
        },
        Some("csv") => {
            q.limit = CSV_PAGE;
            Ok(csv_response(st, q, log))
        }
        Some(other) => Err(ApiError::bad_request(
            "bad_format",
            format!("format '{other}' is not json or csv"),
        )),
    }
}

/// Quote a CSV field when it needs it (RFC 4180).
fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

const CSV_HEADER: &str = "id,announcement_id,title,sha256,output,slot,scheduled_at,started_at,ended_at,duration_ms,status,detail,started_local\r\n";
/// Reported rows: the box first, the same columns, then the row's place in the box's chain.
const CSV_BOX_HEADER: &str = "box,id,announcement_id,title,sha256,output,slot,scheduled_at,started_at,ended_at,duration_ms,status,detail,started_local,seq,finalized_at,prev_hash,hash,received_at\r\n";

fn csv_line(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push_str("\r\n");
}

fn csv_row(out: &mut String, r: &AirtimeEntry, tz: chrono_tz::Tz) {
    let fields = [
        r.id.to_string(),
        r.announcement_id.map(|i| i.to_string()).unwrap_or_default(),
        r.title.clone(),
        r.sha256.clone(),
        r.output.clone(),
        r.slot.clone(),
        ts(r.scheduled_at),
        r.started_at.map(ts).unwrap_or_default(),
        r.ended_at.map(ts).unwrap_or_default(),
        r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
        r.status.as_str().to_string(),
        r.detail.clone(),
        r.started_at
            .map(|t| format_datetime(t, tz))
            .unwrap_or_default(),
    ];
    csv_line(out, &fields);
}

/// A reported row; its instants are written as the box stored them (they are what it hashed).
fn csv_box_row(out: &mut String, box_name: &str, l: &Link, received_at: &str, tz: chrono_tz::Tz) {
    let r = &l.row;
    let started_local = r
        .started_at
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| format_datetime(t.with_timezone(&chrono::Utc), tz))
        .unwrap_or_default();
    let fields = [
        box_name.to_owned(),
        r.id.to_string(),
        r.announcement_id.map(|i| i.to_string()).unwrap_or_default(),
        r.title.clone(),
        r.sha256.clone(),
        r.output.clone(),
        r.slot.clone(),
        r.scheduled_at.clone(),
        r.started_at.clone().unwrap_or_default(),
        r.ended_at.clone().unwrap_or_default(),
        r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
        r.status.clone(),
        r.detail.clone(),
        started_local,
        r.seq.to_string(),
        r.finalized_at.clone(),
        l.prev_hash.clone(),
        l.hash.clone(),
        received_at.to_owned(),
    ];
    csv_line(out, &fields);
}

/// One CSV page of `log`: the text and the cursor for the next page.
fn csv_page(
    store: &Store,
    log: &Log,
    q: &AirtimeQuery,
    tz: chrono_tz::Tz,
    out: &mut String,
) -> Result<Option<i64>, StoreError> {
    match log {
        Log::Own => {
            let (rows, next) = store.airtime(q)?;
            for r in &rows {
                csv_row(out, r, tz);
            }
            Ok(next)
        }
        Log::Boxes(name) => {
            let (rows, next) = store.box_airtime(name.as_deref(), q)?;
            for (b, l, received) in &rows {
                csv_box_row(out, b, l, received, tz);
            }
            Ok(next)
        }
    }
}

/// Stream every matching row as CSV: a blocking task reads pages and sends text chunks.
fn csv_response(st: AppState, mut q: AirtimeQuery, log: Log) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = st.store().clone();
    let tz = st.runner.config.timezone;
    tokio::task::spawn_blocking(move || {
        let mut chunk = String::from("\u{feff}");
        chunk.push_str(match log {
            Log::Own => CSV_HEADER,
            Log::Boxes(_) => CSV_BOX_HEADER,
        });
        loop {
            let next = match csv_page(&store, &log, &q, tz, &mut chunk) {
                Ok(next) => next,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            if tx
                .blocking_send(Ok(Bytes::from(std::mem::take(&mut chunk))))
                .is_err()
            {
                return; // the client went away
            }
            match next {
                Some(c) => q.cursor = Some(c),
                None => return,
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"airtime.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut s = String::new();
        super::csv_field(&mut s, "ประกาศ, \"ด่วน\"");
        assert_eq!(s, "\"ประกาศ, \"\"ด่วน\"\"\"");
        let mut s = String::new();
        super::csv_field(&mut s, "plain");
        assert_eq!(s, "plain");
    }
}
