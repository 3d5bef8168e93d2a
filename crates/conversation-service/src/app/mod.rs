//! The use cases of conversation-service, one file per group of what a user does: `lifecycle`
//! (create, read, list, update, archive, delete, undelete, purge), `participants` (add,
//! remove, roles, join, leave, transfer ownership) and `permission` (CheckPermission and the
//! event head other services fence on). Each loads what it needs inside one transaction
//! (`crate::store::ConversationTx`), applies the rules of [`crate::domain`], writes the change with its
//! audit row and its event, and commits. Inputs arrive validated from the gRPC adapter.

mod lifecycle;
mod participants;
mod permission;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_outbox::EventBus;
use messaging_platform::{ApiError, ApiResult, Caller};
use uuid::Uuid;

use crate::domain::permissions::{self, Action, Denial};
use crate::domain::{AuditAction, Conversation, ConversationEvent, Participant};
use crate::domain::{Kind, Role};
use crate::store::{ConversationFilter, ConversationReads, ConversationStore, ConversationTx};

/// Limits and windows the use cases enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long a deleted conversation can be restored.
    pub undelete_window: Duration,
    /// Most participants in one conversation.
    pub max_participants: u32,
}

/// A conversation as one caller sees it.
#[derive(Debug, Clone)]
pub struct ConversationView {
    /// The stored row.
    pub row: Conversation,
    /// The caller's role, if a participant.
    pub caller_role: Option<Role>,
    /// For deleted conversations: when they will be purged.
    pub purge_time: Option<DateTime<Utc>>,
}

/// A new conversation's parameters.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// Its kind.
    pub kind: Kind,
    /// Validated title.
    pub title: String,
    /// Validated description.
    pub description: String,
    /// The other participants with their roles (validated, no duplicates, not the caller).
    pub participants: Vec<(String, Role)>,
    /// The creator's idempotency key.
    pub request_id: Option<messaging_platform::RequestId>,
}

impl NewConversation {
    /// The fingerprint of the request, for the idempotency rule.
    pub(crate) fn fingerprint(&self) -> String {
        let mut participants: Vec<String> = self
            .participants
            .iter()
            .map(|(user, role)| format!("{user}\u{0}{}", role.as_str()))
            .collect();
        participants.sort();
        let participants = participants.join("\u{1}");
        messaging_platform::idempotency::fingerprint([
            self.kind.as_str().as_bytes(),
            self.title.as_bytes(),
            self.description.as_bytes(),
            participants.as_bytes(),
        ])
    }
}

/// A conversation listing request.
#[derive(Debug, Clone)]
pub struct ListRequest {
    /// The filters.
    pub filter: ConversationFilter,
    /// Page size.
    pub page_size: u64,
    /// The page token as received.
    pub page_token: String,
}

/// The answer of CheckPermission.
#[derive(Debug, Clone)]
pub struct PermissionAnswer {
    /// The user's role, if a participant.
    pub role: Option<Role>,
    /// Why not, if denied.
    pub denial: Option<Denial>,
    /// The conversation's kind.
    pub kind: Kind,
    /// Whether it is archived.
    pub archived: bool,
}

/// The conversation use cases over one database.
#[derive(Debug, Clone)]
pub struct Conversations {
    store: Arc<dyn ConversationStore>,
    policy: Policy,
    bus: EventBus,
}

/// A conversation loaded for a caller: the row, the caller's participation and the authority
/// the caller acts with (a tenant administrator acts as an owner).
struct Loaded {
    row: Conversation,
    participant: Option<Participant>,
    authority: Option<Role>,
}

impl Loaded {
    fn caller_role(&self) -> Option<Role> {
        self.participant
            .as_ref()
            .map(|participant| participant.role)
    }

    fn authorize(&self, action: Action) -> ApiResult<()> {
        let archived = self.row.archived_at.is_some();
        permissions::check(self.row.kind, archived, self.authority, action).map_err(|denial| {
            match denial {
                Denial::NotParticipant => {
                    ApiError::PermissionDenied("join the conversation first".to_owned())
                }
                Denial::RoleInsufficient => {
                    let required = permissions::required_role(self.row.kind, action)
                        .map_or("a higher role", Role::as_str);
                    ApiError::PermissionDenied(format!("requires the {required} role or higher"))
                }
                Denial::Archived => ApiError::FailedPrecondition(
                    "the conversation is archived: unarchive it first".to_owned(),
                ),
                Denial::NotSupported => ApiError::FailedPrecondition(format!(
                    "not supported for {} conversations",
                    self.row.kind.as_str()
                )),
            }
        })
    }

    fn view(self, purge_time: Option<DateTime<Utc>>) -> ApiResult<ConversationView> {
        let caller_role = self.caller_role();
        Ok(ConversationView {
            row: self.row,
            caller_role,
            purge_time,
        })
    }
}

/// The audit row of a change.
struct Audit<'a> {
    /// What was done.
    action: AuditAction,
    /// To whom, for participant changes.
    subject: Option<&'a str>,
    /// What changed.
    details: serde_json::Value,
}

fn not_found() -> ApiError {
    ApiError::NotFound("conversation")
}

impl Conversations {
    /// The use cases over `store` with `policy`, waking `bus`'s relay after each change.
    pub fn new(store: Arc<dyn ConversationStore>, policy: Policy, bus: EventBus) -> Self {
        Self { store, policy, bus }
    }

    /// The in-process event bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Ends a change to `conversation` made by `caller` at `at`: writes its audit row and its
    /// event, saves the conversation, commits and wakes the relay. Returns the conversation as
    /// stored.
    async fn finish(
        &self,
        transaction: Box<dyn ConversationTx>,
        conversation: &Conversation,
        caller: &Caller,
        at: DateTime<Utc>,
        audit: Audit<'_>,
        event: ConversationEvent<'_>,
    ) -> ApiResult<Conversation> {
        transaction
            .audit(
                conversation,
                &caller.user_id,
                audit.action,
                audit.subject,
                audit.details,
                at,
            )
            .await?;
        transaction
            .event(conversation, &caller.user_id, at, &event)
            .await?;
        let saved = transaction.save_conversation(conversation).await?;
        transaction.commit().await?;
        self.bus.committed();
        Ok(saved)
    }

    fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.policy.undelete_window).unwrap_or(chrono::Duration::MAX)
    }

    /// Loads a live conversation visible to the caller, or NOT_FOUND.
    async fn load(
        &self,
        connection: &dyn ConversationReads,
        caller: &Caller,
        id: Uuid,
        lock: bool,
    ) -> ApiResult<Loaded> {
        let row = connection
            .conversation(&caller.tenant_id, id, lock)
            .await?
            .filter(|row| row.deleted_at.is_none())
            .ok_or_else(not_found)?;
        self.load_row(connection, caller, row).await
    }

    async fn load_row(
        &self,
        connection: &dyn ConversationReads,
        caller: &Caller,
        row: Conversation,
    ) -> ApiResult<Loaded> {
        let kind = row.kind;
        let participant = connection
            .participant(&caller.tenant_id, row.id, &caller.user_id)
            .await?;
        let role = participant.as_ref().map(|participant| participant.role);
        let visible = role.is_some() || kind == Kind::Channel || caller.is_admin;
        if !visible {
            return Err(not_found());
        }
        let authority = if caller.is_admin {
            Some(Role::Owner)
        } else {
            role
        };
        Ok(Loaded {
            row,
            participant,
            authority,
        })
    }
}
