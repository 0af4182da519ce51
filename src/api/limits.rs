//! Bounds on what one request may bring: the size of its URI and headers (bodies are bounded
//! per route by `DefaultBodyLimit`), and how many uploads are received at once. Anything past a
//! bound is refused before a handler runs, with a status that says which bound.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

pub const MAX_URI_BYTES: usize = 8 * 1024;
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Uploads received (streamed to disk and decoded) at the same time. A district office uploads
/// a few files a day; two at once is plenty and keeps decoding from starving playout's CPU.
pub const MAX_CONCURRENT_UPLOADS: usize = 2;

/// Middleware: 414 for an overlong URI, 431 for too many or too large headers.
pub async fn bound_request(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    if uri_len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the address is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them are accepted"
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Room for concurrent uploads; shared by every request of one router.
#[derive(Clone)]
pub struct UploadSlots(Arc<Semaphore>);

impl UploadSlots {
    pub fn new(n: usize) -> Self {
        UploadSlots(Arc::new(Semaphore::new(n)))
    }

    /// A slot for one upload, held until the returned permit is dropped; or the 503 to send.
    pub fn try_take(&self) -> Result<OwnedSemaphorePermit, Box<Response>> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy_uploading",
                format!("กำลังรับไฟล์อื่นอยู่ / {MAX_CONCURRENT_UPLOADS} uploads are already being received; try again shortly"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            Box::new(r)
        })
    }
}
