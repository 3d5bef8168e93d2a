//! The attachment sweeper: one task per replica that scans pending attachments and removes
//! the objects of deleted and abandoned ones. It runs every `sweep_interval`, and at once when
//! an upload waits for its scan or a message with attachments is deleted. Replicas sweeping at
//! the same time do no harm: a verdict moves an attachment out of `pending` once, and removing
//! objects that are gone already succeeds.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::Messages;

/// Attachments scanned, or removed, per round.
const BATCH: u64 = 32;

/// Runs until `closing`; a round in progress completes.
pub async fn sweep(app: Messages, interval: Duration, closing: CancellationToken) {
    let Some(wake) = app.sweep_signal() else {
        return;
    };
    loop {
        let busy = round(&app).await;
        if closing.is_cancelled() {
            return;
        }
        if busy {
            continue;
        }
        tokio::select! {
            () = closing.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One round; whether a full batch was done (so that more may be waiting).
async fn round(app: &Messages) -> bool {
    let scanned = app.scan_pending(BATCH).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "scanning attachments failed; retrying at the next sweep");
        0
    });
    let removed = app.remove_discarded(BATCH).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "removing attachment objects failed; retrying at the next sweep");
        0
    });
    if removed > 0 {
        tracing::debug!(removed, "removed the objects of deleted attachments");
    }
    scanned as u64 == BATCH || removed as u64 == BATCH
}
