//! `messaging-bench`: drives the real services over gRPC and measures them against baselines
//! taken in the same run, on the same machine: the gRPC floor (a health check on the same
//! server at the same concurrency) and the database floor (single-row INSERTs, each in its own
//! transaction, through a pool configured like the service's, at the same concurrency).
//!
//! message-service runs as deployed: the release binary in a process of its own, driven over one
//! connection per simulated client; conversation-service (asked for permissions, cached) runs
//! in this process. Both use PostgreSQL (and NATS) when reachable, else the embedded SQLite
//! default. Results go to the terminal, `<out>/results.json` and
//! `<out>/latency.svg`.

mod attachments;
mod chat;
mod fanout;
mod growth;
mod history;
mod report;
mod seed;
mod setup;
mod streams;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use messaging_proto::message::v1 as pb;
use sea_orm::ConnectionTrait;
use tokio::sync::Mutex;

use crate::report::{Measurement, Report};
use crate::setup::Deployment;

#[derive(Parser)]
#[command(
    name = "messaging-bench",
    about = "Load generator for the messaging services"
)]
struct Cli {
    /// `quick` (under 5 minutes) or `full`.
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Scenarios to run, comma-separated: floors, growth, send, react, markread, fanout,
    /// unread, history, search, streams, attachments.
    #[arg(
        long,
        default_value = "floors,growth,send,react,markread,fanout,unread,history,search,streams,attachments",
        value_delimiter = ','
    )]
    scenarios: Vec<String>,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Subscribers of the fanout scenario's conversation.
    #[arg(long, default_value_t = 1_000)]
    subscribers: usize,
    /// Messages per second the fanout scenario's sender sends.
    #[arg(long, default_value_t = 20)]
    fanout_rate: u32,
    /// Idle streams of the streams scenario.
    #[arg(long, default_value_t = 10_000)]
    idle_streams: usize,
    /// Use SQLite even when PostgreSQL is reachable.
    #[arg(long)]
    embedded: bool,
    /// message-service's `writes.max_batch` (1: every send in a transaction of its own, the
    /// write path before group commit).
    #[arg(long, default_value_t = message_service::admin::WriteSettings::default().max_batch)]
    max_batch: usize,
    /// message-service's `writes.writers`.
    #[arg(long, default_value_t = message_service::admin::WriteSettings::default().writers)]
    writers: usize,
    /// Where results.json and latency.svg go.
    #[arg(long, default_value = "target/bench")]
    out: std::path::PathBuf,
}

/// Runs `operation` from `concurrency` workers for `duration`; returns the measurement.
pub(crate) async fn load<F, Fut>(
    name: &str,
    concurrency: usize,
    duration: Duration,
    operation: F,
) -> Measurement
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let operation = Arc::new(operation);
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
    ));
    let errors = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let progress = indicatif::ProgressBar::new(duration.as_secs().max(1));
    progress.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len}s")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_prefix(name.to_owned());
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (operation, histogram, errors, counter) = (
            operation.clone(),
            histogram.clone(),
            errors.clone(),
            counter.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            while Instant::now() < deadline {
                let index = counter.fetch_add(1, Ordering::Relaxed);
                let begin = Instant::now();
                let ok = operation(index).await;
                let micros = u64::try_from(begin.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                if ok {
                    let _ = local.record(micros.min(60_000_000));
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = histogram.lock().await.add(&local);
        }));
    }
    let ticker = {
        let progress = progress.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(250)).await;
                progress.set_position(started.elapsed().as_secs());
            }
        })
    };
    for worker in workers {
        let _ = worker.await;
    }
    ticker.abort();
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let histogram = histogram.lock().await;
    Measurement::from_histogram(
        name,
        &histogram,
        elapsed,
        errors.load(Ordering::Relaxed),
        concurrency,
    )
}

/// The connection of request `index`: the requests in flight spread over the connections.
fn pick(index: u64, connections: usize) -> usize {
    usize::try_from(index % connections.max(1) as u64).unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let phase = if cli.profile == "full" {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(5)
    };
    let deployment = Deployment::start(
        cli.embedded,
        message_service::admin::WriteSettings {
            writers: cli.writers,
            max_batch: cli.max_batch,
        },
    )
    .await?;
    println!("backend: {}", deployment.description);
    let mut report = Report::new(&cli.profile, &deployment.description, cli.concurrency);
    let wants = |name: &str| cli.scenarios.iter().any(|scenario| scenario == name);

    // One connection per simulated client, as separate clients would have.
    let channels = deployment.message_channels(cli.concurrency).await?;
    if wants("floors") || wants("send") {
        // The gRPC floor: a trivial unary call on the same server.
        let health: Vec<_> = channels
            .iter()
            .map(|channel| tonic_health::pb::health_client::HealthClient::new(channel.clone()))
            .collect();
        report.push(
            load(
                "grpc floor (health check)",
                cli.concurrency,
                phase,
                move |index| {
                    let mut health = health[pick(index, health.len())].clone();
                    async move {
                        health
                            .check(tonic_health::pb::HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .is_ok()
                    }
                },
            )
            .await,
        );
        // The database floor: single-row INSERTs through an equally configured pool.
        let db = deployment.floor_pool().await?;
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS bench_floor (id uuid PRIMARY KEY, n bigint NOT NULL, body text NOT NULL, at timestamp with time zone NOT NULL)",
        )
        .await?;
        let backend = db.get_database_backend();
        report.push(
            load("database floor (insert)", cli.concurrency, phase, move |index| {
                let db = db.clone();
                async move {
                    let statement = sea_orm::Statement::from_sql_and_values(
                        backend,
                        match backend {
                            sea_orm::DbBackend::Postgres => "INSERT INTO bench_floor (id, n, body, at) VALUES ($1, $2, $3, $4)",
                            _ => "INSERT INTO bench_floor (id, n, body, at) VALUES (?, ?, ?, ?)",
                        },
                        [
                            uuid::Uuid::new_v4().into(),
                            i64::try_from(index).unwrap_or(0).into(),
                            "a short text".into(),
                            chrono::Utc::now().into(),
                        ],
                    );
                    db.execute_raw(statement).await.is_ok()
                }
            })
            .await,
        );
    }

    // Before anything runs ANALYZE: the database is as fresh as a new deployment's.
    if wants("growth") {
        let total = if cli.profile == "full" {
            100_000
        } else {
            32_000
        };
        growth::growth(&deployment, &mut report, cli.concurrency, total).await?;
    }

    if wants("send") {
        // Three-word texts over 1 and 64 conversations, then chat-like texts (4 to 24 words
        // of the seeding vocabulary, so search-index rows and statement shapes vary).
        let vocabulary = Arc::new(seed::Vocabulary::new(20_000));
        for (conversations, varied) in [(1_usize, false), (64, false), (64, true)] {
            let ids = deployment
                .create_groups("alice", &["bob"], conversations)
                .await?;
            deployment.warm_up("alice", &ids).await?;
            deployment.analyze().await?;
            let clients: Vec<_> = channels
                .iter()
                .map(|channel| deployment.message_client_on(channel.clone(), "alice"))
                .collect();
            let vocabulary = vocabulary.clone();
            report.push(
                load(
                    &format!(
                        "send ({conversations} conversation{}{})",
                        if conversations == 1 { "" } else { "s" },
                        if varied { ", 4-24 words" } else { "" }
                    ),
                    cli.concurrency,
                    phase,
                    move |index| {
                        let mut client = clients[pick(index, clients.len())].clone();
                        let conversation_id =
                            ids[usize::try_from(index).unwrap_or(0) % ids.len()].clone();
                        let text = if varied {
                            vocabulary.message(&mut rand::rng())
                        } else {
                            format!("benchmark message {index}")
                        };
                        async move {
                            let request = pb::SendMessageRequest {
                                conversation_id,
                                content: Some(pb::send_message_request::Content::Text(text)),
                                ..Default::default()
                            };
                            client.send_message(request).await.is_ok()
                        }
                    },
                )
                .await,
            );
        }
    }

    if wants("react") || wants("markread") {
        chat::chat(&deployment, &mut report, &channels, phase, &wants).await?;
    }

    if wants("fanout") {
        let (measurement, copies) =
            fanout::fanout(&deployment, cli.subscribers, cli.fanout_rate, phase).await?;
        report.push(measurement);
        report.note("fanout copies", copies);
    }

    if wants("unread") {
        let seeded = Instant::now();
        let ids = deployment
            .create_groups("ursula", &["sender"], 1_000)
            .await?;
        let mut sender = deployment.message_client("sender");
        for id in &ids {
            sender
                .send_message(pb::SendMessageRequest {
                    conversation_id: id.clone(),
                    content: Some(pb::send_message_request::Content::Text("unread".to_owned())),
                    ..Default::default()
                })
                .await?;
        }
        deployment.analyze().await?;
        println!(
            "seeded 1,000 conversations with one unread message each in {:.1} s (then ANALYZE)",
            seeded.elapsed().as_secs_f64()
        );
        let client = deployment.message_client("ursula");
        report.push(
            load("unread (1,000 conversations)", 1, phase, move |_| {
                let mut client = client.clone();
                async move {
                    match client
                        .get_unread_counts(pb::GetUnreadCountsRequest::default())
                        .await
                    {
                        Ok(response) => response.into_inner().counts.len() == 1_000,
                        Err(_) => false,
                    }
                }
            })
            .await,
        );
    }

    if wants("history") || wants("search") {
        history::history_and_search(&deployment, &mut report, &cli.profile, phase, &wants).await?;
    }

    if wants("streams") {
        let memory = streams::idle_memory(&deployment, cli.idle_streams).await?;
        report.note(
            &format!("streams: {} idle Subscribe streams", cli.idle_streams),
            format!(
                "{:.1} KiB per stream (message-service resident memory {:.1} MiB before, {:.1} MiB after; opened in {:.1} s)",
                memory.per_stream_bytes / 1024.0,
                memory.before_bytes as f64 / 1_048_576.0,
                memory.after_bytes as f64 / 1_048_576.0,
                memory.opened_in.as_secs_f64()
            ),
        );
    }

    if wants("attachments") {
        attachments::attachments(&deployment, &mut report, phase).await?;
    }

    report.print();
    report.write(&cli.out)?;
    println!(
        "wrote {} and {}",
        cli.out.join("results.json").display(),
        cli.out.join("latency.svg").display()
    );
    deployment.stop().await;
    Ok(())
}
