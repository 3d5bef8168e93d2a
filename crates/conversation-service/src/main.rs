//! The conversation-service binary: `conversation-service [--config FILE]`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    messaging_platform::server::exit_code(serve().await)
}

async fn serve() -> anyhow::Result<()> {
    // First, so that a signal during start-up stops the service gracefully too.
    let shutdown = messaging_platform::server::shutdown_signal();
    let config_file = messaging_platform::config::file_argument("conversation-service")?;
    let settings: conversation_service::config::Settings =
        messaging_platform::config::load(config_file.as_deref())?;
    messaging_platform::telemetry::init(&settings.telemetry);
    let address = settings.conversation_service.listen;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {error}"))?;
    conversation_service::run(settings, listener, shutdown).await
}
