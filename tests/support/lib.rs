//! Test support: starts the real services on `127.0.0.1:0` against a real database (a fresh
//! SQLite file, or a fresh PostgreSQL schema) and hands out authenticated clients.
//!
//! PostgreSQL comes from `MESSAGING_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the PostgreSQL
//! variants skip with a message, except under `CI=true`, where they fail.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use messaging_platform::auth::{AuthSettings, TokenIssuer};
use messaging_platform::config::{DatabaseSettings, Mode, Secret, TelemetrySettings};
use messaging_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The HS256 secret of every test deployment (production mode, so the real checks apply).
pub const TEST_SECRET: &str = "test-secret-that-is-long-enough-for-production-mode";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A fresh schema on the test PostgreSQL server.
    Postgres,
}

/// Runs each listed `async fn name(backend: Backend)` once per backend, as
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::postgres_or_skip().await {
                        super::$name($crate::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

fn postgres_url() -> String {
    std::env::var("MESSAGING_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Whether PostgreSQL tests should run: true when reachable; when not, false outside CI and a
/// panic under `CI=true`.
pub async fn postgres_or_skip() -> bool {
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        sea_orm::Database::connect(postgres_url()),
    )
    .await
    .map(|result| result.is_ok())
    .unwrap_or(false);
    if !reachable {
        skip_or_fail(&format!("PostgreSQL at {} is unreachable", postgres_url()));
    }
    reachable
}

/// A test's server is missing: outside CI the test says so and skips; under `CI=true` it
/// fails, since CI starts every server the suite needs (`.ci/services`).
fn skip_or_fail(problem: &str) {
    assert!(
        std::env::var("CI").map_or(true, |value| value != "true"),
        "{problem} and CI=true: the tests that need it must run"
    );
    eprintln!("skipping: {problem} (set CI=true to fail instead)");
}

/// A database for one test, removed when dropped.
pub struct TestDatabase {
    /// Settings pointing at it.
    pub settings: DatabaseSettings,
    /// A folder for the deployment's attachments (the local object store).
    pub files: tempfile::TempDir,
    _folder: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestDatabase {
    /// A fresh database for `backend`.
    pub fn new(backend: Backend) -> Self {
        let connect_timeout = Duration::from_secs(10);
        match backend {
            Backend::Sqlite => {
                let folder = tempfile::tempdir().expect("temporary folder");
                let path = folder.path().join("test.db");
                Self {
                    settings: DatabaseSettings {
                        url: Secret::new(format!("sqlite://{}", path.display())),
                        schema: None,
                        max_connections: 1,
                        connect_timeout,
                        acquire_timeout: Duration::from_secs(3),
                        sqlite_synchronous: Default::default(),
                    },
                    files: tempfile::tempdir().expect("temporary folder"),
                    _folder: Some(folder),
                    schema: None,
                }
            }
            Backend::Postgres => {
                let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
                Self {
                    settings: DatabaseSettings {
                        url: Secret::new(postgres_url()),
                        schema: Some(schema.clone()),
                        max_connections: 8,
                        connect_timeout,
                        acquire_timeout: Duration::from_secs(3),
                        sqlite_synchronous: Default::default(),
                    },
                    files: tempfile::tempdir().expect("temporary folder"),
                    _folder: None,
                    schema: Some(schema),
                }
            }
        }
    }
}

impl TestDatabase {
    /// Every byte the database holds at rest: the SQLite files (database, journal, WAL), or a
    /// `pg_dump` of the PostgreSQL schema.
    pub fn at_rest(&self) -> Vec<u8> {
        match &self.schema {
            Some(schema) => {
                let output = std::process::Command::new("pg_dump")
                    .arg("--schema")
                    .arg(schema)
                    .arg(self.settings.url.expose())
                    .output()
                    .expect("pg_dump runs");
                assert!(
                    output.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                output.stdout
            }
            None => {
                let folder = self._folder.as_ref().expect("SQLite folder").path();
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(folder).expect("folder") {
                    bytes.extend(std::fs::read(entry.expect("entry").path()).expect("file"));
                }
                bytes
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own to clean up.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                use sea_orm::ConnectionTrait;
                let connection = sea_orm::Database::connect(postgres_url()).await.ok()?;
                connection
                    .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .ok()?;
                connection.close().await.ok()
            })
        })
        .join();
    }
}

/// The auth settings every test server uses.
pub fn auth_settings() -> AuthSettings {
    AuthSettings {
        hs256_secret: Some(Secret::new(TEST_SECRET)),
        ..AuthSettings::default()
    }
}

/// Signs test tokens.
pub fn issuer() -> TokenIssuer {
    TokenIssuer::from_settings(&auth_settings()).expect("issuer")
}

/// A running server; stopped when dropped.
pub struct RunningServer {
    /// Where it listens.
    pub address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Binds `127.0.0.1:0`, starts `run` on it and waits (with a deadline) until health
    /// answers SERVING.
    pub async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (shutdown, receiver) = tokio::sync::oneshot::channel();
        let mut task = tokio::spawn(run(listener, receiver));
        // The listener is bound already, so a health check simply waits until the server
        // serves; it fails fast if the server exits instead.
        let url = format!("http://{address}");
        let check = async move {
            let channel = Channel::from_shared(url)
                .expect("url")
                .connect()
                .await
                .expect("connect");
            let request = tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            };
            HealthClient::new(channel)
                .check(request)
                .await
                .expect("health check")
                .into_inner()
        };
        tokio::select! {
            result = &mut task => panic!("server exited during start-up: {result:?}"),
            response = tokio::time::timeout(Duration::from_secs(60), check) => {
                let response = response.expect("server not serving within 60 s");
                assert_eq!(response.status, ServingStatus::Serving as i32);
            }
        }
        Self {
            address,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// `http://address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A plain channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await?
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Adds fixed metadata (a bearer token, service headers) to every call.
#[derive(Clone)]
pub struct Headers(Vec<(&'static str, AsciiMetadataValue)>);

impl Headers {
    /// `authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Self {
        Self(vec![(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        )])
    }

    /// No metadata at all.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Adds one more header.
    pub fn with(mut self, name: &'static str, value: &str) -> Self {
        self.0.push((name, value.parse().expect("ascii header")));
        self
    }

    fn apply(&self, metadata: &mut MetadataMap) {
        for (name, value) in &self.0 {
            metadata.insert(*name, value.clone());
        }
    }
}

impl Interceptor for Headers {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        self.apply(request.metadata_mut());
        Ok(request)
    }
}

/// A ConversationService client that sends `headers`.
pub type ConversationClient = ConversationServiceClient<InterceptedService<Channel, Headers>>;

/// A conversation-service with its database.
pub struct ConversationHarness {
    /// The server.
    pub server: RunningServer,
    /// Its database (kept alive for the test).
    pub database: TestDatabase,
    channel: Channel,
}

/// conversation-service settings for tests, on `database`.
pub fn conversation_settings(database: &TestDatabase) -> conversation_service::config::Settings {
    conversation_service::config::Settings {
        mode: Mode::Production,
        auth: auth_settings(),
        telemetry: TelemetrySettings::default(),
        conversation_service: conversation_service::config::ServiceSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            database: database.settings.clone(),
            ..Default::default()
        },
    }
}

impl ConversationHarness {
    /// Starts conversation-service on a fresh database of `backend`.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Same, with settings adjusted by `adjust`.
    pub async fn start_with(
        backend: Backend,
        adjust: impl FnOnce(&mut conversation_service::config::Settings),
    ) -> Self {
        let database = TestDatabase::new(backend);
        let mut settings = conversation_settings(&database);
        adjust(&mut settings);
        let server = RunningServer::start(move |listener, shutdown| {
            conversation_service::run(settings, listener, async move {
                let _ = shutdown.await;
            })
        })
        .await;
        let channel = server.channel().await;
        Self {
            server,
            database,
            channel,
        }
    }

    /// A client acting as `user` of `tenant`.
    pub fn client(&self, tenant: &str, user: &str) -> ConversationClient {
        self.client_with_roles(tenant, user, &[])
    }

    /// A client acting as `user` of `tenant` with token roles.
    pub fn client_with_roles(
        &self,
        tenant: &str,
        user: &str,
        roles: &[&str],
    ) -> ConversationClient {
        let token = issuer()
            .issue(tenant, user, roles, Duration::from_secs(600))
            .expect("token");
        self.client_with_headers(Headers::bearer(&token))
    }

    /// A client sending exactly `headers`.
    pub fn client_with_headers(&self, headers: Headers) -> ConversationClient {
        ConversationServiceClient::with_interceptor(self.channel.clone(), headers)
    }
}

/// The field names of a status's `BadRequest` field violations.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// A MessageService client that sends `headers`.
pub type MessageClient = messaging_proto::message::v1::message_service_client::MessageServiceClient<
    InterceptedService<Channel, Headers>,
>;

/// message-service settings for tests: on `database`, asking conversation-service at `url`.
pub fn message_settings(database: &TestDatabase, url: &str) -> message_service::config::Settings {
    message_service::config::Settings {
        mode: Mode::Production,
        auth: auth_settings(),
        telemetry: TelemetrySettings::default(),
        message_service: message_service::config::ServiceSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            database: database.settings.clone(),
            conversation_service_url: url.to_owned(),
            encryption: test_encryption(),
            attachments: message_service::blobs::AttachmentSettings {
                store: message_service::blobs::StoreSettings {
                    path: database.files.path().to_path_buf(),
                    ..Default::default()
                },
                ..Default::default()
            },
            // Tests of other behaviour are not throttled; tests of the limits set their own.
            limits: message_service::limits::LimitSettings::unlimited(),
            ..Default::default()
        },
    }
}

/// The master key every test deployment uses (32 bytes, base64).
pub const TEST_MASTER_KEY: &str = "bWVzc2FnaW5nLXRlc3RzLW1hc3Rlci1rZXktMzJieXQ=";

/// Encryption at rest on, with [`TEST_MASTER_KEY`]: the whole suite runs encrypted.
pub fn test_encryption() -> message_service::store::keys::EncryptionSettings {
    message_service::store::keys::EncryptionSettings {
        enabled: Some(true),
        master_key: Some(Secret::new(TEST_MASTER_KEY)),
        master_key_file: None,
    }
}

/// Starts message-service with `settings`.
pub async fn start_message_service(settings: message_service::config::Settings) -> RunningServer {
    RunningServer::start(move |listener, shutdown| {
        message_service::run(settings, listener, async move {
            let _ = shutdown.await;
        })
    })
    .await
}

/// Both services, each on its own database of the same backend.
pub struct MessagingHarness {
    /// conversation-service.
    pub conversations: ConversationHarness,
    /// message-service.
    pub messages: RunningServer,
    /// message-service's database.
    pub message_database: TestDatabase,
    channel: Channel,
}

impl MessagingHarness {
    /// Starts both on `backend`.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Same, with message-service's database settings adjusted by `adjust` (to reach it
    /// through a proxy, for example).
    pub async fn start_with_database(
        backend: Backend,
        adjust: impl FnOnce(&mut TestDatabase),
    ) -> Self {
        let mut message_database = TestDatabase::new(backend);
        adjust(&mut message_database);
        Self::start_on(backend, message_database, |_| {}).await
    }

    /// Same, with message-service settings adjusted by `adjust`.
    pub async fn start_with(
        backend: Backend,
        adjust: impl FnOnce(&mut message_service::config::Settings),
    ) -> Self {
        Self::start_on(backend, TestDatabase::new(backend), adjust).await
    }

    async fn start_on(
        backend: Backend,
        message_database: TestDatabase,
        adjust: impl FnOnce(&mut message_service::config::Settings),
    ) -> Self {
        let conversations = ConversationHarness::start(backend).await;
        let mut settings = message_settings(&message_database, &conversations.server.url());
        adjust(&mut settings);
        let messages = start_message_service(settings).await;
        let channel = messages.channel().await;
        Self {
            conversations,
            messages,
            message_database,
            channel,
        }
    }

    /// A MessageService client acting as `user` of `tenant`.
    pub fn client(&self, tenant: &str, user: &str) -> MessageClient {
        self.client_with_roles(tenant, user, &[])
    }

    /// A MessageService client acting as `user` of `tenant` with token roles.
    pub fn client_with_roles(&self, tenant: &str, user: &str, roles: &[&str]) -> MessageClient {
        let token = issuer()
            .issue(tenant, user, roles, Duration::from_secs(600))
            .expect("token");
        self.client_with_headers(Headers::bearer(&token))
    }

    /// A MessageService client sending exactly `headers`.
    pub fn client_with_headers(&self, headers: Headers) -> MessageClient {
        messaging_proto::message::v1::message_service_client::MessageServiceClient::with_interceptor(
            self.channel.clone(),
            headers,
        )
    }
}

/// Starts conversation-service with `settings`.
pub async fn start_conversation_service(
    settings: conversation_service::config::Settings,
) -> RunningServer {
    RunningServer::start(move |listener, shutdown| {
        conversation_service::run(settings, listener, async move {
            let _ = shutdown.await;
        })
    })
    .await
}

/// A MessageService client for `user` of `tenant` on `server`.
pub async fn message_client(server: &RunningServer, tenant: &str, user: &str) -> MessageClient {
    let token = issuer()
        .issue(tenant, user, &[], Duration::from_secs(600))
        .expect("token");
    messaging_proto::message::v1::message_service_client::MessageServiceClient::with_interceptor(
        server.channel().await,
        Headers::bearer(&token),
    )
}

/// A ConversationService client for `user` of `tenant` on `server`.
pub async fn conversation_client(
    server: &RunningServer,
    tenant: &str,
    user: &str,
) -> ConversationClient {
    let token = issuer()
        .issue(tenant, user, &[], Duration::from_secs(600))
        .expect("token");
    ConversationServiceClient::with_interceptor(server.channel().await, Headers::bearer(&token))
}

fn nats_url() -> String {
    std::env::var("MESSAGING_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The test NATS server's URL when reachable; `None` (skip) outside CI, a panic under `CI=true`.
pub async fn nats_or_skip() -> Option<String> {
    let url = nats_url();
    let reachable = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(&url))
        .await
        .map(|result| result.is_ok())
        .unwrap_or(false);
    if reachable {
        return Some(url);
    }
    skip_or_fail(&format!("NATS at {url} is unreachable"));
    None
}

/// NATS settings with a stream and subject prefix of their own, so tests run side by side.
pub fn isolated_nats(url: &str) -> message_service::events::NatsSettings {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    message_service::events::NatsSettings {
        url: url.to_owned(),
        stream: format!("TEST_{unique}"),
        subject_prefix: format!("test_{unique}"),
        ..Default::default()
    }
}

/// A SendMessage request with `body` as text.
pub fn text_message(
    conversation_id: &str,
    body: &str,
) -> messaging_proto::message::v1::SendMessageRequest {
    messaging_proto::message::v1::SendMessageRequest {
        conversation_id: conversation_id.to_owned(),
        content: Some(
            messaging_proto::message::v1::send_message_request::Content::Text(body.to_owned()),
        ),
        ..Default::default()
    }
}

/// Sends `request`, expecting success; returns the message.
pub async fn send(
    client: &mut MessageClient,
    request: messaging_proto::message::v1::SendMessageRequest,
) -> messaging_proto::message::v1::Message {
    client
        .send_message(request)
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("message")
}

/// Removes `user` from `conversation` as `client`'s user, expecting success.
pub async fn remove_participant(client: &mut ConversationClient, conversation: &str, user: &str) {
    client
        .remove_participant(
            messaging_proto::conversation::v1::RemoveParticipantRequest {
                conversation_id: conversation.to_owned(),
                user_id: user.to_owned(),
            },
        )
        .await
        .expect("remove participant");
}

/// Creates a DIRECT conversation of the client's user with `other`; returns its id.
pub async fn create_direct(client: &mut ConversationClient, other: &str) -> String {
    use messaging_proto::conversation::v1 as conversation;
    client
        .create_conversation(conversation::CreateConversationRequest {
            r#type: conversation::ConversationType::Direct.into(),
            participants: vec![conversation::ParticipantSpec {
                user_id: other.to_owned(),
                role: 0,
            }],
            ..Default::default()
        })
        .await
        .expect("create direct")
        .into_inner()
        .conversation
        .expect("conversation")
        .conversation_id
}

/// Creates a GROUP owned by `client`'s user with `members`; returns its id.
pub async fn create_group(
    client: &mut ConversationClient,
    title: &str,
    members: &[(&str, messaging_proto::conversation::v1::Role)],
) -> String {
    use messaging_proto::conversation::v1 as conversation;
    client
        .create_conversation(conversation::CreateConversationRequest {
            r#type: conversation::ConversationType::Group.into(),
            title: title.to_owned(),
            participants: members
                .iter()
                .map(|(user, role)| conversation::ParticipantSpec {
                    user_id: (*user).to_owned(),
                    role: (*role).into(),
                })
                .collect(),
            ..Default::default()
        })
        .await
        .expect("create group")
        .into_inner()
        .conversation
        .expect("conversation")
        .conversation_id
}

/// Whether `event` comes from conversation-service (a conversation or participant change).
pub fn is_conversation_event(event: &messaging_proto::message::v1::Event) -> bool {
    use messaging_proto::message::v1::event::Payload;
    matches!(
        event.payload,
        Some(
            Payload::ConversationCreated(_)
                | Payload::ConversationUpdated(_)
                | Payload::ConversationArchived(_)
                | Payload::ConversationDeleted(_)
                | Payload::ParticipantAdded(_)
                | Payload::ParticipantRemoved(_)
                | Payload::ParticipantRoleChanged(_)
        )
    )
}

/// Replays `client`'s events from the start until one matches `wanted`, within 15 s: for
/// waiting until message-service has taken in conversation-service's events (it copies them
/// in order, so once the last one of a change is there, all earlier ones are too).
pub async fn wait_for_event(
    client: &mut MessageClient,
    wanted: impl Fn(&messaging_proto::message::v1::Event) -> bool,
) -> messaging_proto::message::v1::Event {
    use messaging_proto::message::v1 as pb;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut last = "0".to_owned();
    loop {
        let mut stream = client
            .subscribe(pb::SubscribeRequest {
                resume_position: last.clone(),
                conversation_ids: Vec::new(),
            })
            .await
            .expect("subscribe")
            .into_inner();
        loop {
            let received = tokio::time::timeout_at(deadline, stream.message())
                .await
                .expect("the awaited event within 15 s");
            let item = match received {
                Ok(Some(response)) => response.item,
                // Tests with tiny stream buffers: go on from the last event read.
                Err(status) if status.code() == tonic::Code::ResourceExhausted => break,
                other => panic!("stream failed: {other:?}"),
            };
            if let Some(pb::subscribe_response::Item::Event(event)) = item {
                if wanted(&event) {
                    return event;
                }
                last = event.position;
            }
        }
    }
}

/// Waits until `condition` holds, checking every 25 ms; fails the test, naming `what`, when
/// `within` passes first. The one way tests wait for something that happens in the background.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until message-service has taken in that `user` joined `conversation`.
pub async fn wait_for_participant(client: &mut MessageClient, conversation: &str, user: &str) {
    use messaging_proto::message::v1::event::Payload;
    wait_for_event(client, |event| {
        event.conversation_id == conversation
            && matches!(&event.payload, Some(Payload::ParticipantAdded(added)) if added.user_id == user)
    })
    .await;
}

/// A binary of the workspace, built next to the test binaries (`make test` builds them first).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let test = std::env::current_exe().expect("test binary");
    let folder = test
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target folder");
    let path = folder.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// Subscribes `client` to all its conversations, from `resume` (empty: from now).
pub async fn subscribe(
    client: &mut MessageClient,
    resume: &str,
) -> tonic::Streaming<messaging_proto::message::v1::SubscribeResponse> {
    client
        .subscribe(messaging_proto::message::v1::SubscribeRequest {
            resume_position: resume.to_owned(),
            conversation_ids: Vec::new(),
        })
        .await
        .expect("subscribe")
        .into_inner()
}

fn s3_url() -> String {
    std::env::var("MESSAGING_TEST_S3_URL").unwrap_or_else(|_| "http://127.0.0.1:8333".to_owned())
}

/// Settings of the test S3-compatible server (SeaweedFS from `.ci/services`: bucket
/// `messaging-test`, access key `messaging`), under a prefix of their own so tests run side by
/// side; `None` (skip) when it is unreachable outside CI, a panic under `CI=true`.
pub async fn s3_or_skip() -> Option<message_service::blobs::StoreSettings> {
    let settings = message_service::blobs::StoreSettings {
        kind: message_service::blobs::StoreKind::S3,
        endpoint: Some(s3_url()),
        bucket: Some(
            std::env::var("MESSAGING_TEST_S3_BUCKET").unwrap_or_else(|_| "messaging-test".into()),
        ),
        allow_http: true,
        access_key_id: Some(Secret::new(
            std::env::var("MESSAGING_TEST_S3_KEY").unwrap_or_else(|_| "messaging".into()),
        )),
        secret_access_key: Some(Secret::new(
            std::env::var("MESSAGING_TEST_S3_SECRET").unwrap_or_else(|_| "messaging-secret".into()),
        )),
        prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    };
    let blobs = message_service::blobs::Blobs::from_settings(&settings).expect("S3 settings");
    // The server may still be creating the bucket just after it started: ask until it answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed = tokio::time::timeout(
            Duration::from_secs(5),
            blobs.objects().list_with_delimiter(None),
        )
        .await;
        match listed {
            Ok(Ok(_)) => return Some(settings),
            outcome if tokio::time::Instant::now() >= deadline => {
                skip_or_fail(&format!(
                    "the S3 server at {} is unusable ({outcome:?})",
                    s3_url()
                ));
                return None;
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// clamd's test address (`.ci/services` starts one with the EICAR signature) when reachable;
/// `None` (skip) outside CI, a panic under `CI=true`.
pub async fn clamd_or_skip() -> Option<String> {
    let address =
        std::env::var("MESSAGING_TEST_CLAMD").unwrap_or_else(|_| "127.0.0.1:3310".to_owned());
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&address),
    )
    .await
    .map(|result| result.is_ok())
    .unwrap_or(false);
    if reachable {
        return Some(address);
    }
    skip_or_fail(&format!("clamd at {address} is unreachable"));
    None
}

/// Upload metadata for `bytes` (exact size and SHA-256) as `name` of media type `kind`.
pub fn attachment_metadata(
    conversation: &str,
    name: &str,
    kind: &str,
    bytes: &[u8],
) -> messaging_proto::message::v1::AttachmentUploadMetadata {
    use sha2::Digest as _;
    messaging_proto::message::v1::AttachmentUploadMetadata {
        conversation_id: conversation.to_owned(),
        file_name: name.to_owned(),
        content_type: kind.to_owned(),
        size_bytes: bytes.len() as i64,
        sha256: message_service::blobs::hex(&sha2::Sha256::digest(bytes)),
        ..Default::default()
    }
}

/// Uploads `bytes` (from `metadata.offset` on) in chunks of 256 KiB.
pub async fn upload_attachment(
    client: &mut MessageClient,
    metadata: messaging_proto::message::v1::AttachmentUploadMetadata,
    bytes: &[u8],
) -> Result<messaging_proto::message::v1::Attachment, tonic::Status> {
    use messaging_proto::message::v1::UploadAttachmentRequest;
    let mut requests = vec![UploadAttachmentRequest {
        metadata: Some(metadata),
        chunk: bytes::Bytes::new(),
    }];
    requests.extend(
        bytes
            .chunks(256 * 1024)
            .map(|chunk| UploadAttachmentRequest {
                metadata: None,
                chunk: bytes::Bytes::copy_from_slice(chunk),
            }),
    );
    client
        .upload_attachment(futures::stream::iter(requests))
        .await
        .map(|response| response.into_inner().attachment.unwrap_or_default())
}
