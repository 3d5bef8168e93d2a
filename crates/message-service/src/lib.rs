//! message-service: messages, threads, reactions, read state, search, real-time streams and
//! compliance. It owns its own schema and asks conversation-service, over gRPC, whether a
//! caller may act in a conversation.

pub mod admin;
pub mod app;
pub mod blobs;
pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod jobs;
pub mod limits;
pub mod peer;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use messaging_platform::Authenticator;
use messaging_proto::message::v1::compliance_service_server::ComplianceServiceServer;
use messaging_proto::message::v1::message_service_server::MessageServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::app::{Messages, Policy};
use crate::config::Settings;
use crate::peer::{ConversationGate, ServiceCredentials};
use messaging_platform::auth::TokenIssuer;

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
    let service = &settings.message_service;
    let db = store::connect(&service.database).await?;
    let credentials = match (&service.service_token, &settings.auth.hs256_secret) {
        (Some(token), _) => ServiceCredentials::Token(token.clone()),
        (None, Some(_)) => ServiceCredentials::Minted(TokenIssuer::from_settings(&settings.auth)?),
        (None, None) => anyhow::bail!(
            "message_service.service_token is required when auth.hs256_secret is not set"
        ),
    };
    let gate = ConversationGate::new(
        &service.conversation_service_url,
        credentials,
        service.permission_cache_ttl,
        service.conversation_service_timeout,
    )?;
    let keys = store::keys::Keyring::open(&db, &service.encryption, settings.mode).await?;
    if keys.is_enabled() {
        tracing::info!("message content is encrypted at rest");
    } else {
        tracing::warn!("encryption at rest is off: message content is stored in plaintext");
    }
    let (bus, relay) = service
        .events
        .start(&db, events::FOREIGN_KINDS, Some(Arc::new(keys.clone())))
        .await?;
    let follower = tokio::spawn(jobs::membership::follow(
        db.clone(),
        gate.clone(),
        bus.clone(),
        keys.clone(),
    ));
    let drain = messaging_platform::server::Drain {
        closing: bus.closing().clone(),
        deadline: service.drain_timeout,
        database: Some(db.clone()),
    };
    let limits = limits::Limits::new(service.limits.clone());
    let live = grpc::streams::Live::new(
        db.clone(),
        bus.clone(),
        gate.clone(),
        limits.clone(),
        grpc::streams::StreamSettings {
            heartbeat_interval: service.events.heartbeat_interval,
            buffer: service.events.stream_buffer,
            typing_interval: service.typing_interval,
        },
    );
    let store = store::SqlStore::new(db, keys, bus).with_writes(service.writes.clone());
    let files = app::Files {
        blobs: blobs::Blobs::from_settings(&service.attachments.store)?,
        scanner: blobs::scan::Scanner::new(service.attachments.scanner.clone()),
        settings: Arc::new(service.attachments.clone()),
        sweeps: store.sweeps(),
    };
    let directory: Arc<dyn peer::Directory> = Arc::new(gate.clone());
    let app = Messages::new(
        Arc::new(store),
        Arc::new(gate),
        Policy {
            max_body_bytes: service.max_body_bytes,
            edit_window: service.edit_window,
        },
        limits,
    )
    .with_files(files);
    let sweeper = tokio::spawn(jobs::attachments::sweep(
        app.clone(),
        service.attachments.sweep_interval,
        drain.closing.clone(),
    ));
    let compliance = app::Compliance::new(&app, directory, service.compliance.clone());
    let compliance_job = tokio::spawn(jobs::compliance::run(
        compliance.clone(),
        service.compliance.interval,
        drain.closing.clone(),
    ));
    let routes = Routes::new(MessageServiceServer::with_interceptor(
        grpc::MessageGrpc::new(app, live),
        authenticator.interceptor(),
    ))
    .add_service(ComplianceServiceServer::with_interceptor(
        grpc::ComplianceGrpc::new(compliance),
        authenticator.interceptor(),
    ));
    tracing::info!(address = %listener.local_addr()?, "message-service listening");
    let deadline = drain.deadline;
    let result =
        messaging_platform::server::serve(listener, routes, &SERVICE_NAMES, shutdown, drain).await;
    messaging_platform::server::join_background(
        vec![
            ("event relay", relay),
            ("event follower", follower),
            ("attachment sweeper", sweeper),
            ("compliance job", compliance_job),
        ],
        deadline,
    )
    .await;
    result
}
