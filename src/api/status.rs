//! Health, status, slots and the plan.

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AnyCaller, ApiError, AppState, Caller};
use crate::thai::format_datetime;

/// The longest plan one request may ask for.
const MAX_PLAN_DAYS: i64 = 31;

pub async fn healthz() -> Json<Value> {
    Json(json!({"ok": true}))
}

/// An RFC 3339 query parameter.
pub(super) fn parse_time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(
                        "bad_time",
                        format!("'{name}' must be an RFC 3339 time like 2026-11-23T06:00:00+07:00, not '{s}'"),
                    )
                })
        })
        .transpose()
}

/// Who the token belongs to, so a console can show the right actions.
pub async fn whoami(AnyCaller(caller): AnyCaller) -> Json<Value> {
    Json(json!({"name": caller.name, "role": caller.role}))
}

pub async fn status(State(st): State<AppState>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    // The plan part is cached by the runner; only a stale cache costs a (blocking) plan.
    let outputs = match st.runner.cached_outputs() {
        Some(outputs) => outputs,
        None => {
            let runner = st.runner.clone();
            tokio::task::spawn_blocking(move || runner.outputs())
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
        }
    };
    let r = &st.runner;
    let now = r.clock.now();
    let tz = r.config.timezone;
    let next_slot = r
        .next_slot()
        .map(|(slot, at)| json!({"slot": slot, "at": at, "at_local": format_datetime(at, tz)}));
    // The provincial link, when this box has one (two small queries; none otherwise).
    let linked = !r.config.upstreams.is_empty() || r.config.report.is_some();
    let sync = if linked {
        let (ups, rep) = st.db(|s| Ok((s.upstreams()?, s.reporter_state()?))).await?;
        let last_error = ups
            .iter()
            .filter_map(|u| u.last_error.as_ref().map(|e| format!("{}: {e}", u.name)))
            .chain(rep.last_error.as_ref().map(|e| format!("report: {e}")))
            .collect::<Vec<_>>();
        json!({
            "last_pull_at": ups.iter().filter_map(|u| u.last_success_at).max(),
            "sequence": ups.first().and_then(|u| u.sequence),
            "last_error": (!last_error.is_empty()).then(|| last_error.join("; ")),
            "reporting": r.config.report.is_some(),
            "report_queued": rep.queued,
            "last_report_at": rep.last_success_at,
        })
    } else {
        Value::Null
    };
    // Airtime writes that failed even after the log's reserved room was given back.
    let log = r.store.log_status();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "sync": sync,
        "airtime_log": log,
        "now": now,
        "now_local": format_datetime(now, tz),
        "timezone": tz.name(),
        "uptime_s": (now - r.started_at).num_seconds(),
        "outputs": outputs,
        "next_slot": next_slot,
    })))
}

#[derive(Deserialize)]
pub struct SlotsQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The slots with their next starts; with `from` and `to` (at most 31 days apart), also every
/// occurrence in that range as the runner will play it (days, holidays, quiet hours applied).
pub async fn slots(
    State(st): State<AppState>,
    _caller: Caller,
    Query(q): Query<SlotsQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = &st.runner;
    let now = r.clock.now();
    let from = parse_time("from", q.from.as_deref())?;
    let to = parse_time("to", q.to.as_deref())?;
    let occurrences = match (from, to) {
        (Some(from), Some(to)) => {
            if to <= from || to - from > chrono::Duration::days(MAX_PLAN_DAYS) {
                return Err(ApiError::bad_request(
                    "bad_range",
                    format!("'to' must be after 'from' and at most {MAX_PLAN_DAYS} days later"),
                ));
            }
            let tz = r.config.timezone;
            let list: Vec<Value> = r
                .planner
                .timetable
                .occurrences(from, to)
                .into_iter()
                .take(10_000)
                .map(|o| {
                    let outputs = r.planner.timetable.slot(&o.slot).map(|s| s.outputs.clone()).unwrap_or_default();
                    json!({"slot": o.slot, "start": o.start, "end": o.end, "start_local": format_datetime(o.start, tz), "outputs": outputs})
                })
                .collect();
            Some(list)
        }
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "bad_range",
                "give both 'from' and 'to', or neither",
            ))
        }
    };
    let tz = r.config.timezone;
    let next = r.planner.next_starts(now, 3);
    let slots: Vec<Value> = r
        .planner
        .timetable
        .slots
        .iter()
        .zip(next)
        .map(|(s, (_, starts))| {
            json!({
                "name": s.name,
                "file": s.file,
                "cron": s.cron_expr,
                "length_s": s.length.as_secs(),
                "outputs": s.outputs,
                "chime": s.chime,
                "outro": s.outro,
                "days": s.days,
                "months": s.months,
                "dates": s.dates.iter().map(|(a, b)| format!("{a}..{b}")).collect::<Vec<_>>(),
                "next_starts": starts,
                "next_starts_local": starts.iter().map(|t| format_datetime(*t, tz)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut body = json!({ "slots": slots });
    if let Some(o) = occurrences {
        body["occurrences"] = json!(o);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct PlanQuery {
    from: Option<String>,
    to: Option<String>,
}

pub async fn plan(
    State(st): State<AppState>,
    _caller: Caller,
    Query(q): Query<PlanQuery>,
) -> Result<Json<Value>, ApiError> {
    let now = st.runner.clock.now();
    let from = parse_time("from", q.from.as_deref())?.unwrap_or(now);
    let to = parse_time("to", q.to.as_deref())?.unwrap_or(from + chrono::Duration::days(1));
    if to <= from || to - from > chrono::Duration::days(MAX_PLAN_DAYS) {
        return Err(ApiError::bad_request(
            "bad_range",
            format!("'to' must be after 'from' and at most {MAX_PLAN_DAYS} days later"),
        ));
    }
    let runner = st.runner.clone();
    let plan = tokio::task::spawn_blocking(move || runner.plan(from, to))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let tz = st.runner.config.timezone;
    let items: Vec<Value> = plan
        .into_iter()
        .map(|p| {
            let local = format_datetime(p.start, tz);
            let mut v = json!(p);
            v["start_local"] = json!(local);
            v
        })
        .collect();
    Ok(Json(json!({"from": from, "to": to, "airings": items})))
}

#[derive(Deserialize)]
pub struct CalendarQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Holidays, working days and quiet hours for a range of local dates (default: the coming
/// week), for the console's week view.
pub async fn calendar(
    State(st): State<AppState>,
    _caller: Caller,
    Query(q): Query<CalendarQuery>,
) -> Result<Json<Value>, ApiError> {
    let tt = &st.runner.planner.timetable;
    let today = st.runner.clock.now().with_timezone(&tt.tz).date_naive();
    let date = |name: &str, v: Option<&str>| -> Result<Option<chrono::NaiveDate>, ApiError> {
        v.filter(|s| !s.is_empty())
            .map(|s| {
                chrono::NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").map_err(
                    |_| {
                        ApiError::bad_request(
                            "bad_date",
                            format!("'{name}' must be a date like 2026-11-23, not '{s}'"),
                        )
                    },
                )
            })
            .transpose()
    };
    let from = date("from", q.from.as_deref())?.unwrap_or(today);
    let to = date("to", q.to.as_deref())?.unwrap_or(from + chrono::Duration::days(7));
    if to < from || (to - from).num_days() > 366 {
        return Err(ApiError::bad_request(
            "bad_range",
            "'to' must be after 'from' and at most a year later",
        ));
    }
    let days: Vec<Value> = from
        .iter_days()
        .take_while(|d| *d < to)
        .map(|d| {
            let h = tt.calendar.holiday(d);
            json!({
                "date": d,
                "weekday": chrono::Datelike::weekday(&d).number_from_monday(),
                "working": tt.calendar.is_working_day(d),
                "holiday": h.map(|h| h.name.clone()),
                "holiday_en": h.map(|h| h.name_en.clone()),
            })
        })
        .collect();
    Ok(Json(json!({
        "timezone": tt.tz.name(),
        "quiet_hours": tt.quiet.ranges(),
        "days": days,
    })))
}
