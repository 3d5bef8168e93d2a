//! AddReaction, RemoveReaction and ListReactions.

use chrono::{DateTime, Utc};
use messaging_platform::time::now;
use messaging_platform::{ApiError, ApiResult, Caller, pagination};
use uuid::Uuid;

use super::Messages;
use crate::domain::Action;
use crate::domain::{Reaction, ReactionSummary};

impl Messages {
    /// AddReaction (`add`) and RemoveReaction; both idempotent. Returns the message's
    /// reactions after.
    pub async fn react(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        emoji: &str,
        add: bool,
    ) -> ApiResult<Vec<ReactionSummary>> {
        self.limits.check_write(caller)?;
        let tenant = &caller.tenant_id;
        let message = self
            .permitted_message(caller, conversation, id, Action::React)
            .await?;
        if message.is_deleted() {
            return Err(ApiError::FailedPrecondition(
                "the message is deleted".to_owned(),
            ));
        }
        let reaction = Reaction {
            conversation,
            message: id,
            user: caller.user_id.to_string(),
            emoji: emoji.to_owned(),
            created_at: now(),
        };
        self.store.react(tenant, &reaction, add).await?;
        Ok(self.view(caller, message).await?.reactions)
    }

    /// ListReactions.
    pub async fn reactions(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        emoji: Option<&str>,
        page_size: u64,
        page_token: &str,
    ) -> ApiResult<(Vec<Reaction>, String)> {
        self.permitted_message(caller, conversation, id, Action::Read)
            .await?;
        let tenant = &caller.tenant_id;
        let fingerprint =
            pagination::fingerprint(&["reactions", &id.to_string(), emoji.unwrap_or("")]);
        let after: Option<(i64, String, String)> =
            pagination::decode("page_token", page_token, &fingerprint)?;
        let after = match after {
            Some((micros, user, emoji)) => Some((
                DateTime::<Utc>::from_timestamp_micros(micros)
                    .ok_or_else(|| ApiError::invalid("page_token", "is not a valid page token"))?,
                user,
                emoji,
            )),
            None => None,
        };
        let reactions = self
            .store
            .reactions(tenant, id, emoji, after, page_size + 1)
            .await?;
        Ok(pagination::finish(
            reactions,
            page_size,
            &fingerprint,
            |last| {
                (
                    last.created_at.timestamp_micros(),
                    last.user.clone(),
                    last.emoji.clone(),
                )
            },
        ))
    }
}
