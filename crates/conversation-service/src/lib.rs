//! conversation-service: conversations of type DIRECT, GROUP and CHANNEL, their participants
//! and roles, and the permission checks other services ask for.
//!
//! `domain` holds the rules, `store` the SeaORM persistence and migrations, `app` the use cases,
//! and `grpc` the thin protocol adapter. [`run`] wires them to a listener.

pub mod app;
pub mod config;
pub mod domain;
pub mod events;
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
    let drain = messaging_platform::server::Drain {
        closing: bus.closing().clone(),
        deadline: service.drain_timeout,
        database: Some(db.clone()),
    };
    let app = Conversations::new(
        Arc::new(store::SqlStore::new(db.clone())),
        Policy {
            undelete_window: service.undelete_window,
            max_participants: service.max_participants,
        },
        bus,
    );
    let purger = tokio::spawn(purge_periodically(
        app.clone(),
        service.purge_interval,
        drain.closing.clone(),
    ));
    let grpc = ConversationServiceServer::with_interceptor(
        grpc::ConversationGrpc::new(app, service.events.clone(), db.clone()),
        authenticator.interceptor(),
    );
    tracing::info!(address = %listener.local_addr()?, "conversation-service listening");
    let deadline = drain.deadline;
    let result = messaging_platform::server::serve(
        listener,
        Routes::new(grpc),
        &[SERVICE_NAME],
        shutdown,
        drain,
    )
    .await;
    messaging_platform::server::join_background(
        vec![("purger", purger), ("event relay", relay)],
        deadline,
    )
    .await;
    result
}

/// Purges now and then until `closing`; a purge in progress completes.
async fn purge_periodically(
    app: Conversations,
    interval: std::time::Duration,
    closing: tokio_util::sync::CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval.max(std::time::Duration::from_secs(1)));
    loop {
        tokio::select! {
            () = closing.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match app.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged deleted conversations"),
            Err(error) => tracing::warn!(%error, "purging deleted conversations failed"),
        }
    }
}
