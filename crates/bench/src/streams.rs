//! The streams scenario: resident memory of a message-service process per idle Subscribe
//! stream. The process is the release binary built next to this one, started on the same
//! database and conversation-service, so that its memory is the server's alone.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use messaging_proto::message::v1 as pb;
use tonic::transport::Channel;

use crate::setup::{Deployment, ServiceProcess};

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

/// Starts a second message-service, opens `count` idle streams to it, and measures.
pub async fn idle_memory(deployment: &Deployment, count: usize) -> anyhow::Result<StreamMemory> {
    let ServiceProcess {
        child,
        pid,
        channel: first,
        url,
    } = deployment.spawn_message_service(&[]).await?;
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
