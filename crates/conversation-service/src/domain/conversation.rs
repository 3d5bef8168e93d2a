//! A conversation and its participants as the use cases see them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Kind, Role};

/// A conversation (live or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// UUIDv7.
    pub id: Uuid,
    /// The tenant it belongs to.
    pub tenant_id: String,
    /// Fixed at creation.
    pub kind: Kind,
    /// Required unless DIRECT.
    pub title: String,
    /// Free text.
    pub description: String,
    /// For a live DIRECT conversation: the pair's de-duplication key.
    pub direct_key: Option<String>,
    /// The creator's idempotency key.
    pub create_request_id: Option<messaging_platform::RequestId>,
    /// The fingerprint of the creating request (for the idempotency rule).
    pub create_request_hash: Option<String>,
    /// Who created it.
    pub creator_id: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Who changed it last.
    pub updater_id: String,
    /// When.
    pub updated_at: DateTime<Utc>,
    /// The newest change to it or its participants (listings sort by it).
    pub last_activity_at: DateTime<Utc>,
    /// When it was archived, if it is.
    pub archived_at: Option<DateTime<Utc>>,
    /// Who archived it.
    pub archiver_id: Option<String>,
    /// When it was deleted, if it is.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Who deleted it.
    pub deleter_id: Option<String>,
    /// How many participants it has.
    pub participant_count: i32,
    /// Bumped by every change: the etag.
    pub version: i64,
}

impl Conversation {
    /// Whether it is archived.
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }

    /// Marks it as changed by `actor` at `at` (new etag, newest activity).
    pub fn touch(&mut self, actor: &str, at: DateTime<Utc>) {
        actor.clone_into(&mut self.updater_id);
        self.updated_at = at;
        self.last_activity_at = at;
        self.version += 1;
    }
}

/// A user's participation in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The tenant.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: Uuid,
    /// The user.
    pub user_id: String,
    /// Its role.
    pub role: Role,
    /// When it joined or was added.
    pub joined_at: DateTime<Utc>,
    /// Who added it (itself when it joined).
    pub inviter_id: String,
    /// When its role last changed.
    pub role_updated_at: DateTime<Utc>,
    /// Who changed it.
    pub role_updater_id: String,
}

impl Participant {
    /// `user` added to `conversation` as `role` by `inviter` at `at`.
    pub fn new(
        conversation: &Conversation,
        user: &str,
        role: Role,
        inviter: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            tenant_id: conversation.tenant_id.clone(),
            conversation_id: conversation.id,
            user_id: user.to_owned(),
            role,
            joined_at: at,
            inviter_id: inviter.to_owned(),
            role_updated_at: at,
            role_updater_id: inviter.to_owned(),
        }
    }
}
