//! Every error the gateway answers, mapped to HTTP in one place. Bodies are always
//! `{"error":{"code","message"}}`; a 5xx never carries internals (they go to the log).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_proto::ids::IdError;
use serde_json::json;
use thiserror::Error;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Why a request was not served.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    TooLarge(String),
    #[error("unknown language {0:?}: see GET /v1/languages")]
    UnknownLanguage(String),
    /// stdin for a run that has not started yet.
    #[error("{0}")]
    NotRunning(String),
    /// stdin or kill for a run that has ended.
    #[error("{0}")]
    RunEnded(String),
    #[error("the run queue is full; retry later")]
    QueueFull,
    #[error("not ready: {0}")]
    NotReady(String),
    /// NATS or another dependency failed; the detail is logged, not answered.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug; the detail is logged, not answered.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidId(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnknownLanguage(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotRunning(_) | ApiError::RunEnded(_) => StatusCode::CONFLICT,
            ApiError::QueueFull | ApiError::NotReady(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidId(_) => "invalid_id",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnknownLanguage(_) => "unknown_language",
            ApiError::NotRunning(_) => "not_running",
            ApiError::RunEnded(_) => "run_ended",
            ApiError::QueueFull => "queue_full",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// What the client is told.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable(_) => "a service hearth depends on is unavailable; retry later".into(),
            ApiError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// The `{"error":{...}}` body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code(), "message": self.public_message()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::Unavailable(_) | ApiError::Internal(_) => tracing::warn!(error = %self, "request failed"),
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// Known paths, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_hide_details_and_503s_say_when_to_retry() {
        let e = ApiError::Unavailable("nats: connection refused at 10.0.0.1".into());
        assert!(!e.body().to_string().contains("10.0.0.1"));
        let r = ApiError::QueueFull.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(ApiError::UnknownLanguage("x".into()).status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
