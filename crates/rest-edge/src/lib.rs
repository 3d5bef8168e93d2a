//! The REST/JSON edge: serves the `google.api.http` rules of the protos over HTTP/1.1 and
//! HTTP/2, and calls the gRPC services behind it. Everything is driven by the descriptor set
//! (`messaging_proto::FILE_DESCRIPTOR_SET`): a new RPC with a rule is served without code.
//!
//! - `rules`: the rules and their path templates; `request`: an HTTP request as the RPC's
//!   request message; `codec`: calling any RPC with dynamic messages; `errors`: gRPC status
//!   to HTTP; `openapi`: the OpenAPI document of the rules, served at `/openapi.json`.
//! - JSON is protobuf's canonical JSON mapping (prost-reflect): lowerCamelCase names, 64-bit
//!   integers as strings, enums by name, RFC 3339 timestamps; fields at their default value are
//!   left out; unknown fields are INVALID_ARGUMENT.
//! - Server-streaming RPCs answer newline-delimited JSON (`application/x-ndjson`, one
//!   `{"result": ...}` per message and a last `{"error": ...}` if the stream fails, as
//!   grpc-gateway writes them) or, for `Accept: text/event-stream`, Server-Sent Events (each
//!   message a `data:` line, a failure an `event: error`).
//! - Conditional requests: an `If-Match` header sets the request's `etag` field (or its body
//!   message's), and the ABORTED that a stale etag gets is answered 412 Precondition Failed;
//!   a response that carries an `etag` (at its top or in a top-level message) sends it as the
//!   `ETag` header.
//! - The edge adds no rules of its own: the `Authorization` header (and `x-messaging-*`,
//!   `x-request-id`, `traceparent`, `grpc-metadata-*` headers) travel to the services as
//!   metadata, so authentication, tenants and limits are theirs.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use prost_reflect::DynamicMessage;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;

pub mod codec;
pub mod errors;
pub mod etags;
pub mod openapi;
pub mod request;
pub mod rules;

use rules::Route;

/// Everything the binary reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Logging.
    #[serde(default)]
    pub telemetry: messaging_platform::config::TelemetrySettings,
    /// The edge's own section.
    #[serde(default)]
    pub rest_edge: EdgeSettings,
}

/// The `[rest_edge]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EdgeSettings {
    /// Address to listen on; default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// conversation-service; default `http://127.0.0.1:50051`.
    pub conversation_service_url: String,
    /// message-service; default `http://127.0.0.1:50052`.
    pub message_service_url: String,
    /// Largest request body, in bytes; larger ones are refused with 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Origins browsers may call from (CORS), for example `https://app.example.com`; `*`
    /// allows any. Empty (the default): no CORS headers, so browsers allow same-origin only.
    pub cors_allowed_origins: Vec<String>,
    /// How long browsers may cache a CORS preflight answer; default 10 minutes.
    #[serde(with = "humantime_serde")]
    pub cors_max_age: Duration,
    /// How long a shutdown waits for requests in flight after open streams were ended;
    /// default 10 s.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            conversation_service_url: "http://127.0.0.1:50051".to_owned(),
            message_service_url: "http://127.0.0.1:50052".to_owned(),
            max_body_bytes: 1024 * 1024,
            cors_allowed_origins: Vec::new(),
            cors_max_age: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The routes and the services behind them.
#[derive(Debug)]
struct Edge {
    /// Every rule, most specific first.
    routes: Vec<Route>,
    /// A channel per gRPC service, by its full name.
    upstreams: HashMap<String, Channel>,
    max_body_bytes: usize,
    /// The OpenAPI document, rendered once.
    openapi: bytes::Bytes,
    /// Cancelled at shutdown: open streams end with an error line.
    closing: CancellationToken,
}

/// Serves the REST edge on `listener` until `shutdown`, then ends open streams and waits up to
/// `drain_timeout` for the requests in flight.
pub async fn run(
    settings: EdgeSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = messaging_proto::json::pool()?;
    let mut routes: Vec<Route> = rules::routes(pool)?
        .into_iter()
        // Client streams have no REST form.
        .filter(|route| !route.method.is_client_streaming())
        .collect();
    routes.sort_by_key(|route| std::cmp::Reverse(route.specificity()));
    let mut upstreams = HashMap::new();
    for service in pool.services() {
        let url = match service.package_name() {
            "messaging.conversation.v1" => &settings.conversation_service_url,
            "messaging.message.v1" => &settings.message_service_url,
            _ => continue,
        };
        let channel = Channel::from_shared(url.clone())?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        upstreams.insert(service.full_name().to_owned(), channel);
    }
    let closing = CancellationToken::new();
    let edge_routes = routes.len();
    let edge = Arc::new(Edge {
        openapi: openapi::render(pool)?.into(),
        routes,
        upstreams,
        max_body_bytes: settings.max_body_bytes,
        closing: closing.clone(),
    });
    let router = axum::Router::new()
        .route("/openapi.json", axum::routing::get(serve_openapi))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(transcode)
        .with_state(edge)
        .layer(cors(&settings)?);
    tracing::info!(address = %listener.local_addr()?, routes = edge_routes, "rest-edge listening");
    let drained = closing.clone();
    let deadline = settings.drain_timeout;
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        drained.cancel();
    });
    let mut server = tokio::spawn(async move { server.await });
    // The server ends by itself only on an error of its listener.
    tokio::select! {
        result = &mut server => return Ok(result??),
        () = closing.cancelled() => {}
    }
    match tokio::time::timeout(deadline, server).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!("requests were still open at the drain deadline"),
    }
    Ok(())
}

fn cors(settings: &EdgeSettings) -> anyhow::Result<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = &settings.cors_allowed_origins;
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            http::HeaderName::from_static("last-event-id"),
        ])
        .max_age(settings.cors_max_age);
    Ok(if origins.is_empty() {
        CorsLayer::new()
    } else if origins.iter().any(|origin| origin == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let origins = origins
            .iter()
            .map(|origin| HeaderValue::from_str(origin))
            .collect::<Result<Vec<_>, _>>()?;
        layer.allow_origin(origins)
    })
}

async fn serve_openapi(State(edge): State<Arc<Edge>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        edge.openapi.clone(),
    )
        .into_response()
}

/// Finds the rule the request matches and calls its RPC.
async fn transcode(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let mut allowed = Vec::new();
    let mut found = None;
    for route in &edge.routes {
        if let Some(bindings) = route.matches(path) {
            if route.http_method == parts.method {
                found = Some((route, bindings));
                break;
            }
            allowed.push(route.http_method.clone());
        }
    }
    let Some((route, bindings)) = found else {
        if allowed.is_empty() {
            return errors::response(&tonic::Status::not_found(format!(
                "no route for {} {path}",
                parts.method
            )));
        }
        let mut response = errors::response_with(
            StatusCode::METHOD_NOT_ALLOWED,
            &tonic::Status::unimplemented(format!("{} is not allowed here", parts.method)),
        );
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        return response;
    };
    let body = match read_body(body, &parts.headers, edge.max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let mut message = match request::build(route, &bindings, parts.uri.query(), &body) {
        Ok(message) => message,
        Err(status) => return errors::response(&status),
    };
    let conditional = match parts.headers.get(header::IF_MATCH) {
        Some(tag) => match etags::apply_if_match(&mut message, &route.body, tag) {
            Ok(applied) => applied,
            Err(status) => return errors::response(&status),
        },
        None => false,
    };
    let Some(channel) = edge
        .upstreams
        .get(route.method.parent_service().full_name())
    else {
        return errors::response(&tonic::Status::unimplemented(
            "no service behind this route",
        ));
    };
    let mut call = tonic::Request::new(message);
    *call.metadata_mut() = metadata(&parts.headers);
    let path = match http::uri::PathAndQuery::try_from(format!(
        "/{}/{}",
        route.method.parent_service().full_name(),
        route.method.name()
    )) {
        Ok(path) => path,
        Err(error) => return errors::response(&tonic::Status::internal(error.to_string())),
    };
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(error) = grpc.ready().await {
        return errors::response(&tonic::Status::unavailable(format!(
            "the service is unreachable: {error}"
        )));
    }
    let codec = codec::DynamicCodec::new(route.method.output());
    if route.method.is_server_streaming() {
        let stream = match grpc.server_streaming(call, path, codec).await {
            Ok(response) => response.into_inner(),
            Err(status) => return errors::response(&status),
        };
        let events = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/event-stream"));
        stream_response(stream, events, edge.closing.clone())
    } else {
        match grpc.unary(call, path, codec).await {
            Ok(response) => {
                let response = response.into_inner();
                let mut answer = json_response(&response, &route.response_body);
                if let Some(tag) = etags::etag_of(&response) {
                    answer.headers_mut().insert(header::ETAG, tag);
                }
                answer
            }
            Err(status) if conditional && status.code() == tonic::Code::Aborted => {
                errors::response_with(StatusCode::PRECONDITION_FAILED, &status)
            }
            Err(status) => errors::response(&status),
        }
    }
}

/// How much of a body over the limit is still read (and thrown away) before the 413, so that
/// a client still sending it reads the answer instead of a reset connection.
const DRAIN_FACTOR: usize = 16;

/// The request body, up to `limit` bytes; 413 beyond (400 for a body that breaks off).
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, Box<Response>> {
    let too_large = || {
        Box::new(errors::response_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            &tonic::Status::resource_exhausted(format!("the body is larger than {limit} bytes")),
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit.saturating_mul(DRAIN_FACTOR)) {
        return Err(too_large());
    }
    let mut collected = bytes::BytesMut::new();
    let mut seen = 0_usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            Box::new(errors::response(&errors::invalid(
                "",
                format!("the body broke off: {error}"),
            )))
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit.saturating_mul(DRAIN_FACTOR) {
            break;
        }
        if seen <= limit {
            collected.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(collected.freeze())
}

/// The request headers that travel to the service as metadata.
fn metadata(headers: &HeaderMap) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let forwarded = if let Some(stripped) = name.strip_prefix("grpc-metadata-") {
            stripped
        } else if name == "authorization"
            || name.starts_with("x-messaging-")
            || name == "x-request-id"
            || name == "traceparent"
            || name == "tracestate"
        {
            name
        } else {
            continue;
        };
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(forwarded.as_bytes()),
            MetadataValue::try_from(value.as_bytes()),
        ) {
            metadata.append(key, value);
        }
    }
    metadata
}

/// A unary answer: the response (or its `response_body` field) in JSON, fields in the proto's
/// order.
fn json_response(message: &DynamicMessage, response_body: &str) -> Response {
    let written = match message.get_field_by_name(response_body).as_deref() {
        Some(prost_reflect::Value::Message(field)) if !response_body.is_empty() => {
            serde_json::to_vec(field)
        }
        _ => serde_json::to_vec(message),
    };
    match written {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(error) => errors::response(&tonic::Status::internal(format!(
            "writing the response: {error}"
        ))),
    }
}

/// What a streamed item is: a message in JSON, or the status that ended the stream.
enum Item {
    Message(Box<serde_json::value::RawValue>),
    Error(serde_json::Value),
}

fn items(
    stream: tonic::Streaming<DynamicMessage>,
    closing: CancellationToken,
) -> impl Stream<Item = Item> + Send {
    futures::stream::unfold((Some(stream), closing), |(stream, closing)| async move {
        let mut stream = stream?;
        let next = tokio::select! {
            () = closing.cancelled() => Err(tonic::Status::unavailable(
                "the REST edge is shutting down: reconnect, resuming after the last item received",
            )),
            next = stream.message() => next,
        };
        match next {
            Ok(Some(message)) => match serde_json::value::to_raw_value(&message) {
                Ok(value) => Some((Item::Message(value), (Some(stream), closing))),
                Err(error) => Some((
                    Item::Error(errors::status_json(&tonic::Status::internal(
                        error.to_string(),
                    ))),
                    (None, closing),
                )),
            },
            Ok(None) => None,
            Err(status) => Some((Item::Error(errors::status_json(&status)), (None, closing))),
        }
    })
}

/// A streamed answer: newline-delimited JSON, or Server-Sent Events.
fn stream_response(
    stream: tonic::Streaming<DynamicMessage>,
    events: bool,
    closing: CancellationToken,
) -> Response {
    let items = items(stream, closing);
    if events {
        let events = items.map(|item| {
            Ok::<_, std::convert::Infallible>(match item {
                Item::Message(value) => Event::default().data(value.get()),
                Item::Error(value) => Event::default().event("error").data(value.to_string()),
            })
        });
        return Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    let lines = items.map(|item| {
        let bytes = match item {
            Item::Message(value) => format!("{{\"result\":{}}}\n", value.get()),
            Item::Error(value) => format!("{{\"error\":{value}}}\n"),
        };
        Ok::<_, std::convert::Infallible>(bytes)
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
