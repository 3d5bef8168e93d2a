//! What both services share, over real gRPC: health, reflection (v1 and v1alpha), and
//! authentication in front of message-service's not-yet-implemented RPCs.

use std::time::Duration;

use messaging_e2e::{Backend, ConversationHarness, Headers, RunningServer, TestDatabase, issuer};
use messaging_platform::auth::AuthSettings;
use messaging_platform::config::{Mode, Secret};
use messaging_proto::message::v1 as message;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn start_message_service(database: &TestDatabase) -> RunningServer {
    // No conversation-service behind it: these tests stop at authentication and health.
    messaging_e2e::start_message_service(messaging_e2e::message_settings(
        database,
        "http://127.0.0.1:9",
    ))
    .await
}

async fn health(server: &RunningServer, service: &str) -> i32 {
    let mut client = HealthClient::new(server.channel().await);
    let request = tonic_health::pb::HealthCheckRequest {
        service: service.to_owned(),
    };
    client
        .check(request)
        .await
        .expect("health")
        .into_inner()
        .status
}

async fn listed_services(server: &RunningServer) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("a response").expect("ok");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list
                .service
                .into_iter()
                .map(|service| service.name)
                .collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection response {other:?}"),
    }
}

#[tokio::test]
async fn health_and_reflection_on_both_services() {
    let conversation = ConversationHarness::start(Backend::Sqlite).await;
    let database = TestDatabase::new(Backend::Sqlite);
    let messages = start_message_service(&database).await;

    assert_eq!(
        health(&conversation.server, "").await,
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health(&conversation.server, conversation_service::SERVICE_NAME).await,
        ServingStatus::Serving as i32
    );
    for name in message_service::SERVICE_NAMES {
        assert_eq!(health(&messages, name).await, ServingStatus::Serving as i32);
    }
    assert_eq!(
        listed_services(&conversation.server).await,
        vec![
            "grpc.health.v1.Health",
            "messaging.conversation.v1.ConversationService"
        ]
    );
    assert_eq!(
        listed_services(&messages).await,
        vec![
            "grpc.health.v1.Health",
            "messaging.message.v1.ComplianceService",
            "messaging.message.v1.MessageService"
        ]
    );
    // A graceful stop completes.
    messages.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn message_service_authenticates_before_answering() {
    use message::message_service_client::MessageServiceClient;
    let database = TestDatabase::new(Backend::Sqlite);
    let server = start_message_service(&database).await;
    let mut anonymous =
        MessageServiceClient::with_interceptor(server.channel().await, Headers::none());
    let status = anonymous
        .search_messages(message::SearchMessagesRequest::default())
        .await
        .expect_err("anonymous");
    assert_eq!(status.code(), Code::Unauthenticated);
    let token = issuer()
        .issue("acme", "alice", &[], Duration::from_secs(60))
        .expect("token");
    let mut alice =
        MessageServiceClient::with_interceptor(server.channel().await, Headers::bearer(&token));
    let status = alice
        .get_attachment(message::GetAttachmentRequest::default())
        .await
        .expect_err("no ids");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "authenticated, then validated"
    );
    let mut compliance =
        message::compliance_service_client::ComplianceServiceClient::with_interceptor(
            server.channel().await,
            Headers::bearer(&token),
        );
    let status = compliance
        .set_retention_policy(message::SetRetentionPolicyRequest::default())
        .await
        .expect_err("not an administrator");
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "authenticated, then authorized before validation"
    );
}

#[test]
fn production_refuses_the_development_secret_and_missing_keys() {
    use messaging_platform::Authenticator;
    let development = AuthSettings {
        hs256_secret: Some(Secret::new(
            messaging_platform::auth::DEVELOPMENT_HS256_SECRET,
        )),
        ..Default::default()
    };
    assert!(Authenticator::from_settings(&development, Mode::Development).is_ok());
    let error = Authenticator::from_settings(&development, Mode::Production).expect_err("refused");
    assert!(error.to_string().contains("development secret"), "{error}");
    let short = AuthSettings {
        hs256_secret: Some(Secret::new("short")),
        ..Default::default()
    };
    assert!(Authenticator::from_settings(&short, Mode::Production).is_err());
    let none = AuthSettings::default();
    let error = Authenticator::from_settings(&none, Mode::Production).expect_err("no keys");
    assert!(
        error.to_string().contains("no token verification key"),
        "{error}"
    );
}

#[test]
fn configuration_file_overrides_defaults() {
    let folder = tempfile::tempdir().expect("folder");
    let file = folder.path().join("config.toml");
    std::fs::write(
        &file,
        "mode = \"development\"\n[conversation_service]\nlisten = \"127.0.0.1:6000\"\nmax_participants = 7\n",
    )
    .expect("write");
    let settings: conversation_service::config::Settings =
        messaging_platform::config::load(Some(&file)).expect("load");
    assert_eq!(settings.mode, Mode::Development);
    assert_eq!(settings.conversation_service.listen.port(), 6000);
    assert_eq!(settings.conversation_service.max_participants, 7);
    // Defaults fill what the file leaves out.
    assert_eq!(
        settings.conversation_service.undelete_window,
        Duration::from_secs(30 * 24 * 3600)
    );
    assert_eq!(
        format!("{:?}", settings.conversation_service.database.url),
        "Secret([redacted])"
    );
}

#[test]
fn the_example_configurations_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["deploy/dev.toml", "deploy/production.example.toml"] {
        let path = root.join(file);
        let conversation: conversation_service::config::Settings =
            messaging_platform::config::load(Some(&path)).expect(file);
        let message: message_service::config::Settings =
            messaging_platform::config::load(Some(&path)).expect(file);
        if file.contains("production") {
            assert_eq!(
                conversation.conversation_service.events.nats.url,
                "nats://nats:4222"
            );
            assert_eq!(message.message_service.events.nats.url, "nats://nats:4222");
            assert_eq!(message.message_service.events.nats.stream, "MESSAGING");
            let attachments = &message.message_service.attachments;
            assert_eq!(
                attachments.store.kind,
                message_service::blobs::StoreKind::S3
            );
            assert_eq!(
                attachments.scanner.kind,
                message_service::blobs::scan::ScannerKind::Clamav
            );
        }
    }
}

#[tokio::test]
async fn sqlite_commits_are_synced_before_they_are_acknowledged_by_default() {
    use sea_orm::ConnectionTrait;
    for (durability, expected) in [
        (None, 2_i64),
        (Some(messaging_platform::config::SqliteSynchronous::Full), 2),
        (
            Some(messaging_platform::config::SqliteSynchronous::Normal),
            1,
        ),
    ] {
        let database = TestDatabase::new(Backend::Sqlite);
        let mut settings = database.settings.clone();
        if let Some(durability) = durability {
            settings.sqlite_synchronous = durability;
        }
        let connection = messaging_platform::db::connect(&settings, "unused")
            .await
            .expect("connect");
        let row = connection
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "PRAGMA synchronous",
            ))
            .await
            .expect("pragma")
            .expect("a row");
        let level: i64 = row.try_get_by_index(0).expect("level");
        assert_eq!(level, expected, "{durability:?}");
    }
}

#[tokio::test]
async fn configuration_errors_print_one_line_even_with_backtraces_on() {
    let folder = tempfile::tempdir().expect("folder");
    let config = folder.path().join("production.toml");
    std::fs::write(
        &config,
        format!(
            "mode = \"production\"\n[auth]\nhs256_secret = \"{}\"\n[message_service]\n\
             listen = \"127.0.0.1:0\"\ndatabase = {{ url = \"sqlite://{}\" }}\n\
             [message_service.encryption]\nenabled = true\n",
            messaging_e2e::TEST_SECRET,
            folder.path().join("message.db").display()
        ),
    )
    .expect("config");
    let output = tokio::process::Command::new(messaging_e2e::workspace_binary("message-service"))
        .arg("--config")
        .arg(&config)
        .env("RUST_BACKTRACE", "1")
        .env("MESSAGING__TELEMETRY__LOG_FILTER", "off")
        .output()
        .await
        .expect("run message-service");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("master key"),
        "{stderr}"
    );
}

/// Sends bytes as they are, to try what a broken client could send.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug, Clone, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Default)]
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        destination: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(destination, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        source: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; source.remaining()];
        source.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_the_clients_fault_and_fail_alone() {
    let conversations = ConversationHarness::start(Backend::Sqlite).await;
    let channel = conversations.server.channel().await;
    let token = issuer()
        .issue("acme", "alice", &[], Duration::from_secs(600))
        .expect("token");
    let call = |body: Vec<u8>, metadata: Vec<(String, String)>| {
        let channel = channel.clone();
        let token = token.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("ready");
            let mut request = tonic::Request::new(body);
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
            for (name, value) in metadata {
                let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).expect("name");
                request
                    .metadata_mut()
                    .append(name, value.parse().expect("value"));
            }
            grpc.unary::<_, Vec<u8>, _>(
                request,
                "/messaging.conversation.v1.ConversationService/ListConversations"
                    .parse()
                    .expect("path"),
                RawCodec,
            )
            .await
            .map(|_| ())
        }
    };
    let fine = || call(Vec::new(), Vec::new());
    fine()
        .await
        .expect("an empty ListConversationsRequest is fine");
    // Field 1 as a start group, 5,000 times over.
    let nested = vec![0x0b; 5_000];
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("1 MiB of garbage", vec![0xff; 1 << 20]),
        ("5,000 nested groups", nested),
        ("a truncated varint", vec![0x08, 0xff]),
        ("a string that is not UTF-8", vec![0x22, 0x02, 0xff, 0xfe]),
        ("a length past the end", vec![0x22, 0x7f, b'a']),
    ];
    for (what, body) in malformed {
        let status = call(body, Vec::new()).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        fine().await.expect("the connection survives");
    }
    let status = call(vec![0; 5 << 20], Vec::new()).await.expect_err("5 MiB");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    fine().await.expect("the connection survives");
    // Large metadata (under the 256 KiB limit) is read, and the connection stays up: a stream
    // opened before on it goes on.
    let many: Vec<(String, String)> = (0..5_000)
        .map(|index| (format!("x-filler-{index}"), "v".to_owned()))
        .collect();
    let big = vec![("x-big".to_owned(), "v".repeat(16 * 1024))];
    let service_token = issuer()
        .issue("*", "svc", &["service"], Duration::from_secs(600))
        .expect("token");
    // On the same connection as the calls above.
    let mut watcher = messaging_proto::conversation::v1::conversation_service_client::ConversationServiceClient::with_interceptor(
        channel.clone(),
        Headers::bearer(&service_token).with("x-messaging-tenant-id", "*"),
    );
    let mut watching = watcher
        .watch_events(messaging_proto::conversation::v1::WatchEventsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    for (what, metadata) in [("5,000 entries", many), ("a 16 KiB value", big)] {
        call(Vec::new(), metadata).await.expect(what);
        fine().await.expect("the connection survives");
    }
    let mut alice = conversations.client("acme", "alice");
    messaging_e2e::create_group(&mut alice, "after the big headers", &[]).await;
    let item = tokio::time::timeout(Duration::from_secs(15), watching.message())
        .await
        .expect("an event within 15 s");
    assert!(
        matches!(item, Ok(Some(_))),
        "the stream opened before is still up: {item:?}"
    );
}
