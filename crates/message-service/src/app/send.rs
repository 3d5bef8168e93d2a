//! SendMessage.

use messaging_platform::{ApiResult, Caller};

use super::Messages;
use crate::domain::Action;
use crate::domain::{MessageView, NewMessage};
use crate::store::Sent;

impl Messages {
    /// SendMessage: idempotent per sender, conversation and request id (the platform's
    /// idempotency rule). Each piece of work happens once: one permission check (after one
    /// fence), one batched mention check, one transaction; the message returned is the one
    /// stored, never sealed and opened again.
    pub async fn send(&self, caller: &Caller, new: NewMessage) -> ApiResult<MessageView> {
        self.limits.check_write(caller)?;
        self.gate
            .require(caller, new.conversation, Action::Post)
            .await?;
        self.check_mentions(caller, new.conversation, "mention_ids", &new.mentions)
            .await?;
        let sent = self
            .store
            .send(&caller.tenant_id, &caller.user_id, &new, &new.fingerprint())
            .await?;
        match sent {
            // A new message has no reactions yet.
            Sent::New(message) => Ok(MessageView {
                message,
                reactions: Vec::new(),
            }),
            Sent::Retried {
                message,
                stored_fingerprint,
                fingerprint,
            } => {
                let message = messaging_platform::idempotency::replay(
                    Some(&stored_fingerprint),
                    &fingerprint,
                    message,
                )?;
                self.view(caller, message).await
            }
        }
    }
}
