//! The airtime log for auditors: JSON pages by cursor, or the whole range as CSV (streamed, so a
//! year of rows never sits in memory).

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::status::parse_time;
use super::{ApiError, AppState, Caller};
use crate::domain::{AirtimeEntry, Role};
use crate::store::{ts, AirtimeQuery};
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
        None | Some("") | Some("json") => {
            let (rows, next) = st.db(move |s| s.airtime(&q)).await?;
            Ok(Json(json!({"rows": rows, "next_cursor": next})).into_response())
        }
        Some("csv") => {
            q.limit = CSV_PAGE;
            Ok(csv_response(st, q))
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
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push_str("\r\n");
}

/// Stream every matching row as CSV: a blocking task reads pages and sends text chunks.
fn csv_response(st: AppState, mut q: AirtimeQuery) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = st.store().clone();
    let tz = st.runner.config.timezone;
    tokio::task::spawn_blocking(move || {
        let mut chunk = String::from("\u{feff}");
        chunk.push_str(CSV_HEADER);
        loop {
            let (rows, next) = match store.airtime(&q) {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            for r in &rows {
                csv_row(&mut chunk, r, tz);
            }
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
