//! The OpenAPI 3.0 document of the REST edge, made from the descriptor set: each
//! `google.api.http` rule is an operation (its path variables path parameters, the other fields
//! query parameters or the JSON body, as the rule says), each message a schema in protobuf's
//! JSON mapping, and the protos' comments the descriptions. Errors are the JSON form of
//! `google.rpc.Status`, under `default`. The same document is served at `/openapi.json` and
//! kept in the repository (`proto/messaging.openapi.json`, written by `make openapi`; a test
//! fails when it is stale).

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{
    DescriptorPool, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, MethodDescriptor,
};
use serde_json::{Map, Value, json};

use crate::request::scalar_json;
use crate::rules::{self, Route, RuleError, Segment};

/// How deep nested messages are flattened into query parameters.
const QUERY_DEPTH: usize = 3;

/// The document for every rule in `pool`.
pub fn document(pool: &DescriptorPool) -> Result<Value, RuleError> {
    let routes: Vec<Route> = rules::routes(pool)?
        .into_iter()
        .filter(|route| !route.method.is_client_streaming())
        .collect();
    let mut schemas = Schemas::default();
    schemas.message_named(pool, "google.rpc.Status");
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for route in &routes {
        let method = &route.method;
        let base = format!("{}_{}", method.parent_service().name(), method.name());
        let count = seen.entry(base.clone()).or_default();
        let operation_id = match *count {
            0 => base,
            n => format!("{base}{}", n + 1),
        };
        *count += 1;
        let operation = operation(route, operation_id, &mut schemas);
        paths
            .entry(openapi_path(route))
            .or_default()
            .insert(route.http_method.as_str().to_ascii_lowercase(), operation);
    }
    let mut tags: Vec<Value> = routes
        .iter()
        .map(|route| {
            let service = route.method.parent_service();
            (service.full_name().to_owned(), service)
        })
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(name, service)| {
            json!({ "name": name, "description": comment(&service.parent_file(), service.path()) })
        })
        .collect();
    tags.dedup();
    Ok(json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Messaging API",
            "version": "v1",
            "description": "The REST/JSON form of the messaging services' gRPC API, made from the \
                google.api.http rules of their protos. JSON is protobuf's canonical JSON mapping \
                (lowerCamelCase names, 64-bit integers as strings, enums by name, RFC 3339 \
                timestamps; fields at their default value are left out; unknown fields are \
                refused). Errors are google.rpc.Status in JSON, with the HTTP status of its code. \
                Server-streaming operations answer newline-delimited JSON, or Server-Sent Events \
                for Accept: text/event-stream.",
        },
        "tags": tags,
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
            },
            "schemas": schemas.done,
        },
    }))
}

/// The document as the repository keeps it: pretty JSON.
pub fn render(pool: &DescriptorPool) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&document(pool)?)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repository_copy_is_in_step_with_the_protos() {
        let pool = messaging_proto::json::pool().expect("pool");
        let current = super::render(pool).expect("document");
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../proto/messaging.openapi.json"
        );
        let kept = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            kept.trim_end() == current,
            "{path} is stale: run `make openapi` and commit it"
        );
    }
}

/// The name of a path variable in the document: the last step of its field path (so
/// `/v1/conversations/{conversation.conversation_id}` is the same OpenAPI path as
/// `/v1/conversations/{conversation_id}`, as OpenAPI wants), or the whole path where two
/// variables of one template would share it.
fn parameter_name<'a>(route: &Route, field: &'a str) -> &'a str {
    let leaf = field.rsplit('.').next().unwrap_or(field);
    let shared = rules::variables(&route.segments)
        .iter()
        .filter(|other| other.rsplit('.').next() == Some(leaf))
        .count();
    if shared > 1 { field } else { leaf }
}

/// The template as an OpenAPI path: variables by their parameter names, patterns dropped.
fn openapi_path(route: &Route) -> String {
    let mut path = String::new();
    for segment in &route.segments {
        path.push('/');
        match segment {
            Segment::Literal(literal) => path.push_str(literal),
            Segment::Any => path.push('*'),
            Segment::Rest => path.push_str("**"),
            Segment::Variable { field, .. } => {
                path.push('{');
                path.push_str(parameter_name(route, field));
                path.push('}');
            }
        }
    }
    if let Some(verb) = &route.verb {
        path.push(':');
        path.push_str(verb);
    }
    path
}

fn operation(route: &Route, operation_id: String, schemas: &mut Schemas) -> Value {
    let method = &route.method;
    let input = method.input();
    let description = comment(&method.parent_file(), method.path());
    let summary = description
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace('\n', " ");
    let bound: BTreeSet<&str> = rules::variables(&route.segments).into_iter().collect();
    let mut parameters = Vec::new();
    for field_path in &bound {
        let Some(fields) = rules::resolve(&input, field_path) else {
            continue;
        };
        let Some(field) = fields.last() else {
            continue;
        };
        parameters.push(json!({
            "name": parameter_name(route, field_path),
            "in": "path",
            "required": true,
            "description": comment(&field.parent_file(), field.path()),
            "schema": schemas.field(field),
        }));
    }
    if route.body != "*" {
        let mut query = Vec::new();
        query_parameters(&input, "", &route.body, &bound, 0, &mut query);
        for (name, field) in query {
            let schema = schemas.field(&field);
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "description": comment(&field.parent_file(), field.path()),
                "schema": schema,
            });
            if field.is_list() {
                parameter["style"] = json!("form");
                parameter["explode"] = json!(true);
            }
            parameters.push(parameter);
        }
    }
    let mut operation = json!({
        "operationId": operation_id,
        "tags": [method.parent_service().full_name()],
        "summary": summary,
        "description": description,
        "parameters": parameters,
        "responses": responses(method, schemas),
    });
    if route.body == "*" {
        let top_bound: BTreeSet<&str> = bound
            .iter()
            .filter(|path| !path.contains('.'))
            .copied()
            .collect();
        operation["requestBody"] = json!({
            "content": { "application/json": { "schema": schemas.object(&input, &top_bound, true) } },
        });
    } else if let Some(field) = input.get_field_by_name(&route.body) {
        operation["requestBody"] = json!({
            "required": true,
            "description": comment(&field.parent_file(), field.path()),
            "content": { "application/json": { "schema": schemas.field(&field) } },
        });
    }
    operation
}

fn responses(method: &MethodDescriptor, schemas: &mut Schemas) -> Value {
    let output = schemas.message(&method.output());
    let status = json!({ "$ref": "#/components/schemas/google.rpc.Status" });
    let ok = if method.is_server_streaming() {
        json!({
            "description": "A stream: one line per message, and a last error line if the stream \
                fails (or, for Accept: text/event-stream, one event per message and an event \
                named error).",
            "content": {
                "application/x-ndjson": { "schema": {
                    "type": "object",
                    "properties": { "result": output, "error": status },
                } },
                "text/event-stream": { "schema": { "type": "string" } },
            },
        })
    } else {
        json!({
            "description": "OK",
            "content": { "application/json": { "schema": output } },
        })
    };
    json!({
        "200": ok,
        "default": {
            "description": "An error: google.rpc.Status with the HTTP status of its code (400 \
                INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE, 401 UNAUTHENTICATED, 403 \
                PERMISSION_DENIED, 404 NOT_FOUND, 409 ALREADY_EXISTS and ABORTED, 413 a body too \
                large, 429 RESOURCE_EXHAUSTED, 499 CANCELLED, 500 INTERNAL, 501 UNIMPLEMENTED, \
                503 UNAVAILABLE, 504 DEADLINE_EXCEEDED).",
            "content": { "application/json": { "schema": status } },
        },
    })
}

/// The leaf fields of `message` that the query may set, with their dotted lowerCamelCase
/// names: every field but the body's and the path's; nested messages flattened.
fn query_parameters(
    message: &MessageDescriptor,
    prefix: &str,
    body: &str,
    bound: &BTreeSet<&str>,
    depth: usize,
    out: &mut Vec<(String, FieldDescriptor)>,
) {
    for field in message.fields() {
        let proto_path = format!("{prefix}{}", field.name());
        if depth == 0 && field.name() == body || bound.contains(proto_path.as_str()) {
            continue;
        }
        if field.is_map() {
            continue;
        }
        let json_path = format!("{}{}", json_prefix(prefix), field.json_name());
        match field.kind() {
            Kind::Message(inner) if !scalar_json(&inner) => {
                if !field.is_list() && depth < QUERY_DEPTH {
                    query_parameters(
                        &inner,
                        &format!("{proto_path}."),
                        body,
                        bound,
                        depth + 1,
                        out,
                    );
                }
            }
            _ => out.push((json_path, field)),
        }
    }
}

/// The lowerCamelCase form of a dotted proto-name prefix.
fn json_prefix(prefix: &str) -> String {
    prefix
        .split('.')
        .filter(|part| !part.is_empty())
        .map(|part| format!("{}.", camel(part)))
        .collect()
}

fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for character in name.chars() {
        if character == '_' {
            upper = true;
        } else if upper {
            out.extend(character.to_uppercase());
            upper = false;
        } else {
            out.push(character);
        }
    }
    out
}

/// The leading comment of the element at `path` in `file`, trimmed.
fn comment(file: &FileDescriptor, path: &[i32]) -> String {
    file.file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|location| location.path == path))
        .and_then(|location| location.leading_comments.as_deref())
        .map(|text| {
            text.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// The message schemas written so far, by full name.
#[derive(Default)]
struct Schemas {
    done: BTreeMap<String, Value>,
}

impl Schemas {
    fn message_named(&mut self, pool: &DescriptorPool, name: &str) {
        if let Some(message) = pool.get_message_by_name(name) {
            self.message(&message);
        }
    }

    /// A reference to `message`'s schema, written first if it is new.
    fn message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known(message) {
            return schema;
        }
        let name = message.full_name().to_owned();
        if !self.done.contains_key(&name) {
            // Claimed before its fields are written, for recursive messages.
            self.done.insert(name.clone(), Value::Null);
            let schema = self.object(message, &BTreeSet::new(), false);
            self.done.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// `message` as an object schema without the fields in `without`; `closed` refuses other
    /// properties (request bodies: unknown fields are refused).
    fn object(
        &mut self,
        message: &MessageDescriptor,
        without: &BTreeSet<&str>,
        closed: bool,
    ) -> Value {
        let mut properties = Map::new();
        for field in message.fields() {
            if without.contains(field.name()) {
                continue;
            }
            properties.insert(field.json_name().to_owned(), self.field(&field));
        }
        let mut schema = json!({
            "type": "object",
            "description": comment(&message.parent_file(), message.path()),
            "properties": properties,
        });
        if closed {
            schema["additionalProperties"] = json!(false);
        }
        schema
    }

    /// The schema of `field`'s JSON value.
    fn field(&mut self, field: &FieldDescriptor) -> Value {
        let mut schema = if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                kind => kind,
            };
            json!({ "type": "object", "additionalProperties": self.kind(&value) })
        } else if field.is_list() {
            json!({ "type": "array", "items": self.kind(&field.kind()) })
        } else {
            self.kind(&field.kind())
        };
        let description = comment(&field.parent_file(), field.path());
        if !description.is_empty() && schema.get("$ref").is_none() {
            schema["description"] = json!(description);
        }
        schema
    }

    fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({ "type": "number" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$" })
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$" })
            }
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
            Kind::Enum(enumeration) => json!({
                "type": "string",
                "enum": enumeration.values().map(|value| value.name().to_owned()).collect::<Vec<_>>(),
            }),
            Kind::Message(message) => self.message(message),
        }
    }
}

/// The schemas of well-known types whose JSON is not an object of their fields.
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$" })
        }
        "google.protobuf.FieldMask" => json!({
            "type": "string",
            "description": "Field paths in lowerCamelCase, separated by commas.",
        }),
        "google.protobuf.Empty" => json!({ "type": "object" }),
        "google.protobuf.Struct" => json!({ "type": "object" }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array", "items": {} }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"],
        }),
        "google.protobuf.StringValue" | "google.protobuf.BytesValue" => json!({ "type": "string" }),
        "google.protobuf.BoolValue" => json!({ "type": "boolean" }),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({ "type": "integer" })
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({ "type": "string", "pattern": "^-?[0-9]{1,18}$" })
        }
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => {
            json!({ "type": "number" })
        }
        _ => return None,
    })
}
