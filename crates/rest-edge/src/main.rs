//! The rest-edge binary: `rest-edge [--config FILE]` (the `[rest_edge]` section).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    messaging_platform::server::exit_code(serve().await)
}

async fn serve() -> anyhow::Result<()> {
    // First, so that a signal during start-up stops the edge gracefully too.
    let shutdown = messaging_platform::server::shutdown_signal();
    let config_file = messaging_platform::config::file_argument("rest-edge")?;
    let settings: rest_edge::Settings = messaging_platform::config::load(config_file.as_deref())?;
    messaging_platform::telemetry::init(&settings.telemetry);
    let address = settings.rest_edge.listen;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {error}"))?;
    rest_edge::run(settings.rest_edge, listener, shutdown).await
}
