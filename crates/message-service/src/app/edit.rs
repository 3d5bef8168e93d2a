//! UpdateMessage, DeleteMessage and ListMessageRevisions.

use messaging_platform::{ApiResult, Caller, pagination};
use uuid::Uuid;

use super::{Messages, not_found};
use crate::domain::Action;
use crate::domain::{Edit, MessageView, Revision};

impl Messages {
    /// UpdateMessage: the author edits within the edit window; the old content becomes a
    /// revision.
    pub async fn update(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        edit: Edit,
    ) -> ApiResult<MessageView> {
        self.limits.check_write(caller)?;
        self.gate
            .require(caller, conversation, Action::Post)
            .await?;
        if let Some(mentions) = &edit.mentions {
            self.check_mentions(caller, conversation, "mention_ids", mentions)
                .await?;
        }
        let window = self.policy.edit_window;
        let editor = &caller.user_id;
        let rule = |current: &crate::domain::Message, at| edit.apply(current, editor, at, window);
        let edited = self
            .store
            .edit(
                &caller.tenant_id,
                conversation,
                id,
                editor,
                &edit.search_tokens,
                &rule,
            )
            .await?
            .ok_or_else(not_found)?;
        self.view(caller, edited).await
    }

    /// DeleteMessage: the author, or a moderator; the message stays as a tombstone.
    pub async fn delete(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
    ) -> ApiResult<MessageView> {
        self.limits.check_write(caller)?;
        let tenant = &caller.tenant_id;
        let existing = self
            .permitted_message(caller, conversation, id, Action::Read)
            .await?;
        let action = if existing.sender == caller.user_id {
            Action::Post
        } else {
            Action::Moderate
        };
        self.gate.require(caller, conversation, action).await?;
        let deleted = self
            .store
            .delete(tenant, conversation, id, &caller.user_id)
            .await?
            .ok_or_else(not_found)?;
        self.view(caller, deleted).await
    }

    /// ListMessageRevisions: the author, or a moderator.
    pub async fn revisions(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        page_size: u64,
        page_token: &str,
    ) -> ApiResult<(Vec<Revision>, String)> {
        let tenant = &caller.tenant_id;
        let message = self
            .permitted_message(caller, conversation, id, Action::Read)
            .await?;
        if message.sender != caller.user_id {
            self.gate
                .require(caller, conversation, Action::Moderate)
                .await?;
        }
        let fingerprint = pagination::fingerprint(&["revisions", &id.to_string()]);
        let after: i32 = pagination::decode("page_token", page_token, &fingerprint)?.unwrap_or(0);
        let revisions = self
            .store
            .revisions(tenant, conversation, id, after, page_size + 1)
            .await?;
        Ok(pagination::finish(
            revisions,
            page_size,
            &fingerprint,
            |last| last.revision,
        ))
    }
}
