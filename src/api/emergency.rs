//! Emergency preemption and stop (issue #7). (Placeholder until it lands.)

use super::{ApiError, Caller};

pub async fn trigger(_caller: Caller) -> Result<&'static str, ApiError> {
    Err(ApiError::not_found("not implemented yet"))
}

pub async fn stop(_caller: Caller) -> Result<&'static str, ApiError> {
    Err(ApiError::not_found("not implemented yet"))
}
