//! An HTTP request as the RPC's request message: the body (the whole message for `body: "*"`,
//! one field for `body: "field"`), then the query parameters (every other field, by dotted
//! path, lowerCamelCase or proto names; repeated fields by repeating the parameter), then the
//! path variables, which win. Values are read by protobuf's JSON mapping, so a query parameter
//! holds what the field's JSON would (`2024-05-01T00:00:00Z` for a Timestamp, `title,description`
//! for a FieldMask, an enum's name or number). Unknown fields, in the body or the query, are
//! INVALID_ARGUMENT, as with Envoy's transcoder.

use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use crate::errors::invalid;
use crate::rules::{Route, resolve};

/// Builds the request message of `route` from the bound path variables (percent-encoded),
/// the raw query string and the body.
pub fn build(
    route: &Route,
    bindings: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, tonic::Status> {
    let input = route.method.input();
    let mut root = Map::new();
    if !route.body.is_empty() && !body.iter().all(u8::is_ascii_whitespace) {
        let parsed: Value = serde_json::from_slice(body)
            .map_err(|error| invalid("", format!("the body is not JSON: {error}")))?;
        if route.body == "*" {
            match parsed {
                Value::Object(object) => root = object,
                _ => return Err(invalid("", "the body must be a JSON object")),
            }
        } else if let Some(field) = input.get_field_by_name(&route.body) {
            root.insert(field.json_name().to_owned(), parsed);
        }
    }
    if route.body != "*" {
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let fields = resolve(&input, &name).ok_or_else(|| {
                invalid(&name, format!("{name} is not a field of {}", input.name()))
            })?;
            if fields[0].name() == route.body {
                return Err(invalid(
                    &name,
                    format!("{name} is in the body, not the query"),
                ));
            }
            set(&mut root, &fields, &value, true)?;
        }
    }
    for (name, raw) in bindings {
        let value = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| invalid(name, format!("{name} is not UTF-8")))?;
        let fields = resolve(&input, name).ok_or_else(|| invalid(name, "not a field"))?;
        set(&mut root, &fields, &value, false)?;
    }
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    DynamicMessage::deserialize_with_options(input.clone(), Value::Object(root), &options)
        .map_err(|error| invalid("", format!("invalid {}: {error}", input.name())))
}

/// Sets the field at the end of `fields` in `root` to `text` read as that field's JSON.
/// `append` adds to repeated fields (query parameters); a path variable replaces.
fn set(
    root: &mut Map<String, Value>,
    fields: &[FieldDescriptor],
    text: &str,
    append: bool,
) -> Result<(), tonic::Status> {
    let (last, parents) = fields.split_last().ok_or_else(|| invalid("", "no field"))?;
    let mut object = root;
    for parent in parents {
        // The same field may have come under its proto name (in a body): one key only.
        let existing = object
            .remove(parent.name())
            .or_else(|| object.remove(parent.json_name()));
        let entry = object
            .entry(parent.json_name().to_owned())
            .or_insert_with(|| existing.unwrap_or_else(|| Value::Object(Map::new())));
        object = match entry {
            Value::Object(inner) => inner,
            _ => return Err(invalid(parent.name(), "is not an object")),
        };
    }
    let value = leaf(last, text)?;
    let key = last.json_name().to_owned();
    if last.is_list() && append {
        let list = object
            .remove(last.name())
            .or_else(|| object.remove(&key))
            .unwrap_or_else(|| Value::Array(Vec::new()));
        let Value::Array(mut items) = list else {
            return Err(invalid(last.name(), "is a list"));
        };
        items.push(value);
        object.insert(key, Value::Array(items));
    } else {
        object.remove(last.name());
        object.insert(key, value);
    }
    Ok(())
}

/// A query parameter or path variable's text as the JSON value of `field`.
fn leaf(field: &FieldDescriptor, text: &str) -> Result<Value, tonic::Status> {
    if field.is_map() {
        return Err(invalid(field.name(), "a map cannot be set in the URL"));
    }
    Ok(match field.kind() {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(invalid(field.name(), "must be true or false")),
        },
        Kind::Enum(_) => match text.parse::<i64>() {
            Ok(number) => Value::from(number),
            Err(_) => Value::String(text.to_owned()),
        },
        Kind::Message(message) if !scalar_json(&message) => {
            return Err(invalid(
                field.name(),
                format!("{} cannot be set in the URL", message.full_name()),
            ));
        }
        Kind::Message(message) if message.full_name() == "google.protobuf.BoolValue" => {
            leaf_bool(field, text)?
        }
        // Strings, bytes (base64), numbers (the JSON mapping accepts them quoted) and the
        // well-known types written as strings.
        _ => Value::String(text.to_owned()),
    })
}

fn leaf_bool(field: &FieldDescriptor, text: &str) -> Result<Value, tonic::Status> {
    match text {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        _ => Err(invalid(field.name(), "must be true or false")),
    }
}

/// Well-known message types whose JSON is a string or number.
pub fn scalar_json(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
            | "google.protobuf.BoolValue"
            | "google.protobuf.Int32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.FloatValue"
            | "google.protobuf.DoubleValue"
    )
}
