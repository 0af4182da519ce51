//! The HTTP API (axum). One file per resource; errors become statuses in one place
//! (`error.rs`); roles are checked in one place (`auth.rs`). Handlers never touch a player: they
//! ask the runner.

mod airtime;
mod announcements;
mod audit;
mod auth;
mod console;
mod emergency;
mod error;
mod limits;
mod link;
mod reports;
mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use tokio::net::TcpListener;

pub use auth::{AnyCaller, Caller};
pub use error::ApiError;

use crate::runner::Runner;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub runner: Arc<Runner>,
}

impl AppState {
    pub fn store(&self) -> &Store {
        &self.runner.store
    }

    /// Run a blocking store call off the async threads.
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        self.store().call(f).await.map_err(ApiError::from)
    }
}

/// Small JSON and form fields are bounded well below an upload.
const SMALL_BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let upload_limit = state.runner.config.max_upload_bytes as usize + 1024 * 1024;
    Router::new()
        .route("/healthz", get(status::healthz))
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/whoami", get(status::whoami))
        .route("/api/v1/slots", get(status::slots))
        .route("/api/v1/plan", get(status::plan))
        .route(
            "/api/v1/announcements",
            get(announcements::list)
                .post(announcements::upload)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/v1/announcements/{id}", get(announcements::one))
        .route(
            "/api/v1/announcements/{id}/audio",
            get(announcements::audio),
        )
        .route(
            "/api/v1/announcements/{id}/approve",
            post(announcements::approve),
        )
        .route(
            "/api/v1/announcements/{id}/reject",
            post(announcements::reject),
        )
        .route(
            "/api/v1/announcements/{id}/withdraw",
            post(announcements::withdraw),
        )
        .route("/api/v1/airtime", get(airtime::query))
        .route("/api/v1/airtime/export", get(audit::export))
        .route("/api/v1/audit/report", get(audit::report))
        .route("/api/v1/calendar", get(status::calendar))
        .route(
            "/api/v1/emergency",
            post(emergency::trigger).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/v1/playout/stop", post(emergency::stop))
        .route(
            "/api/v1/reports",
            post(reports::report).layer(DefaultBodyLimit::max(reports::MAX_COMPRESSED_BYTES)),
        )
        .route("/api/v1/boxes", get(reports::boxes))
        .route(
            "/api/v1/cap",
            post(link::post_cap)
                .get(link::list_cap)
                .layer(DefaultBodyLimit::max(crate::sync::cap::MAX_CAP_BYTES)),
        )
        .route("/api/v1/link", get(link::link_status))
        .route("/", get(console::index))
        .route("/assets/{*path}", get(console::asset))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(SMALL_BODY_LIMIT))
        // Issue #4: bounded uploads at once, a brake on token guessing per address, bounded
        // URI and headers (outermost, so nothing else sees an oversized request).
        .layer(Extension(limits::UploadSlots::new(
            limits::MAX_CONCURRENT_UPLOADS,
        )))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::Throttle::default()),
            auth::throttle,
        ))
        .layer(axum::middleware::from_fn(limits::bound_request))
        .with_state(state)
}

/// Serve on `listener` until `shutdown` resolves. Each request knows its peer's address (the
/// token-guessing brake counts per address).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
