//! The fence: read-your-writes across the two services. Each request first learns
//! conversation-service's event head and waits until this replica's follower has processed
//! conversation-service's events through it; concurrent requests share one round trip.

use messaging_platform::ApiError;
use messaging_platform::ApiResult;
use messaging_platform::auth::ANY_TENANT;
use messaging_proto::conversation::v1 as pb;

use super::{ConversationGate, FenceWaiter, unavailable};

impl ConversationGate {
    /// Records that this replica has processed conversation-service's events through
    /// `position` (copied them and dropped what they make stale).
    pub fn followed_through(&self, position: i64) {
        self.followed.send_replace(position);
    }

    /// Waits until this replica has processed every event of a change conversation-service
    /// acknowledged before this call: asks for conversation-service's event head, then waits
    /// for the follower to pass it. Concurrent callers share one round trip (a fence serves
    /// every caller that arrived before it started). UNAVAILABLE when conversation-service does
    /// not answer, or its events do not arrive, within `conversation_service_timeout`.
    pub async fn fence(&self) -> ApiResult<()> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.fences
            .send(sender)
            .map_err(|_| ApiError::Unavailable("shutting down".to_owned()))?;
        receiver
            .await
            .map_err(|_| ApiError::Unavailable("shutting down".to_owned()))?
            .map_err(ApiError::Unavailable)
    }

    pub(super) async fn fence_once(&self) -> Result<(), String> {
        let request = self
            .request(ANY_TENANT, "message-service", pb::GetEventHeadRequest {})
            .map_err(|error| error.to_string())?;
        let head = self
            .client
            .clone()
            .get_event_head(request)
            .await
            .map_err(|status| match unavailable(&status) {
                ApiError::Unavailable(message) => message,
                other => other.to_string(),
            })?
            .into_inner()
            .position
            .parse::<i64>()
            .map_err(|_| "conversation-service sent an unreadable position".to_owned())?;
        let mut followed = self.followed.subscribe();
        match tokio::time::timeout(self.timeout, followed.wait_for(|through| *through >= head))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            _ => {
                tracing::warn!(
                    head,
                    followed = *self.followed.borrow(),
                    "conversation-service's events are late"
                );
                Err(
                    "conversation-service's changes are not yet visible here; retry later"
                        .to_owned(),
                )
            }
        }
    }
}

/// Serves fences: each round trip answers every request that was waiting when it started.
pub(super) async fn run_fences(
    gate: ConversationGate,
    mut waiting: tokio::sync::mpsc::UnboundedReceiver<FenceWaiter>,
) {
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = waiting.try_recv() {
            batch.push(next);
        }
        let outcome = gate.fence_once().await;
        for waiter in batch {
            let _ = waiter.send(outcome.clone());
        }
    }
}
