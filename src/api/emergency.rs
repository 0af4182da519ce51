//! Emergencies (approver, admin): preempt every targeted output now with the alert tone and a
//! message, then the schedule resumes. And `playout/stop` (admin): silence now.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{announcements, ApiError, AppState, Caller};
use crate::domain::{AnnouncementId, AnnouncementStatus, Role};

const DEFAULT_REPEAT: u32 = 2;
const MAX_REPEAT: u32 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmergencyRequest {
    announcement_id: AnnouncementId,
    outputs: Option<Vec<String>>,
    repeat: Option<u32>,
}

fn check_repeat(repeat: Option<u32>) -> Result<u32, ApiError> {
    let r = repeat.unwrap_or(DEFAULT_REPEAT);
    if (1..=MAX_REPEAT).contains(&r) {
        Ok(r)
    } else {
        Err(ApiError::bad_request(
            "bad_repeat",
            format!("repeat must be 1 to {MAX_REPEAT}"),
        ))
    }
}

/// `POST /api/v1/emergency`: JSON `{"announcement_id", "outputs"?, "repeat"?}` for an approved
/// announcement, or a multipart upload (`audio`, `title`, … as for announcements, plus `repeat`)
/// that becomes approved by this act. Answers 202 once every targeted player has the job.
pub async fn trigger(
    State(st): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Approver, Role::Admin])?;
    let accepted_at = st.runner.clock.now();
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let known = st.runner.config.output_names();
    let (announcement, outputs, repeat) = if is_multipart {
        let form = Multipart::from_request(req, &st)
            .await
            .map_err(|e| ApiError::bad_request("bad_form", e.body_text()))?;
        let (a, extras) = announcements::ingest(&st, &caller, form, &["repeat"]).await?;
        let repeat = extras
            .iter()
            .find(|(k, _)| k == "repeat")
            .map(|(_, v)| {
                v.trim().parse::<u32>().map_err(|_| {
                    ApiError::bad_request("bad_repeat", "repeat must be a whole number")
                })
            })
            .transpose()?;
        let repeat = check_repeat(repeat)?;
        // Approved by this act, recorded as such.
        let (id, actor, now) = (a.id, caller.name.clone(), st.runner.clock.now());
        let a = st
            .db(move |s| {
                s.decide(
                    id,
                    AnnouncementStatus::Approved,
                    &actor,
                    "emergency / เหตุฉุกเฉิน",
                    now,
                )
            })
            .await?;
        let outputs = a.outputs.clone();
        (a, outputs, repeat)
    } else {
        let Json(body) = Json::<EmergencyRequest>::from_request(req, &st)
            .await
            .map_err(|e| ApiError::bad_request("bad_json", e.body_text()))?;
        let repeat = check_repeat(body.repeat)?;
        let id = body.announcement_id;
        let a = st.db(move |s| s.announcement(id)).await?;
        if a.status != AnnouncementStatus::Approved {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_approved",
                format!("ประกาศนี้ยังไม่ได้รับอนุมัติ / announcement {id} is {}, only an approved one can be aired", a.status.as_str()),
            ));
        }
        let outputs = body.outputs.unwrap_or_else(|| known.clone());
        (a, outputs, repeat)
    };
    if outputs.is_empty() {
        return Err(ApiError::bad_request(
            "no_outputs",
            "name at least one output",
        ));
    }
    if let Some(bad) = outputs.iter().find(|o| !known.contains(o)) {
        return Err(ApiError::bad_request(
            "unknown_output",
            format!(
                "unknown output '{bad}' (this box has: {})",
                known.join(", ")
            ),
        ));
    }
    let taken = st
        .runner
        .emergency(&announcement, &outputs, repeat, accepted_at);
    tracing::warn!(id = announcement.id, by = %caller.name, outputs = ?taken, repeat, "EMERGENCY / เหตุฉุกเฉิน");
    if taken.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "players_stopped",
            "no output could take the emergency; check the box",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "accepted_at": accepted_at,
            "announcement_id": announcement.id,
            "outputs": taken,
            "repeat": repeat,
        })),
    ))
}

/// `POST /api/v1/playout/stop` (admin): silence every output now; what was on air is logged
/// `interrupted`. The schedule goes on with the next slot.
pub async fn stop(State(st): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    st.runner.stop_all();
    tracing::warn!(by = %caller.name, "playout stopped by operator");
    Ok(Json(json!({"stopped": st.runner.config.output_names()})))
}
