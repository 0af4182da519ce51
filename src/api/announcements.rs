//! Announcements: upload (streamed to disk, hashed on the way, probed by decoding), list, read,
//! audio, and the approval decisions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Multipart, Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::limits::UploadSlots;
use super::status::parse_time;
use super::{ApiError, AppState, Caller};
use crate::domain::{AnnouncementId, AnnouncementStatus, Priority, Role};
use crate::media::{self, MediaError};
use crate::store::NewAnnouncement;

/// How long decoding an upload may take before it is refused.
const PROBE_BUDGET: Duration = Duration::from_secs(120);
const MAX_TITLE_CHARS: usize = 300;
const MAX_TEXT_FIELD_BYTES: usize = 64 * 1024;
const MAX_PLAYS_PER_DAY: u32 = 48;
/// Announcements one person may have waiting for approval at once: an uploader (or a stolen
/// uploader token) cannot bury the approvers or fill the disk with pending audio.
pub const MAX_PENDING_PER_UPLOADER: usize = 50;
/// Free space uploads always leave on the data disk: the airtime log, the database and the
/// system need it more than one more announcement does.
pub const DISK_FLOOR_BYTES: u64 = 32 * 1024 * 1024;
/// How often (in bytes received) the free space is checked during an upload.
const DISK_CHECK_EVERY: u64 = 1024 * 1024;

/// A file under `<data_dir>/tmp` that is removed unless kept.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

struct Received {
    tmp: TempFile,
    sha256: String,
    size: u64,
}

fn disk_full() -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "disk_full",
        "พื้นที่เก็บข้อมูลเต็ม / the box's disk is full; the upload was not kept. Tell the district IT officer.",
    )
}

fn io_error(what: &str, e: std::io::Error) -> ApiError {
    // ENOSPC: the disk is full. Say so plainly; nothing is kept.
    if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
        return disk_full();
    }
    ApiError::internal(format!("{what}: {e}"))
}

/// Bytes free for an unprivileged writer on the file system holding `dir` (None if unknown).
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// 507 unless the data disk has more than the floor free: the log's room is not for uploads.
fn check_room(dir: &Path) -> Result<(), ApiError> {
    match free_bytes(dir) {
        Some(free) if free < DISK_FLOOR_BYTES => {
            tracing::warn!(
                free,
                floor = DISK_FLOOR_BYTES,
                "upload refused: the data disk is (nearly) full"
            );
            Err(disk_full())
        }
        _ => Ok(()),
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large_error(None);
    }
    ApiError::bad_request(
        "bad_form",
        format!("the upload form could not be read: {}", e.body_text()),
    )
}

fn too_large_error(max: Option<u64>) -> ApiError {
    let limit = max
        .map(|m| format!(" (limit {} MB)", m / (1024 * 1024)))
        .unwrap_or_default();
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("ไฟล์ใหญ่เกินกำหนด / the file is larger than this box accepts{limit}"),
    )
}

/// Stream one multipart field to a temp file, hashing as it goes; refuse past `max` bytes.
async fn receive(
    field: &mut axum::extract::multipart::Field<'_>,
    tmp_dir: &Path,
    max: u64,
) -> Result<Received, ApiError> {
    tokio::fs::create_dir_all(tmp_dir)
        .await
        .map_err(|e| io_error("creating the upload folder", e))?;
    let mut name = [0u8; 12];
    getrandom::fill(&mut name).map_err(|e| ApiError::internal(e.to_string()))?;
    let path = tmp_dir.join(format!("upload-{}.part", hex::encode(name)));
    let tmp = TempFile(Some(path.clone()));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| io_error("creating the upload file", e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut next_check = DISK_CHECK_EVERY;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large_error(Some(max)));
        }
        if size >= next_check {
            next_check = size + DISK_CHECK_EVERY;
            check_room(tmp_dir)?;
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| io_error("writing the upload", e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| io_error("saving the upload", e))?;
    Ok(Received {
        tmp,
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

/// Probe an untrusted upload in a child process (see `media::probe_in_child`): a decoder that
/// aborts takes only the child down, and the upload gets a 422.
async fn probe_untrusted(path: PathBuf) -> Result<media::ProbeInfo, ApiError> {
    media::probe_in_child(path, PROBE_BUDGET)
        .await
        .map_err(|e| match e {
            // Only the child's own plumbing fails with Io here; the file's contents did not.
            MediaError::Io(io) => ApiError::internal(format!("the probe process: {io}")),
            e => media_error(e),
        })
}

fn media_error(e: MediaError) -> ApiError {
    let status = match e {
        MediaError::Io(_) => return ApiError::internal(e.to_string()),
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(
        status,
        e.code(),
        format!("ไฟล์เสียงใช้ไม่ได้ / this file cannot be used as an announcement: {e}"),
    )
}

#[derive(Default)]
struct Form {
    title: Option<String>,
    script: String,
    agency: String,
    priority: Option<String>,
    valid_from: Option<String>,
    valid_until: Option<String>,
    plays_per_day: Option<String>,
    outputs: Option<String>,
}

pub async fn upload(
    State(st): State<AppState>,
    caller: Caller,
    Extension(slots): Extension<UploadSlots>,
    form: Multipart,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Uploader, Role::Admin])?;
    // Bounds before a byte of the file is read: uploads at once, and pending per person. (An
    // emergency upload skips both: it is approved by the act and must never wait.)
    let _slot = match slots.try_take() {
        Ok(permit) => permit,
        Err(busy) => return Ok(*busy),
    };
    let me = caller.name.clone();
    let pending = st
        .db(move |s| {
            Ok(s.announcements(Some(AnnouncementStatus::Pending))?
                .iter()
                .filter(|a| a.uploaded_by == me)
                .count())
        })
        .await?;
    if pending >= MAX_PENDING_PER_UPLOADER {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_pending",
            format!("มีประกาศรออนุมัติมากเกินไป / you already have {pending} announcements waiting for approval (at most {MAX_PENDING_PER_UPLOADER}); ask an approver to decide on them first"),
        ));
    }
    let (a, _) = ingest(&st, &caller, form, &[]).await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

/// Receive an upload form (streamed, hashed, probed) and store it as a `pending` announcement.
/// Text fields named in `extra` are accepted besides the announcement's own and returned.
pub(super) async fn ingest(
    st: &AppState,
    caller: &Caller,
    mut form: Multipart,
    extra: &[&str],
) -> Result<(crate::domain::Announcement, Vec<(String, String)>), ApiError> {
    let config = st.runner.config.clone();
    // The log's room is not for uploads: refuse before reading the file when the disk is low.
    check_room(&config.data_dir)?;
    let mut extras: Vec<(String, String)> = Vec::new();
    let mut f = Form::default();
    let mut received: Option<Received> = None;
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "audio" {
            if received.is_some() {
                return Err(ApiError::bad_request(
                    "two_files",
                    "send one 'audio' file per announcement",
                ));
            }
            received = Some(
                receive(
                    &mut field,
                    &config.data_dir.join("tmp"),
                    config.max_upload_bytes,
                )
                .await?,
            );
            continue;
        }
        const TEXT_FIELDS: [&str; 8] = [
            "title",
            "script",
            "agency",
            "priority",
            "valid_from",
            "valid_until",
            "plays_per_day",
            "outputs",
        ];
        if extra.contains(&name.as_str()) {
            let text = field.text().await.map_err(multipart_error)?;
            extras.push((name, text));
            continue;
        }
        if !TEXT_FIELDS.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_field",
                format!("unknown form field '{name}'"),
            ));
        }
        let text = field.text().await.map_err(multipart_error)?;
        if text.len() > MAX_TEXT_FIELD_BYTES {
            return Err(ApiError::bad_request(
                "field_too_long",
                format!("'{name}' is too long"),
            ));
        }
        match name.as_str() {
            "title" => f.title = Some(text),
            "script" => f.script = text,
            "agency" => f.agency = text,
            "priority" => f.priority = Some(text),
            "valid_from" => f.valid_from = Some(text),
            "valid_until" => f.valid_until = Some(text),
            "plays_per_day" => f.plays_per_day = Some(text),
            _ => f.outputs = Some(text),
        }
    }

    let title = f.title.as_deref().map(str::trim).unwrap_or("");
    if title.is_empty() {
        return Err(ApiError::bad_request(
            "missing_title",
            "กรุณาใส่ชื่อเรื่อง / a title is required",
        ));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::bad_request(
            "title_too_long",
            format!("a title may be at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    let Some(received) = received else {
        return Err(ApiError::bad_request(
            "missing_audio",
            "กรุณาแนบไฟล์เสียง / an 'audio' file is required",
        ));
    };
    if received.size == 0 {
        return Err(media_error(MediaError::Empty));
    }
    let priority: Priority = f
        .priority
        .as_deref()
        .unwrap_or("normal")
        .parse()
        .map_err(|m| ApiError::bad_request("bad_priority", m))?;
    let valid_from = parse_time("valid_from", f.valid_from.as_deref())?;
    let valid_until = parse_time("valid_until", f.valid_until.as_deref())?;
    if let (Some(a), Some(b)) = (valid_from, valid_until) {
        if b <= a {
            return Err(ApiError::bad_request(
                "bad_validity",
                "valid_until must be after valid_from",
            ));
        }
    }
    let plays_per_day = match f.plays_per_day.as_deref().map(str::trim) {
        None | Some("") => 1,
        Some(t) => t
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PLAYS_PER_DAY).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_plays_per_day",
                    format!("plays_per_day must be a whole number from 1 to {MAX_PLAYS_PER_DAY}"),
                )
            })?,
    };
    let known = config.output_names();
    let outputs: Vec<String> = match f.outputs.as_deref().map(str::trim) {
        None | Some("") => known.clone(),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    if let Some(bad) = outputs.iter().find(|o| !known.contains(o)) {
        return Err(ApiError::bad_request(
            "unknown_output",
            format!(
                "unknown output '{bad}' (this box has: {})",
                known.join(", ")
            ),
        ));
    }

    let Some(tmp_path) = received.tmp.path().map(Path::to_path_buf) else {
        return Err(ApiError::internal("upload vanished"));
    };
    let probe = probe_untrusted(tmp_path).await?;

    // Keep the audio under its hash; the same file uploaded twice is the same audio.
    let audio_dir = config.data_dir.join("audio");
    tokio::fs::create_dir_all(&audio_dir)
        .await
        .map_err(|e| io_error("creating the audio folder", e))?;
    let final_path = audio_dir.join(&received.sha256);
    let mut tmp = received.tmp;
    let created = if tokio::fs::try_exists(&final_path).await.unwrap_or(false) {
        false
    } else {
        let from = tmp
            .0
            .take()
            .ok_or_else(|| ApiError::internal("upload vanished"))?;
        if let Err(e) = tokio::fs::rename(&from, &final_path).await {
            let _ = tokio::fs::remove_file(&from).await;
            return Err(io_error("storing the audio", e));
        }
        true
    };
    let new = NewAnnouncement {
        title: title.to_string(),
        script: f.script,
        agency: f.agency.trim().to_string(),
        priority,
        sha256: received.sha256.clone(),
        size_bytes: received.size,
        container: probe.container,
        codec: probe.codec,
        sample_rate: probe.sample_rate,
        channels: probe.channels,
        duration_ms: probe.duration_ms,
        loudness_lufs: probe.loudness_lufs,
        valid_from,
        valid_until,
        plays_per_day,
        outputs,
        uploaded_by: caller.name.clone(),
    };
    let now = st.runner.clock.now();
    let sha = received.sha256;
    match st.db(move |s| s.insert_announcement(&new, now)).await {
        Ok(a) => {
            tracing::info!(id = a.id, uploader = %caller.name, sha256 = %a.sha256, "announcement uploaded");
            Ok((a, extras))
        }
        Err(e) => {
            // Leave nothing behind: remove the audio unless another announcement uses it.
            if created {
                let in_use = st.db(move |s| s.audio_in_use(&sha)).await.unwrap_or(true);
                if !in_use {
                    let _ = tokio::fs::remove_file(&final_path).await;
                }
            }
            Err(e)
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status: Option<AnnouncementStatus> = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .transpose()
        .map_err(|m| ApiError::bad_request("bad_status", m))?;
    let items = st.db(move |s| s.announcements(status)).await?;
    Ok(Json(json!({ "announcements": items })))
}

pub async fn one(
    State(st): State<AppState>,
    _caller: Caller,
    UrlPath(id): UrlPath<AnnouncementId>,
) -> Result<Json<Value>, ApiError> {
    let (a, history) = st
        .db(move |s| Ok((s.announcement(id)?, s.history(id)?)))
        .await?;
    let mut v = json!(a);
    v["history"] = json!(history);
    Ok(Json(v))
}

pub async fn audio(
    State(st): State<AppState>,
    _caller: Caller,
    UrlPath(id): UrlPath<AnnouncementId>,
) -> Result<Response, ApiError> {
    let a = st.db(move |s| s.announcement(id)).await?;
    let path = st.runner.audio_path(&a.sha256);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::internal(format!(
            "audio of announcement {id} at {}: {e}",
            path.display()
        ))
    })?;
    let mime = match a.codec.as_str() {
        "mp3" => "audio/mpeg",
        "vorbis" | "opus" => "audio/ogg",
        "flac" => "audio/flac",
        "aac" | "alac" => "audio/mp4",
        c if c.starts_with("pcm") || c.starts_with("adpcm") => "audio/wav",
        _ => "application/octet-stream",
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (header::CONTENT_LENGTH, a.size_bytes.to_string()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
pub struct Reason {
    #[serde(default)]
    reason: String,
}

async fn decide(
    st: AppState,
    caller: Caller,
    id: AnnouncementId,
    to: AnnouncementStatus,
    reason: String,
) -> Result<Json<Value>, ApiError> {
    let a = st.db(move |s| s.announcement(id)).await?;
    match to {
        AnnouncementStatus::Approved => {
            caller.require(&[Role::Approver, Role::Admin])?;
            if a.uploaded_by == caller.name {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "own_upload",
                    "ผู้อัปโหลดอนุมัติเองไม่ได้ / the person who uploaded an announcement cannot approve it; another approver must",
                ));
            }
        }
        AnnouncementStatus::Rejected => caller.require(&[Role::Approver, Role::Admin])?,
        AnnouncementStatus::Withdrawn => {
            let own = caller.role == Role::Uploader && a.uploaded_by == caller.name;
            if !own {
                caller.require(&[Role::Approver, Role::Admin])?;
            }
        }
        AnnouncementStatus::Pending => {
            return Err(ApiError::bad_request(
                "bad_status",
                "cannot go back to pending",
            ))
        }
    }
    if to == AnnouncementStatus::Rejected && reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "missing_reason",
            "กรุณาระบุเหตุผล / a reason is required to reject",
        ));
    }
    let now = st.runner.clock.now();
    let actor = caller.name.clone();
    let a = st
        .db(move |s| s.decide(id, to, &actor, reason.trim(), now))
        .await?;
    tracing::info!(id, status = to.as_str(), by = %caller.name, "announcement decided");
    if to == AnnouncementStatus::Withdrawn {
        // Off the air too, if it is airing now (the plan alone would only stop the next slot).
        let why = match a.reason.as_deref() {
            Some(r) if !r.is_empty() => format!("withdrawn by {}: {r}", caller.name),
            _ => format!("withdrawn by {}", caller.name),
        };
        st.runner.stop_announcement(id, &why); // and replans
    } else {
        st.runner.replan();
    }
    Ok(Json(json!(a)))
}

/// A JSON body is optional for approve and withdraw; reject needs {"reason"}.
fn reason_of(body: Option<Json<Reason>>) -> String {
    body.map(|Json(r)| r.reason).unwrap_or_default()
}

pub async fn approve(
    State(st): State<AppState>,
    caller: Caller,
    UrlPath(id): UrlPath<AnnouncementId>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    decide(
        st,
        caller,
        id,
        AnnouncementStatus::Approved,
        reason_of(body),
    )
    .await
}

pub async fn reject(
    State(st): State<AppState>,
    caller: Caller,
    UrlPath(id): UrlPath<AnnouncementId>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    decide(
        st,
        caller,
        id,
        AnnouncementStatus::Rejected,
        reason_of(body),
    )
    .await
}

pub async fn withdraw(
    State(st): State<AppState>,
    caller: Caller,
    UrlPath(id): UrlPath<AnnouncementId>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    decide(
        st,
        caller,
        id,
        AnnouncementStatus::Withdrawn,
        reason_of(body),
    )
    .await
}
