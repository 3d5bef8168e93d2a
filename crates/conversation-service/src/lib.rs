//! conversation-service: conversations of type DIRECT, GROUP and CHANNEL, their participants
//! and roles, and the permission checks other services ask for.
//!
//! `domain` holds the rules, `store` the SeaORM persistence and migrations, `app` the use cases,
//! and `grpc` the thin protocol adapter. [`run`] wires them to a listener.

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use messaging_platform::Authenticator;
use messaging_proto::conversation::v1::conversation_service_server::ConversationServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::app::{Conversations, Policy};
use crate::config::Settings;

/// The fully qualified gRPC service name, as health checks report it.
pub const SERVICE_NAME: &str = "messaging.conversation.v1.ConversationService";

/// Connects to the database, migrates it, and serves on `listener` until `shutdown`; a
/// background task purges conversations whose undelete window has passed.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let authenticator = Arc::new(Authenticator::from_settings(&settings.auth, settings.mode)?);
    let service = &settings.conversation_service;
    let db = store::connect(&service.database).await?;
    let (bus, relay) = service.events.start(&db, &[], None).await?;
    let app = Conversations::new(
        db,
        Policy {
            undelete_window: service.undelete_window,
            max_participants: service.max_participants,
        },
        bus,
    );
    let purger = tokio::spawn(purge_periodically(app.clone(), service.purge_interval));
    let grpc = ConversationServiceServer::with_interceptor(
        grpc::ConversationGrpc::new(app, service.events.clone()),
        authenticator.interceptor(),
    );
    tracing::info!(address = %listener.local_addr()?, "conversation-service listening");
    let result =
        messaging_platform::server::serve(listener, Routes::new(grpc), &[SERVICE_NAME], shutdown)
            .await;
    purger.abort();
    relay.abort();
    result
}

async fn purge_periodically(app: Conversations, interval: std::time::Duration) {
    let mut ticker = tokio::time::interval(interval.max(std::time::Duration::from_secs(1)));
    loop {
        ticker.tick().await;
        match app.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged deleted conversations"),
            Err(error) => tracing::warn!(%error, "purging deleted conversations failed"),
        }
    }
}
