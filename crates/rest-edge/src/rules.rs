//! The `google.api.http` rules of a descriptor pool: read from each method's options, their
//! path templates parsed (`google/api/http.proto`'s grammar: literals, `*`, `**`, variables
//! `{field.path}` or `{field.path=segments}`, and a trailing `:verb`), and matched against
//! request paths.

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

/// One HTTP binding of an RPC.
#[derive(Debug, Clone)]
pub struct Route {
    /// The RPC.
    pub method: MethodDescriptor,
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE` or a custom one.
    pub http_method: http::Method,
    /// The path template as written.
    pub template: String,
    /// Its parsed segments.
    pub segments: Vec<Segment>,
    /// The `:verb` suffix.
    pub verb: Option<String>,
    /// `""` (no body), `"*"` (the whole request) or the name of the request field the body is.
    pub body: String,
    /// The response field sent as the body; empty for the whole response.
    pub response_body: String,
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches itself.
    Literal(String),
    /// `*`: any one segment.
    Any,
    /// `**`: the rest of the path.
    Rest,
    /// A variable: a field path bound to the segments it matches.
    Variable {
        /// The request field, dotted (`conversation.conversation_id`).
        field: String,
        /// What it matches (`*` when the template does not say).
        segments: Vec<Segment>,
    },
}

/// Why a rule could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{method}: {problem}")]
pub struct RuleError {
    method: String,
    problem: String,
}

/// Every HTTP binding of every method in `pool` (additional bindings included), in the order
/// the protos declare them.
pub fn routes(pool: &DescriptorPool) -> Result<Vec<Route>, RuleError> {
    let Some(extension) = pool.get_extension_by_name("google.api.http") else {
        return Ok(Vec::new());
    };
    let mut routes = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&extension) {
                continue;
            }
            let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                continue;
            };
            let additional = match rule.get_field_by_name("additional_bindings").as_deref() {
                Some(Value::List(list)) => list.clone(),
                _ => Vec::new(),
            };
            routes.push(route(&method, &rule)?);
            for binding in additional {
                if let Value::Message(binding) = binding {
                    routes.push(route(&method, &binding)?);
                }
            }
        }
    }
    Ok(routes)
}

fn text(rule: &DynamicMessage, name: &str) -> String {
    match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(value)) => value.clone(),
        _ => String::new(),
    }
}

fn route(method: &MethodDescriptor, rule: &DynamicMessage) -> Result<Route, RuleError> {
    let error = |problem: String| RuleError {
        method: method.full_name().to_owned(),
        problem,
    };
    let mut binding = None;
    for name in ["get", "put", "post", "delete", "patch"] {
        if rule.has_field_by_name(name) {
            let verb = http::Method::from_bytes(name.to_ascii_uppercase().as_bytes())
                .map_err(|problem| error(problem.to_string()))?;
            binding = Some((verb, text(rule, name)));
        }
    }
    if let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref() {
        let kind = text(custom, "kind");
        if !kind.is_empty() {
            let verb = http::Method::from_bytes(kind.as_bytes())
                .map_err(|problem| error(problem.to_string()))?;
            binding = Some((verb, text(custom, "path")));
        }
    }
    let (http_method, template) =
        binding.ok_or_else(|| error("an http rule without a pattern".to_owned()))?;
    let (segments, verb) = parse_template(&template).map_err(error)?;
    let body = text(rule, "body");
    let input = method.input();
    if !body.is_empty() && body != "*" && input.get_field_by_name(&body).is_none() {
        return Err(error(format!("body names no field: {body}")));
    }
    for field in variables(&segments) {
        if resolve(&input, field).is_none() {
            return Err(error(format!("the path binds no field: {field}")));
        }
    }
    Ok(Route {
        method: method.clone(),
        http_method,
        template,
        segments,
        verb,
        body,
        response_body: text(rule, "response_body"),
    })
}

/// The fields along a dotted path, if each step is a field (and every step but the last a
/// message).
pub fn resolve(
    message: &prost_reflect::MessageDescriptor,
    path: &str,
) -> Option<Vec<prost_reflect::FieldDescriptor>> {
    let mut fields = Vec::new();
    let mut current = message.clone();
    let mut steps = path.split('.').peekable();
    while let Some(step) = steps.next() {
        let field = current
            .get_field_by_name(step)
            .or_else(|| current.get_field_by_json_name(step))?;
        if steps.peek().is_some() {
            match field.kind() {
                prost_reflect::Kind::Message(inner) if !field.is_list() && !field.is_map() => {
                    current = inner;
                }
                _ => return None,
            }
        }
        fields.push(field);
    }
    Some(fields)
}

/// The field paths a template's variables bind.
pub fn variables(segments: &[Segment]) -> Vec<&str> {
    segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Variable { field, .. } => Some(field.as_str()),
            _ => None,
        })
        .collect()
}

/// Parses `/a/{b}/c/{d=e/*}:verb`.
pub fn parse_template(template: &str) -> Result<(Vec<Segment>, Option<String>), String> {
    let rest = template
        .strip_prefix('/')
        .ok_or_else(|| format!("a path template starts with '/': {template}"))?;
    // The verb follows the last ':' outside braces.
    let mut depth = 0;
    let mut verb_at = None;
    for (index, character) in rest.char_indices() {
        match character {
            '{' => depth += 1,
            '}' => depth -= 1,
            ':' if depth == 0 => verb_at = Some(index),
            _ => {}
        }
    }
    let (path, verb) = match verb_at {
        Some(index) => (&rest[..index], Some(rest[index + 1..].to_owned())),
        None => (rest, None),
    };
    let segments = parse_segments(path, template)?;
    Ok((segments, verb))
}

fn parse_segments(path: &str, template: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut remaining = path;
    while !remaining.is_empty() {
        if let Some(inner) = remaining.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("an unclosed variable in {template}"))?;
            let (field, pattern) = match inner[..end].split_once('=') {
                Some((field, pattern)) => (field, parse_segments(pattern, template)?),
                None => (&inner[..end], vec![Segment::Any]),
            };
            segments.push(Segment::Variable {
                field: field.to_owned(),
                segments: pattern,
            });
            remaining = &inner[end + 1..];
        } else {
            let end = remaining.find('/').unwrap_or(remaining.len());
            segments.push(match &remaining[..end] {
                "*" => Segment::Any,
                "**" => Segment::Rest,
                "" => return Err(format!("an empty segment in {template}")),
                literal => Segment::Literal(literal.to_owned()),
            });
            remaining = &remaining[end..];
        }
        remaining = remaining.strip_prefix('/').unwrap_or(remaining);
    }
    Ok(segments)
}

impl Route {
    /// The variables' values (still percent-encoded, `/`-joined for multi-segment variables)
    /// when `path` matches this route's template.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let path = path.strip_prefix('/')?;
        let path = match &self.verb {
            Some(verb) => path.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => path,
        };
        let parts: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        let mut bound = Vec::new();
        let used = match_segments(&self.segments, &parts, &mut bound)?;
        (used == parts.len()).then_some(bound)
    }

    /// How specific the template is: routes with more literal segments are tried first.
    pub fn specificity(&self) -> (usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|segment| matches!(segment, Segment::Literal(_)))
            .count();
        (literals, self.verb.is_some())
    }
}

/// Matches `segments` against the start of `parts`; returns how many parts they took.
fn match_segments(
    segments: &[Segment],
    parts: &[&str],
    bound: &mut Vec<(String, String)>,
) -> Option<usize> {
    let mut used = 0;
    for segment in segments {
        match segment {
            Segment::Literal(literal) => {
                if parts.get(used)? != literal {
                    return None;
                }
                used += 1;
            }
            Segment::Any => {
                if parts.get(used)?.is_empty() {
                    return None;
                }
                used += 1;
            }
            Segment::Rest => used = parts.len(),
            Segment::Variable { field, segments } => {
                let start = used;
                used += match_segments(segments, &parts[start..], &mut Vec::new())?;
                bound.push((field.clone(), parts[start..used].join("/")));
            }
        }
    }
    Some(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(template: &str) -> Route {
        let pool = messaging_proto::json::pool().expect("pool");
        let method = pool
            .get_service_by_name("messaging.conversation.v1.ConversationService")
            .and_then(|service| service.methods().next())
            .expect("a method");
        let (segments, verb) = parse_template(template).expect("template");
        Route {
            method,
            http_method: http::Method::GET,
            template: template.to_owned(),
            segments,
            verb,
            body: String::new(),
            response_body: String::new(),
        }
    }

    #[test]
    fn templates_bind_variables_and_verbs() {
        let archive = route("/v1/conversations/{conversation_id}:archive");
        assert_eq!(
            archive.matches("/v1/conversations/abc:archive"),
            Some(vec![("conversation_id".to_owned(), "abc".to_owned())])
        );
        assert_eq!(archive.matches("/v1/conversations/abc"), None);
        assert_eq!(archive.matches("/v1/conversations/abc:unarchive"), None);
        let get = route("/v1/conversations/{conversation_id}");
        assert_eq!(
            get.matches("/v1/conversations/abc:archive")
                .map(|b| b[0].1.clone()),
            Some("abc:archive".to_owned())
        );
        assert_eq!(get.matches("/v1/conversations"), None);
        assert_eq!(get.matches("/v1/conversations/a/b"), None);
        let search = route("/v1/messages:search");
        assert_eq!(search.matches("/v1/messages:search"), Some(vec![]));
        let nested = route("/v1/{name=conversations/*/messages/*}/x/**");
        assert_eq!(
            nested.matches("/v1/conversations/c/messages/m/x/y/z"),
            Some(vec![(
                "name".to_owned(),
                "conversations/c/messages/m".to_owned()
            )])
        );
        assert!(parse_template("v1/no-slash").is_err());
        assert!(parse_template("/v1/{open").is_err());
    }
}
