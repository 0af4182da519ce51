//! The provincial link over HTTP (issue #3): CAP 1.2 alerts handed over (`POST /api/v1/cap`:
//! approver, admin, or a box relaying what it received), the CAP messages received, and the
//! link's state (`GET /api/v1/link`: last pull per upstream and its error, the reporter's
//! queue and last success).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{AnyCaller, ApiError, AppState, Caller};
use crate::domain::Role;
use crate::sync::alerts::{self, AlertError};

/// `POST /api/v1/cap`: one CAP 1.2 message as the body (XML). 200 with what was done (also for
/// a message received before: `duplicate` says so); 400 when it is not valid CAP 1.2.
pub async fn post_cap(
    State(st): State<AppState>,
    AnyCaller(caller): AnyCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Approver, Role::Admin, Role::Box])?;
    let via = format!("api:{}", caller.name);
    match alerts::handle(&st.runner, &body, &via).await {
        Ok(o) => Ok((StatusCode::OK, Json(json!(o)))),
        Err(AlertError::Cap(e)) => Err(ApiError::bad_request(
            "bad_cap",
            format!("ข้อความ CAP ไม่ถูกต้อง / not a valid CAP 1.2 message: {e}"),
        )),
        Err(AlertError::Store(e)) => Err(e.into()),
        Err(AlertError::Io(e)) => Err(ApiError::internal(e)),
    }
}

/// `GET /api/v1/cap`: the latest 100 CAP messages received, newest first, with what was done.
pub async fn list_cap(State(st): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Approver, Role::Auditor, Role::Admin])?;
    let rows = st.db(|s| s.cap_messages(100)).await?;
    Ok(Json(json!({ "messages": rows })))
}

/// `GET /api/v1/link` (any staff role): what the box knows of its province.
pub async fn link_status(
    State(st): State<AppState>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let configured: Vec<Value> = st
        .runner
        .config
        .upstreams
        .iter()
        .map(
            |u| json!({"name": u.name, "manifest_url": u.manifest_url, "poll_s": u.poll.as_secs()}),
        )
        .collect();
    let report_url = st.runner.config.report.as_ref().map(|r| r.url.clone());
    let (upstreams, reporter, boxes) = st
        .db(|s| Ok((s.upstreams()?, s.reporter_state()?, s.reporting_boxes()?)))
        .await?;
    let last_pull_at = upstreams.iter().filter_map(|u| u.last_success_at).max();
    Ok(Json(json!({
        "district": st.runner.config.district.as_ref().map(|d| json!({"code": d.code, "name": d.name})),
        "upstreams_configured": configured,
        "upstreams": upstreams,
        "last_pull_at": last_pull_at,
        "report": {"url": report_url, "state": reporter},
        "cap_feed": st.runner.config.cap.feed_url,
        "reporting_boxes": boxes.into_iter().map(|(b, rows, seq)| json!({"box": b, "rows": rows, "last_seq": seq})).collect::<Vec<_>>(),
    })))
}
