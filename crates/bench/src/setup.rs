//! Starts both services on `127.0.0.1`: conversation-service in this process, message-service
//! as its release binary in a process of its own; on PostgreSQL (a fresh schema per service,
//! dropped at the end) with NATS when both are reachable, else on SQLite files in a temporary
//! folder. Hands out authenticated clients.

use std::time::{Duration, Instant};

use messaging_platform::auth::{AuthSettings, TokenIssuer};
use messaging_platform::config::{DatabaseSettings, LogFormat, Mode, Secret, TelemetrySettings};
use messaging_proto::conversation::v1 as conversation;
use messaging_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use messaging_proto::message::v1::message_service_client::MessageServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The tenant every scenario runs in.
pub const TENANT: &str = "bench";

pub use messaging_platform::auth::Bearer;

/// A message-service process: the release binary built next to this one, as deployed.
pub struct ServiceProcess {
    /// The process (killed when dropped).
    pub child: tokio::process::Child,
    /// Its pid.
    pub pid: u32,
    /// A channel to it.
    pub channel: Channel,
    /// Its URL.
    pub url: String,
}

/// Starts a [`ServiceProcess`] with `settings` (everything the bench sets, as environment)
/// plus `extra` environment.
pub async fn spawn_message_service(
    settings: &message_service::admin::Settings,
    extra: &[(&str, String)],
) -> anyhow::Result<ServiceProcess> {
    let binary = std::env::current_exe()?.with_file_name("message-service");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: `cargo build --release -p message-service` (make bench does)",
        binary.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let service = &settings.message_service;
    let mut command = tokio::process::Command::new(&binary);
    command
        .kill_on_drop(true)
        .env(
            "MESSAGING__TELEMETRY__LOG_FILTER",
            std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "error".to_owned()),
        )
        .env(
            "MESSAGING__MESSAGE_SERVICE__LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env(
            "MESSAGING__MESSAGE_SERVICE__DATABASE__URL",
            service.database.url.expose(),
        )
        .env(
            "MESSAGING__MESSAGE_SERVICE__CONVERSATION_SERVICE_URL",
            &service.conversation_service_url,
        )
        .env(
            "MESSAGING__MESSAGE_SERVICE__ENCRYPTION__MASTER_KEY",
            service
                .encryption
                .master_key
                .as_ref()
                .map(|key| key.expose().to_owned())
                .unwrap_or_default(),
        );
    if let Some(schema) = &service.database.schema {
        command.env("MESSAGING__MESSAGE_SERVICE__DATABASE__SCHEMA", schema);
    }
    if let Some(secret) = &settings.auth.hs256_secret {
        command.env("MESSAGING__AUTH__HS256_SECRET", secret.expose());
    }
    command.env(
        "MESSAGING__MESSAGE_SERVICE__ATTACHMENTS__STORE__PATH",
        &service.attachments.store.path,
    );
    command.env(
        "MESSAGING__MESSAGE_SERVICE__ATTACHMENTS__MAX_SIZE_BYTES",
        service.attachments.max_size_bytes.to_string(),
    );
    let nats = &service.events.nats;
    if !nats.url.is_empty() {
        for (name, value) in [
            ("URL", &nats.url),
            ("STREAM", &nats.stream),
            ("SUBJECT_PREFIX", &nats.subject_prefix),
        ] {
            command.env(
                format!("MESSAGING__MESSAGE_SERVICE__EVENTS__NATS__{name}"),
                value,
            );
        }
    }
    // Unlimited, as the bench measures throughput, which per-user quotas would cap.
    let limits = &service.limits;
    for (name, value) in [
        ("STREAMS_PER_USER", limits.streams_per_user.to_string()),
        ("STREAMS_PER_TENANT", limits.streams_per_tenant.to_string()),
        (
            "SEARCHES_PER_TENANT",
            limits.searches_per_tenant.to_string(),
        ),
        (
            "WRITES_PER_USER__PER_SECOND",
            limits.writes_per_user.per_second.to_string(),
        ),
        (
            "WRITES_PER_USER__BURST",
            limits.writes_per_user.burst.to_string(),
        ),
        (
            "WRITES_PER_TENANT__PER_SECOND",
            limits.writes_per_tenant.per_second.to_string(),
        ),
        (
            "WRITES_PER_TENANT__BURST",
            limits.writes_per_tenant.burst.to_string(),
        ),
    ] {
        command.env(format!("MESSAGING__MESSAGE_SERVICE__LIMITS__{name}"), value);
    }
    for (name, value) in [
        ("WRITERS", service.writes.writers.to_string()),
        ("MAX_BATCH", service.writes.max_batch.to_string()),
    ] {
        command.env(format!("MESSAGING__MESSAGE_SERVICE__WRITES__{name}"), value);
    }
    for (name, value) in extra {
        command.env(name, value);
    }
    let child = command.spawn()?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let channel = loop {
        if let Ok(channel) = Channel::from_shared(url.clone())?.connect().await {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            if health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok()
            {
                break channel;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "message-service did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(ServiceProcess {
        child,
        pid,
        channel,
        url,
    })
}

/// A running deployment.
pub struct Deployment {
    /// What it runs on, for the report.
    pub description: String,
    /// A channel to message-service.
    pub message_channel: Channel,
    /// message-service's process.
    message_process: ServiceProcess,
    conversation_channel: Channel,
    message_database: DatabaseSettings,
    conversation_database: DatabaseSettings,
    issuer: TokenIssuer,
    /// The deployment's settings, for a second message-service process.
    pub message_settings: message_service::admin::Settings,
    shutdown: Vec<tokio::sync::oneshot::Sender<()>>,
    schemas: Vec<String>,
    postgres_url: Option<String>,
    _folder: tempfile::TempDir,
}

async fn reachable_postgres() -> Option<String> {
    let url = std::env::var("MESSAGING_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let connected = tokio::time::timeout(
        Duration::from_secs(3),
        sea_orm::Database::connect(url.clone()),
    )
    .await;
    matches!(connected, Ok(Ok(_))).then_some(url)
}

async fn reachable_nats() -> Option<String> {
    let url = std::env::var("MESSAGING_BENCH_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let connected =
        tokio::time::timeout(Duration::from_secs(3), async_nats::connect(url.clone())).await;
    matches!(connected, Ok(Ok(_))).then_some(url)
}

async fn serve<F, Fut>(
    run: F,
) -> anyhow::Result<(String, Channel, tokio::sync::oneshot::Sender<()>)>
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(listener, receiver));
    let channel = Channel::from_shared(url.clone())?.connect().await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    tokio::select! {
        result = task => anyhow::bail!("service exited during start-up: {result:?}"),
        response = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }) => { response?; }
    }
    Ok((url, channel, sender))
}

impl Deployment {
    /// Starts both services.
    pub async fn start(
        embedded: bool,
        writes: message_service::admin::WriteSettings,
    ) -> anyhow::Result<Self> {
        let folder = tempfile::tempdir()?;
        let postgres = if embedded {
            None
        } else {
            reachable_postgres().await
        };
        let nats = if postgres.is_some() {
            reachable_nats().await
        } else {
            None
        };
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let database = |name: &str| DatabaseSettings {
            url: Secret::new(match &postgres {
                Some(url) => url.clone(),
                None => format!(
                    "sqlite://{}",
                    folder.path().join(format!("{name}.db")).display()
                ),
            }),
            schema: postgres.as_ref().map(|_| format!("bench_{name}_{unique}")),
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(3),
            sqlite_synchronous: Default::default(),
        };
        let description = match (&postgres, &nats) {
            (Some(_), Some(_)) => "PostgreSQL and NATS JetStream (production shape)".to_owned(),
            (Some(_), None) => "PostgreSQL (NATS unreachable)".to_owned(),
            _ => "embedded default: SQLite files, in-process bus".to_owned(),
        };
        let secret = format!("bench-secret-{}", uuid::Uuid::new_v4());
        let auth = AuthSettings {
            hs256_secret: Some(Secret::new(secret)),
            ..AuthSettings::default()
        };
        let telemetry = TelemetrySettings {
            log_filter: "error".to_owned(),
            log_format: LogFormat::Text,
        };
        let conversation_database = database("conversation");
        let message_database = database("message");

        let conversation_settings = conversation_service::config::Settings {
            mode: Mode::Production,
            auth: auth.clone(),
            telemetry: telemetry.clone(),
            conversation_service: conversation_service::config::ServiceSettings {
                database: conversation_database.clone(),
                ..Default::default()
            },
        };
        let (conversation_url, conversation_channel, stop_conversations) =
            serve(move |listener, shutdown| {
                conversation_service::run(conversation_settings, listener, async move {
                    let _ = shutdown.await;
                })
            })
            .await?;
        let mut message_settings = message_service::admin::Settings {
            mode: Mode::Production,
            auth: auth.clone(),
            telemetry,
            message_service: message_service::admin::ServiceSettings {
                database: message_database.clone(),
                conversation_service_url: conversation_url,
                // Encryption at rest on, as in production, with a key of this run.
                encryption: message_service::admin::EncryptionSettings {
                    enabled: Some(true),
                    master_key: Some(messaging_platform::config::Secret::new(run_master_key()?)),
                    master_key_file: None,
                },
                // The bench measures throughput, which the per-user write rate would cap.
                limits: message_service::admin::LimitSettings::unlimited(),
                writes,
                attachments: message_service::admin::AttachmentSettings {
                    store: message_service::admin::StoreSettings {
                        path: folder.path().join("attachments"),
                        ..Default::default()
                    },
                    // The attachments scenario uploads a 1 GiB file.
                    max_size_bytes: 2 << 30,
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        if let Some(url) = &nats {
            message_settings.message_service.events.nats = message_service::admin::NatsSettings {
                url: url.clone(),
                stream: format!("BENCH_{unique}"),
                subject_prefix: format!("bench_{unique}"),
                ..Default::default()
            };
        }
        // message-service runs as deployed: the release binary, in its own process.
        let message_process = spawn_message_service(&message_settings, &[]).await?;
        Ok(Self {
            description,
            message_channel: message_process.channel.clone(),
            message_process,
            conversation_channel,
            message_database,
            conversation_database,
            issuer: TokenIssuer::from_settings(&auth)?,
            message_settings,
            shutdown: vec![stop_conversations],
            schemas: postgres
                .as_ref()
                .map(|_| {
                    vec![
                        format!("bench_conversation_{unique}"),
                        format!("bench_message_{unique}"),
                    ]
                })
                .unwrap_or_default(),
            postgres_url: postgres,
            _folder: folder,
        })
    }

    fn token(&self, user: &str) -> Bearer {
        let token = self
            .issuer
            .issue(TENANT, user, &[], Duration::from_secs(24 * 3600))
            .unwrap_or_default();
        Bearer::new(&token).expect("a minted token is ASCII")
    }

    /// A MessageService client acting as `user`.
    pub fn message_client(
        &self,
        user: &str,
    ) -> MessageServiceClient<InterceptedService<Channel, Bearer>> {
        MessageServiceClient::with_interceptor(self.message_channel.clone(), self.token(user))
    }

    /// Creates `count` groups owned by `owner` with `members`; returns their ids.
    pub async fn create_groups(
        &self,
        owner: &str,
        members: &[&str],
        count: usize,
    ) -> anyhow::Result<Vec<String>> {
        let mut client = ConversationServiceClient::with_interceptor(
            self.conversation_channel.clone(),
            self.token(owner),
        );
        let mut ids = Vec::with_capacity(count);
        for index in 0..count {
            let response = client
                .create_conversation(conversation::CreateConversationRequest {
                    r#type: conversation::ConversationType::Group.into(),
                    title: format!("bench {index}"),
                    participants: members
                        .iter()
                        .map(|user| conversation::ParticipantSpec {
                            user_id: (*user).to_owned(),
                            role: 0,
                        })
                        .collect(),
                    ..Default::default()
                })
                .await?;
            ids.push(
                response
                    .into_inner()
                    .conversation
                    .map(|c| c.conversation_id)
                    .unwrap_or_default(),
            );
        }
        Ok(ids)
    }

    /// Sends one message as `user` into each of `ids`, retrying each for up to a minute: until
    /// message-service has taken in a new conversation's participants from the event flow, its
    /// calls answer UNAVAILABLE, which is the warm-up's, not the measured phase's.
    pub async fn warm_up(&self, user: &str, ids: &[String]) -> anyhow::Result<()> {
        let mut client = self.message_client(user);
        for id in ids {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let sent = client
                    .send_message(messaging_proto::message::v1::SendMessageRequest {
                        conversation_id: id.clone(),
                        content: Some(
                            messaging_proto::message::v1::send_message_request::Content::Text(
                                "warm-up".to_owned(),
                            ),
                        ),
                        ..Default::default()
                    })
                    .await;
                match sent {
                    Ok(_) => break,
                    Err(status) if Instant::now() > deadline => {
                        anyhow::bail!("warm-up send into {id} still fails: {status}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(())
    }

    /// Creates one group owned by `owner` with `members` (any number, added 100 per call).
    pub async fn create_large_group(
        &self,
        owner: &str,
        members: &[String],
    ) -> anyhow::Result<String> {
        let mut client = ConversationServiceClient::with_interceptor(
            self.conversation_channel.clone(),
            self.token(owner),
        );
        let id = self
            .create_groups(owner, &[], 1)
            .await?
            .pop()
            .unwrap_or_default();
        for chunk in members.chunks(100) {
            client
                .add_participants(conversation::AddParticipantsRequest {
                    conversation_id: id.clone(),
                    participants: chunk
                        .iter()
                        .map(|user| conversation::ParticipantSpec {
                            user_id: user.clone(),
                            role: conversation::Role::Member.into(),
                        })
                        .collect(),
                })
                .await?;
        }
        Ok(id)
    }

    /// Refreshes the planner's statistics after seeding, as autovacuum would within a minute in
    /// a running deployment: freshly filled tables without statistics get nested-loop plans
    /// that measure the seeding, not the service.
    pub async fn analyze(&self) -> anyhow::Result<()> {
        use sea_orm::ConnectionTrait;
        for (settings, schema) in [
            (&self.conversation_database, "conversation"),
            (&self.message_database, "message"),
        ] {
            let connection = messaging_platform::db::connect(settings, schema).await?;
            connection.execute_unprepared("ANALYZE").await?;
            connection.close().await?;
        }
        Ok(())
    }

    /// message-service's database and its keys, for seeding.
    pub async fn message_store(
        &self,
    ) -> anyhow::Result<(sea_orm::DatabaseConnection, message_service::admin::Keyring)> {
        let db = messaging_platform::db::connect(&self.message_database, "message").await?;
        let keys = message_service::admin::Keyring::open(
            &db,
            &self.message_settings.message_service.encryption,
            Mode::Production,
        )
        .await?;
        Ok((db, keys))
    }

    /// `count` connections to message-service, one per simulated client.
    pub async fn message_channels(&self, count: usize) -> anyhow::Result<Vec<Channel>> {
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count {
            channels.push(
                Channel::from_shared(self.message_process.url.clone())?
                    .connect()
                    .await?,
            );
        }
        Ok(channels)
    }

    /// Starts another message-service process on this deployment's databases.
    pub async fn spawn_message_service(
        &self,
        extra: &[(&str, String)],
    ) -> anyhow::Result<ServiceProcess> {
        spawn_message_service(&self.message_settings, extra).await
    }

    /// A MessageService client acting as `user` on another channel.
    pub fn message_client_on(
        &self,
        channel: Channel,
        user: &str,
    ) -> MessageServiceClient<InterceptedService<Channel, Bearer>> {
        MessageServiceClient::with_interceptor(channel, self.token(user))
    }

    /// A pool configured like message-service's, on its database, for the database floor.
    pub async fn floor_pool(&self) -> anyhow::Result<sea_orm::DatabaseConnection> {
        messaging_platform::db::connect(&self.message_database, "message").await
    }

    /// Stops both services and drops the PostgreSQL schemas.
    pub async fn stop(self) {
        for sender in self.shutdown {
            let _ = sender.send(());
        }
        if let Some(url) = &self.postgres_url
            && let Ok(connection) = sea_orm::Database::connect(url.clone()).await
        {
            use sea_orm::ConnectionTrait;
            for schema in &self.schemas {
                let _ = connection
                    .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await;
            }
        }
    }
}

/// A fresh master key (base64) for one bench run.
fn run_master_key() -> anyhow::Result<String> {
    use base64::Engine as _;
    let key = messaging_platform::crypto::generate_key()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key))
}
