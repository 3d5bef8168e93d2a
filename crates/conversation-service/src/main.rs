//! The conversation-service binary: `conversation-service [--config FILE]`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config_file = messaging_platform::config::file_argument("conversation-service")?;
    let settings: conversation_service::config::Settings =
        messaging_platform::config::load(config_file.as_deref())?;
    messaging_platform::telemetry::init(&settings.telemetry);
    let listener = tokio::net::TcpListener::bind(settings.conversation_service.listen).await?;
    conversation_service::run(
        settings,
        listener,
        messaging_platform::server::shutdown_signal(),
    )
    .await
}
