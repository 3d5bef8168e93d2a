//! gRPC errors as HTTP answers: the status code by the standard mapping (`google/rpc/code.proto`,
//! as grpc-gateway and Envoy's transcoder apply it), and a body that is the JSON form of
//! `google.rpc.Status` with its details (`BadRequest` field violations and the like, each with
//! its `@type`).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prost_reflect::DynamicMessage;
use tonic::Code;

/// The HTTP status of a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `status` as the JSON of `google.rpc.Status`: `code` (the gRPC code's number), `message`,
/// and `details` when the status carries any.
pub fn status_json(status: &tonic::Status) -> serde_json::Value {
    let mut body = serde_json::json!({
        "code": status.code() as i32,
        "message": status.message(),
    });
    if let Some(details) = details_json(status.details()) {
        body["details"] = details;
    }
    body
}

/// The `details` of an encoded `google.rpc.Status`, each `Any` written as its type's JSON.
fn details_json(encoded: &[u8]) -> Option<serde_json::Value> {
    if encoded.is_empty() {
        return None;
    }
    let descriptor = messaging_proto::json::pool()
        .ok()?
        .get_message_by_name("google.rpc.Status")?;
    let decoded = DynamicMessage::decode(descriptor, encoded).ok()?;
    let json = serde_json::to_value(&decoded).ok()?;
    json.get("details").cloned()
}

/// An error answer: the status's HTTP code and its JSON body (and `WWW-Authenticate` on 401).
pub fn response(status: &tonic::Status) -> Response {
    response_with(http_status(status.code()), status)
}

/// An error answer with an HTTP code of the edge's own choosing (413, 405, 412).
pub fn response_with(code: StatusCode, status: &tonic::Status) -> Response {
    let mut response = (code, axum::Json(status_json(status))).into_response();
    if code == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// INVALID_ARGUMENT with one field violation (none when `field` is empty: the request as a
/// whole is wrong).
pub fn invalid(field: &str, description: impl Into<String>) -> tonic::Status {
    let description = description.into();
    if field.is_empty() {
        return tonic::Status::invalid_argument(description);
    }
    <tonic::Status as tonic_types::StatusExt>::with_error_details(
        Code::InvalidArgument,
        description.clone(),
        tonic_types::ErrorDetails::with_bad_request_violation(field, description),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_violations_are_written_with_their_type() {
        let body = status_json(&invalid("title", "too long"));
        assert_eq!(body["code"], 3);
        assert_eq!(body["message"], "too long");
        assert_eq!(
            body["details"][0],
            serde_json::json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "title", "description": "too long"}]
            })
        );
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(Code::Aborted), StatusCode::CONFLICT);
    }
}
