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
    /// No (valid) credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not reach this.
    #[error("{0}")]
    Forbidden(String),
    /// The user's request rate (token bucket) is spent.
    #[error("too many requests for user {user}; retry in {retry_after_s} s")]
    RateLimited { user: String, retry_after_s: u64 },
    /// The user has as many runs queued or running as its tier allows.
    #[error("user {user} has {active} runs queued or running, the most its tier allows at once ({max}); retry when one ends")]
    TooManyRuns { user: String, active: usize, max: u32 },
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
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } | ApiError::TooManyRuns { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManyRuns { .. } => "too_many_runs",
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

    /// Seconds to wait before retrying, for the answers that have one (429, 503).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_s, .. } => Some(*retry_after_s),
            ApiError::TooManyRuns { .. } => Some(RETRY_AFTER_SECS),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The `{"error":{...}}` body (with `retry_after_s` where there is one).
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code(), "message": self.public_message()});
        if let Some(s) = self.retry_after() {
            error["retry_after_s"] = s.into();
        }
        json!({ "error": error })
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
        if let Some(s) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
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
        let r = ApiError::RateLimited { user: "u".into(), retry_after_s: 3 }.into_response();
        assert_eq!(
            (r.status(), &r.headers()[header::RETRY_AFTER]),
            (StatusCode::TOO_MANY_REQUESTS, &HeaderValue::from(3))
        );
        let e = ApiError::TooManyRuns { user: "u".into(), active: 4, max: 4 };
        assert_eq!((e.code(), e.body()["error"]["retry_after_s"].as_u64()), ("too_many_runs", Some(1)));
        let r = ApiError::Unauthorized("no".into()).into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
