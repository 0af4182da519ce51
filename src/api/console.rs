//! The web console for district staff and auditors (issue #5): static assets embedded in the
//! binary. (Placeholder until the console lands.)

use axum::extract::Path;

use super::ApiError;

pub async fn index() -> Result<&'static str, ApiError> {
    Err(ApiError::not_found("the console is not built yet"))
}

pub async fn asset(Path(_path): Path<String>) -> Result<&'static str, ApiError> {
    Err(ApiError::not_found("no such asset"))
}
