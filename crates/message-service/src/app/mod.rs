//! The use cases of message-service, one file per group of what a user does: `send`, `edit`
//! (edit, delete, revisions), `read` (get, list, read state, unread counts), `reactions` and
//! `search`. Each asks the conversation gate (`crate::peer`) first, then the store, in domain
//! types only: no rows, no protos, no SQL.

mod attachments;
mod compliance;
mod edit;
mod reactions;
mod read;
mod search;
mod send;

use std::sync::Arc;
use std::time::Duration;

use messaging_platform::{ApiError, ApiResult, Caller, FieldViolations};
use uuid::Uuid;

use crate::domain::Action;
use crate::domain::{Message, MessageView};
use crate::limits::Limits;
use crate::peer::Permissions;
use crate::store::Store;

pub use attachments::Files;
pub use compliance::{
    Compliance, ExportItem, RetentionDue, cutoff, require_admin, retention_status, scopes,
};
pub use read::{ListRequest, MessagePage, Start};
pub use search::{MAX_SEARCH_TERMS, SearchHit, SearchRequest};
pub use send::Sent;

/// Most conversations GetUnreadCounts and SearchMessages cover in one call.
pub const MAX_UNREAD_CONVERSATIONS: usize = 1_000;

/// Limits the use cases enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest body in bytes.
    pub max_body_bytes: usize,
    /// How long authors may edit; `None` means always.
    pub edit_window: Option<Duration>,
}

/// The message use cases.
#[derive(Debug, Clone)]
pub struct Messages {
    store: Arc<dyn Store>,
    gate: Arc<dyn Permissions>,
    policy: Policy,
    limits: Arc<Limits>,
    files: Option<Arc<Files>>,
}

fn not_found() -> ApiError {
    ApiError::NotFound("message")
}

impl Messages {
    /// The use cases over `store`, asking `gate` for permissions.
    pub fn new(
        store: Arc<dyn Store>,
        gate: Arc<dyn Permissions>,
        policy: Policy,
        limits: Arc<Limits>,
    ) -> Self {
        Self {
            store,
            gate,
            policy,
            limits,
            files: None,
        }
    }

    /// The use cases with attachments stored in `files`.
    #[must_use]
    pub fn with_files(mut self, files: Files) -> Self {
        self.files = Some(Arc::new(files));
        self
    }

    /// The configured limits.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Message `id` of `conversation`, once `caller` was found allowed to `action` there
    /// (after a fence); NOT_FOUND when there is no such message.
    async fn permitted_message(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        action: Action,
    ) -> ApiResult<Message> {
        self.gate.require(caller, conversation, action).await?;
        self.store
            .message(&caller.tenant_id, conversation, id)
            .await?
            .ok_or_else(not_found)
    }

    /// `messages` with what `caller` sees of their reactions.
    async fn views(&self, caller: &Caller, messages: Vec<Message>) -> ApiResult<Vec<MessageView>> {
        let ids: Vec<Uuid> = messages.iter().map(|message| message.id).collect();
        let mut reactions = self
            .store
            .summaries(&caller.tenant_id, &ids, &caller.user_id)
            .await?;
        Ok(messages
            .into_iter()
            .map(|message| MessageView {
                reactions: reactions.remove(&message.id).unwrap_or_default(),
                message,
            })
            .collect())
    }

    async fn view(&self, caller: &Caller, message: Message) -> ApiResult<MessageView> {
        let mut views = self.views(caller, vec![message]).await?;
        views
            .pop()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("view vanished")))
    }

    /// Checks that every mentioned user participates in the conversation: one query of the
    /// participant projection (current through the fence the permission check waited for),
    /// and a CheckPermission call only for users the projection does not list (a projection
    /// rebuilt after a long outage may miss old participants).
    async fn check_mentions(
        &self,
        caller: &Caller,
        conversation: Uuid,
        field: &str,
        mentions: &[String],
    ) -> ApiResult<()> {
        if mentions.is_empty() {
            return Ok(());
        }
        let listed = self
            .store
            .participants_among(&caller.tenant_id, conversation, mentions)
            .await?;
        let unlisted: Vec<(usize, &String)> = mentions
            .iter()
            .enumerate()
            .filter(|(_, user)| !listed.contains(*user))
            .collect();
        let checks = unlisted.iter().map(|(_, user)| {
            self.gate
                .is_participant(&caller.tenant_id, user, conversation)
        });
        let answers = futures::future::join_all(checks).await;
        let mut violations = FieldViolations::new();
        for ((index, _), answer) in unlisted.into_iter().zip(answers) {
            if !answer? {
                violations.add(
                    format!("{field}[{index}]"),
                    "is not a participant of the conversation",
                );
            }
        }
        violations.finish()
    }

    /// The given conversations the caller may read (others left out), or, when none are
    /// given, every conversation the caller participates in (at most 1,000).
    async fn readable(&self, caller: &Caller, conversations: Vec<Uuid>) -> ApiResult<Vec<Uuid>> {
        if conversations.is_empty() {
            return self
                .gate
                .joined_conversations(caller, MAX_UNREAD_CONVERSATIONS)
                .await;
        }
        self.gate.fence().await?;
        let checks = conversations
            .iter()
            .map(|id| self.gate.require_fenced(caller, *id, Action::Read));
        let answers = futures::future::join_all(checks).await;
        let mut readable = Vec::new();
        for (id, answer) in conversations.into_iter().zip(answers) {
            match answer {
                Ok(_) => readable.push(id),
                Err(ApiError::NotFound(_) | ApiError::PermissionDenied(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(readable)
    }
}
