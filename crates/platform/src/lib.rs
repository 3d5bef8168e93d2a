//! What both services share: layered configuration, tracing, JWT authentication and tenancy,
//! the error type and its mapping to `tonic::Status`, database connections with a schema per
//! service, cursor pagination and the gRPC server bootstrap with health and reflection.

pub mod auth;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod migration;
pub mod pagination;
pub mod server;
pub mod telemetry;
pub mod time;
pub mod validate;

pub use auth::{Authenticator, Caller};
pub use error::{ApiError, ApiResult, FieldViolations};
pub use ids::{RequestId, TenantId, UserId};
