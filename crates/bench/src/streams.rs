//! The streams scenario: resident memory of a message-service process per idle Subscribe
//! stream. The process is the release binary built next to this one, started on the same
//! database and conversation-service, so that its memory is the server's alone.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use messaging_proto::message::v1 as pb;
use tonic::transport::Channel;

use crate::setup::Deployment;

/// What the scenario found.
pub struct StreamMemory {
    /// Resident bytes before the streams opened.
    pub before_bytes: u64,
    /// Resident bytes with every stream open.
    pub after_bytes: u64,
    /// The difference per stream.
    pub per_stream_bytes: f64,
    /// How long opening them took.
    pub opened_in: Duration,
}

pub fn resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Streams per HTTP/2 connection, as clients spread over connections would.
const PER_CONNECTION: usize = 500;

/// A second message-service process: the release binary built next to this one, on the
/// deployment's databases and conversation-service, so that its memory is the server's alone.
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

/// Starts a [`ServiceProcess`] with the deployment's settings plus `extra` environment.
pub async fn spawn_message_service(
    deployment: &Deployment,
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
    let settings = &deployment.message_settings;
    let service = &settings.message_service;
    let mut command = tokio::process::Command::new(&binary);
    command
        .kill_on_drop(true)
        .env("MESSAGING__TELEMETRY__LOG_FILTER", "error")
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
        anyhow::ensure!(
            Instant::now() < deadline,
            "the second message-service did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(ServiceProcess {
        child,
        pid,
        channel,
        url,
    })
}

/// Starts a second message-service, opens `count` idle streams to it, and measures.
pub async fn idle_memory(deployment: &Deployment, count: usize) -> anyhow::Result<StreamMemory> {
    let ServiceProcess {
        child,
        pid,
        channel: first,
        url,
    } = spawn_message_service(deployment, &[]).await?;
    // Warm up: one stream opened and closed, so that lazily built state is not counted.
    drop(
        deployment
            .message_client_on(first.clone(), "warm-up")
            .subscribe(pb::SubscribeRequest::default())
            .await?,
    );
    let before = resident_bytes(pid)?;
    let started = Instant::now();
    let mut channels = vec![first];
    while channels.len() * PER_CONNECTION < count {
        channels.push(Channel::from_shared(url.clone())?.connect().await?);
    }
    // The answer's headers arrive once the server has set the stream up; 64 opening at a time.
    let opening = (0..count).map(|index| {
        let mut client = deployment.message_client_on(
            channels[index / PER_CONNECTION].clone(),
            &format!("idle-{index}"),
        );
        async move {
            client
                .subscribe(pb::SubscribeRequest::default())
                .await
                .map(tonic::Response::into_inner)
        }
    });
    let streams: Vec<_> = futures::stream::iter(opening)
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let opened_in = started.elapsed();
    let after = resident_bytes(pid)?;
    drop(streams);
    drop(child);
    Ok(StreamMemory {
        before_bytes: before,
        after_bytes: after,
        per_stream_bytes: after.saturating_sub(before) as f64 / count.max(1) as f64,
        opened_in,
    })
}
