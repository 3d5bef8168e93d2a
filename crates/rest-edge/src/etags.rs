//! HTTP conditional requests over the protos' `etag` fields (AIP-154): `If-Match` sets the
//! request's etag, and a response's etag becomes the `ETag` header.

use http::HeaderValue;
use prost_reflect::{DynamicMessage, ReflectMessage, Value};

use crate::errors::invalid;

/// Sets the `etag` field of `message` (or of its body field's message) from an `If-Match`
/// value (`"3"`, `W/"3"` or `3`); `*` asks nothing. Returns whether an etag was set; a
/// request without an etag field cannot be conditional (INVALID_ARGUMENT).
pub fn apply_if_match(
    message: &mut DynamicMessage,
    body: &str,
    value: &HeaderValue,
) -> Result<bool, tonic::Status> {
    let text = value
        .to_str()
        .map_err(|_| invalid("If-Match", "must be ASCII"))?
        .trim();
    if text == "*" {
        return Ok(false);
    }
    let tag = text.trim_start_matches("W/").trim_matches('"').to_owned();
    if message.descriptor().get_field_by_name("etag").is_some() {
        message.set_field_by_name("etag", Value::String(tag));
        return Ok(true);
    }
    if let Some(Value::Message(inner)) = message.get_field_by_name_mut(body)
        && inner.descriptor().get_field_by_name("etag").is_some()
    {
        inner.set_field_by_name("etag", Value::String(tag));
        return Ok(true);
    }
    Err(invalid("If-Match", "this operation takes no etag"))
}

/// The `ETag` header for a response with an etag: its own, or that of its first top-level
/// message field that has one.
pub fn etag_of(response: &DynamicMessage) -> Option<HeaderValue> {
    let own = |message: &DynamicMessage| match message.get_field_by_name("etag").as_deref() {
        Some(Value::String(tag)) if !tag.is_empty() => Some(tag.clone()),
        _ => None,
    };
    let tag = own(response).or_else(|| {
        response.fields().find_map(|(_, value)| match value {
            Value::Message(inner) => own(inner),
            _ => None,
        })
    })?;
    HeaderValue::from_str(&format!("\"{tag}\"")).ok()
}
