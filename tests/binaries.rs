//! The real binaries, as an operator runs them: SIGTERM with open streams drains and exits
//! within the drain deadline, for message-service with open Subscribe streams and for
//! conversation-service while message-service follows its events.

use std::process::Stdio;
use std::time::Duration;

use messaging_e2e::{Backend, Headers, TestDatabase, workspace_binary};
use messaging_platform::auth::{AuthSettings, DEVELOPMENT_HS256_SECRET, TokenIssuer};
use messaging_platform::config::Secret;
use messaging_proto::conversation::v1 as conversation;
use messaging_proto::message::v1 as pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic::Code;

/// A service binary on `127.0.0.1:0` with the development configuration and `env`; returns
/// the child and the address it logged.
async fn start(name: &str, env: &[(&str, String)]) -> (Child, String) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/dev.toml");
    let mut command = Command::new(workspace_binary(name));
    command
        .arg("--config")
        .arg(config)
        .env("MESSAGING__TELEMETRY__LOG_FORMAT", "json")
        .env("MESSAGING__TELEMETRY__LOG_FILTER", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start the binary");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains("listening")
                && let Some(start) = line.find("\"address\":\"")
            {
                let rest = &line[start + 11..];
                return rest[..rest.find('"').expect("end")].to_owned();
            }
        }
        panic!("{name} ended before listening");
    })
    .await
    .expect("listening within 60 s");
    // Keep reading its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{address}"))
}

/// Sends SIGTERM and waits for the exit; returns how long it took.
async fn terminate(child: &mut Child) -> Duration {
    let pid = child.id().expect("running");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exited within 30 s")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_streams_and_exits_within_the_deadline() {
    let (conversations_db, messages_db) = (
        TestDatabase::new(Backend::Sqlite),
        TestDatabase::new(Backend::Sqlite),
    );
    let drain = Duration::from_secs(3);
    let (mut conversation_service, conversation_url) = start(
        "conversation-service",
        &[
            (
                "MESSAGING__CONVERSATION_SERVICE__LISTEN",
                "127.0.0.1:0".to_owned(),
            ),
            (
                "MESSAGING__CONVERSATION_SERVICE__DATABASE__URL",
                conversations_db.settings.url.expose().to_owned(),
            ),
            (
                "MESSAGING__CONVERSATION_SERVICE__DRAIN_TIMEOUT",
                "3s".to_owned(),
            ),
        ],
    )
    .await;
    let message_env = [
        (
            "MESSAGING__MESSAGE_SERVICE__LISTEN",
            "127.0.0.1:0".to_owned(),
        ),
        (
            "MESSAGING__MESSAGE_SERVICE__DATABASE__URL",
            messages_db.settings.url.expose().to_owned(),
        ),
        (
            "MESSAGING__MESSAGE_SERVICE__CONVERSATION_SERVICE_URL",
            conversation_url.clone(),
        ),
        ("MESSAGING__MESSAGE_SERVICE__DRAIN_TIMEOUT", "3s".to_owned()),
    ];
    let (mut message_service, message_url) = start("message-service", &message_env).await;
    let issuer = TokenIssuer::from_settings(&AuthSettings {
        hs256_secret: Some(Secret::new(DEVELOPMENT_HS256_SECRET)),
        ..Default::default()
    })
    .expect("issuer");
    let token = issuer
        .issue("acme", "alice", &[], Duration::from_secs(600))
        .expect("token");
    let mut conversations =
        conversation::conversation_service_client::ConversationServiceClient::with_interceptor(
            tonic::transport::Channel::from_shared(conversation_url.clone())
                .expect("url")
                .connect()
                .await
                .expect("connect"),
            Headers::bearer(&token),
        );
    let group = messaging_e2e::create_group(&mut conversations, "Drain", &[]).await;
    let mut messages = pb::message_service_client::MessageServiceClient::with_interceptor(
        tonic::transport::Channel::from_shared(message_url)
            .expect("url")
            .connect()
            .await
            .expect("connect"),
        Headers::bearer(&token),
    );
    let mut stream = messages
        .subscribe(pb::SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    messages
        .send_message(messaging_e2e::text_message(&group, "before SIGTERM"))
        .await
        .expect("send");

    // message-service: the open stream ends with a resume position; the process exits in time.
    let took = terminate(&mut message_service).await;
    assert!(took < drain, "message-service took {took:?}");
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("resume_position"),
        "{}",
        status.message()
    );

    // conversation-service, while a message-service follows its events.
    let (mut follower, _) = start("message-service", &message_env).await;
    let took = terminate(&mut conversation_service).await;
    assert!(took < drain, "conversation-service took {took:?}");
    let took = terminate(&mut follower).await;
    assert!(took < drain, "message-service took {took:?}");
}

/// The REST edge at SIGTERM: an open NDJSON stream gets an UNAVAILABLE error line (so the
/// client resumes instead of taking it for the end), and the process exits within its drain
/// deadline while the services go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_edge_ends_open_streams_with_an_error_line_at_sigterm() {
    use futures::StreamExt as _;
    let (conversations_db, messages_db) = (
        TestDatabase::new(Backend::Sqlite),
        TestDatabase::new(Backend::Sqlite),
    );
    let (mut conversation_service, conversation_url) = start(
        "conversation-service",
        &[
            (
                "MESSAGING__CONVERSATION_SERVICE__LISTEN",
                "127.0.0.1:0".to_owned(),
            ),
            (
                "MESSAGING__CONVERSATION_SERVICE__DATABASE__URL",
                conversations_db.settings.url.expose().to_owned(),
            ),
        ],
    )
    .await;
    let (mut message_service, message_url) = start(
        "message-service",
        &[
            (
                "MESSAGING__MESSAGE_SERVICE__LISTEN",
                "127.0.0.1:0".to_owned(),
            ),
            (
                "MESSAGING__MESSAGE_SERVICE__DATABASE__URL",
                messages_db.settings.url.expose().to_owned(),
            ),
            (
                "MESSAGING__MESSAGE_SERVICE__CONVERSATION_SERVICE_URL",
                conversation_url.clone(),
            ),
        ],
    )
    .await;
    let drain = Duration::from_secs(3);
    let (mut edge, edge_url) = start(
        "rest-edge",
        &[
            ("MESSAGING__REST_EDGE__LISTEN", "127.0.0.1:0".to_owned()),
            (
                "MESSAGING__REST_EDGE__CONVERSATION_SERVICE_URL",
                conversation_url,
            ),
            ("MESSAGING__REST_EDGE__MESSAGE_SERVICE_URL", message_url),
            ("MESSAGING__REST_EDGE__DRAIN_TIMEOUT", "3s".to_owned()),
        ],
    )
    .await;
    let token = TokenIssuer::from_settings(&AuthSettings {
        hs256_secret: Some(Secret::new(DEVELOPMENT_HS256_SECRET)),
        ..Default::default()
    })
    .expect("issuer")
    .issue("acme", "alice", &[], Duration::from_secs(600))
    .expect("token");
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{edge_url}/v1/conversations"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"type": "CONVERSATION_TYPE_GROUP", "title": "Drain"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("JSON");
    let group = created["conversation"]["conversationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let stream = http
        .get(format!(
            "{edge_url}/v1/events:subscribe?conversationIds={group}"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("subscribe");
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    http.post(format!("{edge_url}/v1/conversations/{group}/messages"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"text": "before SIGTERM"}))
        .send()
        .await
        .expect("send");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !text.contains("messageCreated") {
            let chunk = body.next().await.expect("a line").expect("bytes");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the event within 20 s");

    let took = terminate(&mut edge).await;
    assert!(took < drain, "rest-edge took {took:?}");
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => break,
        }
    }
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a last line")).expect("JSON");
    assert_eq!(last["error"]["code"], Code::Unavailable as i32, "{text}");
    terminate(&mut message_service).await;
    terminate(&mut conversation_service).await;
}
