//! SendMessage.

use messaging_platform::{ApiResult, Caller};

use super::Messages;
use crate::domain::Action;
use crate::domain::{MessageView, NewMessage};
use crate::events::Rendered;
use crate::store;

/// What SendMessage answers.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The message as the caller sees it.
    pub view: MessageView,
    /// For a message this call stored: the message as its event carried it, which the response
    /// returns as is (a retry has none: its message may have changed since).
    pub rendered: Option<Rendered>,
}

impl Messages {
    /// SendMessage: idempotent per sender, conversation and request id (the platform's
    /// idempotency rule). Each piece of work happens once: one permission check (after one
    /// fence), one batched mention check, one transaction, one rendering for the event and the
    /// response; the message returned is the one stored, never sealed and opened again.
    pub async fn send(&self, caller: &Caller, new: NewMessage) -> ApiResult<Sent> {
        self.limits.check_write(caller)?;
        if !new.attachments.is_empty() {
            let most = self
                .files()?
                .settings
                .limits(&caller.tenant_id)
                .max_per_message;
            if new.attachments.len() > most {
                return Err(messaging_platform::ApiError::invalid(
                    "attachment_ids",
                    format!("at most {most} attachments per message"),
                ));
            }
        }
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
            store::Sent::New { message, rendered } => Ok(Sent {
                view: MessageView {
                    message,
                    reactions: Vec::new(),
                },
                rendered: Some(rendered),
            }),
            store::Sent::Retried {
                message,
                stored_fingerprint,
                fingerprint,
            } => {
                let message = messaging_platform::idempotency::replay(
                    Some(&stored_fingerprint),
                    &fingerprint,
                    message,
                )?;
                Ok(Sent {
                    view: self.view(caller, message).await?,
                    rendered: None,
                })
            }
        }
    }
}
