//! The history and search scenarios: bulk-seeded conversations of growing depth, paged from
//! both ends, and searched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use messaging_proto::message::v1 as pb;

use crate::report::Report;
use crate::setup::Deployment;
use crate::{load, seed};

/// Seeds one conversation per history depth (10^3, 10^4, 10^5 quick; 10^3, 10^5, 10^6 full)
/// in bulk, then measures ListMessages pages of 50 from the newest and from the oldest end of
/// each, and SearchMessages over all of it (the tenant's messages) with queries of medium and
/// rare words, one and two words, at 1 request in flight.
pub(crate) async fn history_and_search(
    deployment: &Deployment,
    report: &mut Report,
    profile: &str,
    phase: Duration,
    wants: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let sizes: &[u64] = if profile == "full" {
        &[1_000, 100_000, 1_000_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let vocabulary = Arc::new(seed::Vocabulary::new(20_000));
    let (db, keys) = deployment.message_store().await?;
    let ids = deployment
        .create_groups("hilda", &["seeder"], sizes.len())
        .await?;
    let total: u64 = sizes.iter().sum();
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix("seeding messages");
    let seeded = Instant::now();
    let mut done = 0;
    for (id, size) in ids.iter().zip(sizes) {
        let conversation = uuid::Uuid::parse_str(id)?;
        seed::messages(
            &db,
            &keys,
            conversation,
            "seeder",
            *size,
            &vocabulary,
            &|written| bar.set_position(done + written),
        )
        .await?;
        done += size;
    }
    bar.finish_and_clear();
    deployment.analyze().await?;
    report.note(
        "seeded",
        format!(
            "{total} messages (encrypted, indexed) in {:.1} s, {:.0}/s, then ANALYZE",
            seeded.elapsed().as_secs_f64(),
            total as f64 / seeded.elapsed().as_secs_f64()
        ),
    );
    let client = deployment.message_client("hilda");
    if wants("history") {
        let mut pages = Vec::new();
        for (id, size) in ids.iter().zip(sizes) {
            for (label, start_sequence) in [("newest", 0_i64), ("oldest", 50)] {
                let client = client.clone();
                let conversation_id = id.clone();
                let measurement = load(
                    &format!("history {size}, {label} page"),
                    1,
                    phase,
                    move |_| {
                        let mut client = client.clone();
                        let conversation_id = conversation_id.clone();
                        async move {
                            client
                                .list_messages(pb::ListMessagesRequest {
                                    conversation_id,
                                    page_size: 50,
                                    start_sequence,
                                    ..Default::default()
                                })
                                .await
                                .is_ok_and(|page| page.into_inner().messages.len() == 50)
                        }
                    },
                )
                .await;
                pages.push(measurement.p50_ms);
                report.push(measurement);
            }
        }
        let shallowest = pages.iter().copied().fold(f64::INFINITY, f64::min);
        let deepest = pages.iter().copied().fold(0.0, f64::max);
        report.note(
            "history: slowest / fastest page p50",
            format!(
                "{:.2} (target at most 1.5; {:.2} ms / {:.2} ms)",
                deepest / shallowest.max(f64::EPSILON),
                deepest,
                shallowest
            ),
        );
    }
    if wants("search") {
        // Medium words (ranks 100 to 1,000), rare words (5,000 to 20,000), and pairs.
        let mut queries = Vec::new();
        for index in 0..40 {
            queries.push(vocabulary.word(100 + index * 23).to_owned());
            queries.push(vocabulary.word(5_000 + index * 373).to_owned());
            queries.push(format!(
                "{} {}",
                vocabulary.word(100 + index * 17),
                vocabulary.word(300 + index * 31)
            ));
        }
        let queries = Arc::new(queries);
        report.push(
            load(
                &format!("search ({total} messages)"),
                1,
                phase,
                move |index| {
                    let mut client = client.clone();
                    let query =
                        queries[usize::try_from(index).unwrap_or(0) % queries.len()].clone();
                    async move {
                        client
                            .search_messages(pb::SearchMessagesRequest {
                                query,
                                ..Default::default()
                            })
                            .await
                            .is_ok()
                    }
                },
            )
            .await,
        );
    }
    Ok(())
}
