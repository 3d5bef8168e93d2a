//! message-service: messages, threads, reactions, read state, search, real-time streams and
//! compliance. It owns its own schema and asks conversation-service, over gRPC, whether a
//! caller may act in a conversation.

pub mod config;
pub mod grpc;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use messaging_platform::Authenticator;
use messaging_proto::message::v1::compliance_service_server::ComplianceServiceServer;
use messaging_proto::message::v1::message_service_server::MessageServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::config::Settings;

/// The fully qualified gRPC service names, as health checks report them.
pub const SERVICE_NAMES: [&str; 2] = [
    "messaging.message.v1.MessageService",
    "messaging.message.v1.ComplianceService",
];

/// Connects to the database, migrates it, and serves on `listener` until `shutdown`.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let authenticator = Arc::new(Authenticator::from_settings(&settings.auth, settings.mode)?);
    let _db = store::connect(&settings.message_service.database).await?;
    let routes = Routes::new(MessageServiceServer::with_interceptor(
        grpc::MessageGrpc,
        authenticator.interceptor(),
    ))
    .add_service(ComplianceServiceServer::with_interceptor(
        grpc::ComplianceGrpc,
        authenticator.interceptor(),
    ));
    tracing::info!(address = %listener.local_addr()?, "message-service listening");
    messaging_platform::server::serve(listener, routes, &SERVICE_NAMES, shutdown).await
}
