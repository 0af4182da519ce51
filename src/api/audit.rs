//! Auditing endpoints (issue #4): signed airtime export and the planned-vs-aired report.
//! (Placeholder until they land.)

use super::{ApiError, Caller};

pub async fn export(_caller: Caller) -> Result<&'static str, ApiError> {
    Err(ApiError::not_found("not implemented yet"))
}

pub async fn report(_caller: Caller) -> Result<&'static str, ApiError> {
    Err(ApiError::not_found("not implemented yet"))
}
