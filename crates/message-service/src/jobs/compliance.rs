//! The compliance job: one task per replica that resumes unfinished erasures (at start-up, and
//! after a failure), deletes the data of conversations conversation-service purged, and
//! enforces retention policies, every `compliance.interval`. Replicas
//! doing the same at once do no harm: every batch is idempotent and locks the rows it changes.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::Compliance;

/// Runs until `closing`; a round in progress completes.
pub async fn run(app: Compliance, interval: Duration, closing: CancellationToken) {
    loop {
        if let Err(error) = app.resume_erasures().await {
            tracing::warn!(%error, "resuming erasures failed; retrying at the next round");
        }
        if let Err(error) = app.purge_conversations().await {
            tracing::warn!(%error, "purging conversations failed; retrying at the next round");
        }
        match app.enforce_retention().await {
            Ok((0, 0)) => {}
            Ok((expired, removed)) => {
                tracing::info!(expired, removed, "retention purged messages and tombstones");
            }
            Err(error) => tracing::warn!(%error, "retention failed; retrying at the next round"),
        }
        tokio::select! {
            () = closing.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
