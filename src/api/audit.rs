//! Auditing endpoints (issue #4): the signed airtime export (JSON lines, streamed) and the
//! planned-vs-aired report for one local day.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::Deserialize;

use super::status::parse_time;
use super::{ApiError, AppState, Caller};
use crate::audit::{self, BoxKey};
use crate::domain::Role;

#[derive(Deserialize)]
pub struct ExportParams {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/v1/airtime/export?from=&to=` (auditor, admin): the rows that became final in the
/// range, in chain order, as JSON lines, the last line signed by the box.
pub async fn export(
    State(st): State<AppState>,
    caller: Caller,
    Query(p): Query<ExportParams>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let from = parse_time("from", p.from.as_deref())?;
    let to = parse_time("to", p.to.as_deref())?;
    if let (Some(a), Some(b)) = (from, to) {
        if b <= a {
            return Err(ApiError::bad_request(
                "bad_range",
                "'to' must be after 'from'",
            ));
        }
    }
    // Made at start-up (`serve`); read per export, a 65-byte file.
    let data_dir = st.runner.config.data_dir.clone();
    let key = tokio::task::spawn_blocking(move || BoxKey::load_or_create(&data_dir))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("the box key: {e}")))?;
    let store = st.store().clone();
    let now = st.runner.clock.now();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let sent = audit::export(&store, &key, from, to, now, |chunk| {
            tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
        });
        match sent {
            Ok(summary) => tracing::info!(
                rows = summary.rows,
                last_seq = summary.last_seq,
                "airtime exported"
            ),
            Err(audit::export::ExportError::Closed) => {}
            Err(e) => {
                tracing::error!(error = %e, "airtime export failed");
                // Cut the body short: an export without its signature line never verifies.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"airtime-export.jsonl\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ReportParams {
    day: Option<String>,
}

/// `GET /api/v1/audit/report?day=YYYY-MM-DD` (auditor, approver, admin): planned vs aired per
/// item and output for a local day (today when no day is given).
pub async fn report(
    State(st): State<AppState>,
    caller: Caller,
    Query(p): Query<ReportParams>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Approver, Role::Admin])?;
    let now = st.runner.clock.now();
    let tz = st.runner.config.timezone;
    let day = match p.day.as_deref().filter(|d| !d.is_empty()) {
        None => now.with_timezone(&tz).date_naive(),
        Some(d) => d.parse::<NaiveDate>().map_err(|_| {
            ApiError::bad_request(
                "bad_day",
                format!("'day' must be a date like 2026-11-24, not '{d}'"),
            )
        })?,
    };
    let runner = st.runner.clone();
    let report = tokio::task::spawn_blocking(move || {
        audit::day_report(&runner.planner, &runner.store, day, now)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|audit::report::ReportError::Store(e)| ApiError::from(e))?;
    Ok(Json(report).into_response())
}
