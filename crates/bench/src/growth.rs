//! The growth scenario: sends with request ids (as clients that retry do) into 64 conversations
//! that grow from empty, on the fresh database before anything ran ANALYZE, and compares the
//! send rate over the first tenth of the messages with the rate over the last tenth. A hot-path
//! statement whose plan depends on planner statistics shows as a rate that falls as the
//! conversations grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use messaging_proto::message::v1 as pb;
use tokio::sync::Mutex;

use crate::report::Report;
use crate::setup::Deployment;

/// Conversations the messages are spread over.
const CONVERSATIONS: usize = 64;

/// Sends `total` messages from `concurrency` workers; notes the start and end rates.
pub async fn growth(
    deployment: &Deployment,
    report: &mut Report,
    concurrency: usize,
    total: u64,
) -> anyhow::Result<()> {
    let ids = Arc::new(
        deployment
            .create_groups("gina", &["bob"], CONVERSATIONS)
            .await?,
    );
    deployment.warm_up("gina", &ids).await?;
    let client = deployment.message_client("gina");
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let tenth = (total / 10).max(1);
    // When the message that completed a tenth arrived: index 0 is the start.
    let marks = Arc::new(Mutex::new(vec![None; 11]));
    let started = Instant::now();
    marks.lock().await[0] = Some(started);
    let progress = indicatif::ProgressBar::new(total);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_prefix("growth (sends)");
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, ids, issued, done, errors, marks, progress) = (
            client.clone(),
            ids.clone(),
            issued.clone(),
            done.clone(),
            errors.clone(),
            marks.clone(),
            progress.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut client = client;
            loop {
                let index = issued.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return;
                }
                let conversation_id = ids[usize::try_from(index).unwrap_or(0) % ids.len()].clone();
                let request = pb::SendMessageRequest {
                    conversation_id,
                    content: Some(pb::send_message_request::Content::Text(format!(
                        "growing conversation, message {index}"
                    ))),
                    request_id: format!("growth-{index}"),
                    ..Default::default()
                };
                if client.send_message(request).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let count = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress.inc(1);
                if count % tenth == 0 && count / tenth <= 10 {
                    marks.lock().await[usize::try_from(count / tenth).unwrap_or(10)] =
                        Some(Instant::now());
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    progress.finish_and_clear();
    let marks = marks.lock().await;
    let rate = |from: usize, to: usize| match (marks[from], marks[to]) {
        (Some(from_at), Some(to_at)) => tenth as f64 / (to_at - from_at).as_secs_f64().max(1e-9),
        _ => 0.0,
    };
    let (start, end) = (rate(0, 1), rate(9, 10));
    report.note(
        &format!(
            "growth: {total} sends with request ids into {CONVERSATIONS} conversations from empty, no ANALYZE"
        ),
        format!(
            "first tenth {start:.0}/s, last tenth {end:.0}/s: end/start {:.2} ({} errors, {:.1} s in all, {} messages per conversation at the end)",
            end / start.max(1e-9),
            errors.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
            total / CONVERSATIONS as u64
        ),
    );
    Ok(())
}
