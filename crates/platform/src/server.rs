//! The gRPC server bootstrap: the caller binds the listener (port 0 in tests) and owns shutdown;
//! the server always adds `grpc.health.v1` and server reflection (v1 and v1alpha, for grpcurl
//! and `buf curl` alike), logs one span per call, and drains on shutdown: health turns
//! NOT_SERVING, open streams end with their resume position, in-flight unary calls finish, and
//! whatever is still open when the drain deadline passes is closed.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;

/// How a server stops, and what its health depends on.
#[derive(Debug, Clone)]
pub struct Drain {
    /// Cancelled when shutdown begins: streams and background tasks watch it.
    pub closing: tokio_util::sync::CancellationToken,
    /// How long in-flight calls may take to finish after that.
    pub deadline: Duration,
    /// The database: while it does not answer (PostgreSQL), health says NOT_SERVING.
    pub database: Option<sea_orm::DatabaseConnection>,
}

/// Request metadata (headers) a call may carry. Up to it, any metadata is read; over it, the
/// call fails alone (HTTP 431) while the compressed header block stays under it, and beyond
/// that HTTP/2's own protection ends the connection (GOAWAY COMPRESSION_ERROR), since a header
/// block can only be skipped by decoding it. hyper's default is 16 KiB.
pub const MAX_HEADER_LIST_BYTES: u32 = 256 * 1024;

/// How often the database behind health is probed, and how long a probe may take.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps health in step with the database until `closing`.
async fn probe_database(
    database: sea_orm::DatabaseConnection,
    reporter: tonic_health::server::HealthReporter,
    names: Vec<String>,
    closing: tokio_util::sync::CancellationToken,
) {
    let mut serving = true;
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tokio::select! {
            () = closing.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let up = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, database.ping()).await,
            Ok(Ok(()))
        );
        if up == serving || closing.is_cancelled() {
            continue;
        }
        serving = up;
        let status = if up {
            tracing::info!("the database answers again: serving");
            ServingStatus::Serving
        } else {
            tracing::warn!("the database does not answer: not serving");
            ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
        for name in &names {
            reporter.set_service_status(name, status).await;
        }
    }
}

/// Serves `routes` plus health and reflection on `listener` until `shutdown` completes, then
/// drains (see the module comment). `health_names` are the fully qualified service names
/// reported SERVING (the empty name, for the whole server, is always reported).
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    health_names: &[&str],
    shutdown: impl Future<Output = ()> + Send,
    drain: Drain,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    for name in health_names {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    // The descriptor set describes every service of the product; list only the ones served here.
    let reflection = || {
        health_names.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(messaging_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health"),
            |builder, name| builder.with_service_name(*name),
        )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let names: Vec<String> = health_names.iter().map(|name| (*name).to_owned()).collect();
    if let Some(database) = drain.database.clone().filter(crate::db::is_postgres) {
        tokio::spawn(probe_database(
            database,
            reporter.clone(),
            names.clone(),
            drain.closing.clone(),
        ));
    }
    let closing = drain.closing.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(deadline = ?drain.deadline, "shutting down: draining in-flight calls");
        closing.cancel();
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in names {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    };

    // Server::tcp_nodelay applies only to sockets tonic accepts itself; these come from the
    // caller's listener, so set it here. Without it, responses written in several pieces
    // (headers, data, trailers) waited for delayed ACKs: about 40 ms per call, measured by
    // make bench.
    let incoming = TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        stream
    });
    let server = Server::builder()
        .layer(tower::util::MapResponseLayer::new(client_faults))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .trace_fn(|request| tracing::info_span!("grpc", method = %request.uri().path()))
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let deadline = async {
        drain.closing.cancelled().await;
        tokio::time::sleep(drain.deadline).await;
    };
    tokio::select! {
        result = server => result?,
        () = deadline => {
            tracing::warn!("drain deadline passed: closing the calls still open");
        }
    }
    Ok(())
}

/// Gives client faults that tonic reports with server codes the codes they deserve: a request
/// that is not valid protobuf (tonic: INTERNAL) is INVALID_ARGUMENT, and one larger than the
/// 4 MiB limit (tonic: OUT_OF_RANGE) is RESOURCE_EXHAUSTED. Both are answered before a handler
/// runs, as a trailers-only response, so only its headers change.
fn client_faults<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let (Some(status), Some(message)) = (headers.get("grpc-status"), headers.get("grpc-message"))
    else {
        return response;
    };
    let message = message.as_bytes();
    let code = match status.as_bytes() {
        b"13" if message.starts_with(b"failed%20to%20decode%20Protobuf%20message") => {
            Some((tonic::Code::InvalidArgument, None))
        }
        b"11" if message.starts_with(b"Error,%20decoded%20message%20length%20too%20large") => {
            Some((
                tonic::Code::ResourceExhausted,
                Some("request too large: the limit is 4 MiB per message"),
            ))
        }
        _ => None,
    };
    if let Some((code, text)) = code {
        headers.insert("grpc-status", http::HeaderValue::from(code as i32));
        if let Some(text) = text
            && let Ok(value) = http::HeaderValue::from_str(&text.replace(' ', "%20"))
        {
            headers.insert("grpc-message", value);
        }
    }
    response
}

/// Waits for background tasks that stop on their own once `closing` is cancelled, for at most
/// `deadline`; those still running then are aborted (and logged).
pub async fn join_background(
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
    deadline: Duration,
) {
    let until = tokio::time::Instant::now() + deadline;
    for (name, mut task) in tasks {
        if tokio::time::timeout_at(until, &mut task).await.is_err() {
            tracing::warn!(
                task = name,
                "background task did not stop in time; aborting it"
            );
            task.abort();
        }
    }
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: a signal that arrives while the service is still starting is then
/// a graceful stop too, never the default action that kills the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let installed = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        async move {
            match installed {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (interrupt, terminate) => {
                    let error = interrupt.err().or(terminate.err());
                    tracing::warn!(?error, "cannot listen for SIGINT and SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What a service binary's `main` returns: on failure (a configuration error, a wrong key, an
/// unreachable database), the one-line reason with its causes on standard error and exit status
/// 1, never a backtrace, whatever `RUST_BACKTRACE` says.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The time the client gave the call (its `grpc-timeout` header), if any: database work on its
/// behalf is bounded by it.
pub fn time_left<T>(request: &tonic::Request<T>) -> Option<Duration> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}
