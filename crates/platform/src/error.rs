//! One error type for every handler, mapped to a `tonic::Status` in exactly one place.
//!
//! Client mistakes carry `google.rpc` details (field violations for `INVALID_ARGUMENT`); server
//! faults are logged with their cause and reach the client as a bare `INTERNAL` that names no
//! table, query or tenant.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Result of anything a handler calls.
pub type ApiResult<T> = Result<T, ApiError>;

/// Every way a request can fail, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is malformed; each violation names a field.
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist for this caller (or exists in another tenant).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller is known but may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// No valid credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The resource is not in a state that allows this.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The resource exists already (a conflicting idempotency key, for example).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// An optimistic-concurrency check failed (etag mismatch); read again and retry.
    #[error("aborted: {0}")]
    Aborted(String),
    /// A limit was reached.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// A rate limit was reached: retry after the given time (sent as `google.rpc.RetryInfo`).
    #[error("rate limited: {message}")]
    RateLimited {
        /// Which limit.
        message: String,
        /// When a retry can succeed.
        retry_after: std::time::Duration,
    },
    /// A position past the end was asked for (a byte range beyond a file's size).
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// A dependency is down; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Stored data failed its integrity check (tampered or copied ciphertext, for example);
    /// it is never returned. The detail is logged, not sent.
    #[error("data loss: {0}")]
    DataLoss(String),
    /// A bug or an infrastructure fault; the cause is logged, not sent.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// A single field violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// Wraps a server-side fault.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::Aborted(_) => Code::Aborted,
            Self::ResourceExhausted(_) | Self::RateLimited { .. } => Code::ResourceExhausted,
            Self::OutOfRange(_) => Code::OutOfRange,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DataLoss(_) => Code::DataLoss,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        if crate::db::is_unreachable(&error) {
            tracing::warn!(%error, "the database is unreachable");
            return Self::Unavailable("the database is unavailable; retry later".to_owned());
        }
        Self::Internal(error.into())
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let code = error.code();
        match error {
            ApiError::InvalidArgument(violations) => {
                let summary = violations
                    .iter()
                    .map(|violation| format!("{}: {}", violation.field, violation.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                Status::with_error_details(
                    code,
                    format!("invalid argument: {summary}"),
                    ErrorDetails::with_bad_request(violations),
                )
            }
            ApiError::NotFound(what) => Status::new(code, format!("{what} not found")),
            ApiError::RateLimited {
                message,
                retry_after,
            } => Status::with_error_details(
                code,
                format!("{message}; retry in {} ms", retry_after.as_millis().max(1)),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                Status::new(code, "internal error")
            }
            ApiError::DataLoss(detail) => {
                tracing::error!(detail, "stored data failed its integrity check");
                Status::new(
                    code,
                    "stored data is corrupt: it failed its integrity check",
                )
            }
            ApiError::PermissionDenied(message)
            | ApiError::Unauthenticated(message)
            | ApiError::FailedPrecondition(message)
            | ApiError::AlreadyExists(message)
            | ApiError::Aborted(message)
            | ApiError::ResourceExhausted(message)
            | ApiError::OutOfRange(message)
            | ApiError::Unavailable(message) => Status::new(code, message),
        }
    }
}

/// Collects field violations while a request is validated, so that the client learns about
/// every bad field at once rather than one per round trip.
#[derive(Debug, Default)]
pub struct FieldViolations(Vec<FieldViolation>);

impl FieldViolations {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the error of a validation result and returns its value, if any.
    pub fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }

    /// `Ok` when nothing was recorded, else `INVALID_ARGUMENT` with every violation.
    pub fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    /// `INVALID_ARGUMENT` with every violation recorded; call it when a checked value is
    /// missing, which means a violation was recorded for it.
    pub fn into_error(self) -> ApiError {
        ApiError::InvalidArgument(self.0)
    }
}
