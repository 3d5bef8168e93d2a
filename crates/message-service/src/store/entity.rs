//! SeaORM entities of message-service's schema. Every table carries `tenant_id`, and every
//! query filters on it.

/// `messages`: one row per message; tombstones keep id, sequence, sender and times only.
pub mod message {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: String,
        pub conversation_id: Uuid,
        /// Gap-free position in the conversation.
        pub sequence: i64,
        pub sender_id: String,
        /// `text`, `encrypted`, or `none` (tombstones).
        pub content_kind: String,
        pub text: Option<String>,
        pub ciphertext: Option<Vec<u8>>,
        pub cipher_algorithm: Option<String>,
        pub cipher_key_id: Option<String>,
        /// Thread root, for replies.
        pub parent_id: Option<Uuid>,
        /// JSON array of user ids.
        pub mention_ids: String,
        /// JSON object.
        pub metadata: String,
        pub has_attachments: bool,
        pub reply_count: i32,
        pub last_reply_at: Option<DateTime<Utc>>,
        pub request_id: Option<String>,
        /// Fingerprint of the send request, for idempotent retries.
        pub payload_hash: String,
        pub created_at: DateTime<Utc>,
        pub edited_at: Option<DateTime<Utc>>,
        pub deleted_at: Option<DateTime<Utc>>,
        /// How many earlier versions are kept.
        pub revision_count: i32,
        /// Data key version of `sealed`: `None` nothing to seal, 0 plaintext columns.
        pub key_version: Option<i32>,
        /// Text and metadata sealed with the tenant's data key (encryption at rest).
        pub sealed: Option<Vec<u8>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `message_revisions`: the content a message had before each edit.
pub mod revision {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message_revisions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub revision: i32,
        pub content_kind: String,
        pub text: Option<String>,
        pub ciphertext: Option<Vec<u8>>,
        pub cipher_algorithm: Option<String>,
        pub cipher_key_id: Option<String>,
        pub created_at: DateTime<Utc>,
        /// As on messages.
        pub key_version: Option<i32>,
        /// The text sealed with the tenant's data key.
        pub sealed: Option<Vec<u8>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `reactions`: one row per user, emoji and message.
pub mod reaction {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reactions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub emoji: String,
        pub conversation_id: Uuid,
        pub created_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `read_states`: each user's read watermark per conversation.
pub mod read_state {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "read_states")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub last_read_sequence: i64,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `conversation_sequences`: the last sequence handed out per conversation. Incrementing it
/// locks the row until commit, so concurrent senders are numbered one after the other and a
/// rolled-back send gives its number back: sequences are gap-free.
pub mod sequence {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversation_sequences")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: Uuid,
        pub last_sequence: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `mentions`: who is mentioned where, for unread mention counts by sequence range.
pub mod mention {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mentions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        pub sender_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `deletions`: the sequences of deleted messages, so unread counts subtract them by range.
pub mod deletion {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deletions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        pub sender_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `tenant_keys`: each tenant's data keys (by version) and search key, wrapped by the master
/// key. The row of tenant "" and kind `check` proves the configured master key is the one the
/// database was written with.
pub mod tenant_key {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        pub wrapped: Vec<u8>,
        pub created_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `search_index`: the blind index. One row per keyed word token and message, with the word's
/// weight in that message (term frequency, normalised by length, times 1,000). Keyed by token,
/// then conversation: a search reads one token's entries in the caller's conversations only.
pub mod search_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "search_index")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub token: Vec<u8>,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: Uuid,
        pub weight: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `participants`: who participates in which conversation, with which role, as the copied
/// events of conversation-service say (the projection Subscribe streams decide from).
pub mod participant {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "participants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: Uuid,
        /// `ROLE_OWNER`, `ROLE_ADMIN`, ... as in the events.
        pub role: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `attachments`: one row per upload; the content is in object storage (`crate::blobs`).
pub mod attachment {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "attachments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub conversation_id: Uuid,
        pub uploader_id: String,
        /// The message that carries it.
        pub message_id: Option<Uuid>,
        /// Its place among the message's attachments.
        pub position: i32,
        /// The file name: sealed with data key `key_version`, or UTF-8 when that is 0.
        pub file_name: Vec<u8>,
        /// Data key version of the name and of the content's frames; 0: not encrypted.
        pub key_version: i32,
        pub declared_type: String,
        pub content_type: String,
        pub size_bytes: i64,
        pub sha256: String,
        pub uploaded_bytes: i64,
        /// `uploading`, `pending`, `clean` or `infected`.
        pub state: String,
        /// Random name of its objects.
        pub storage_key: String,
        /// JSON array of `{key, frames}`, in order.
        pub segments: String,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        /// When its message was deleted (or it was abandoned): its objects are to be removed.
        pub deleted_at: Option<DateTime<Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `erasures`: one row per erased user, the latest run of its erasure job.
pub mod erasure {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "erasures")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub requester_id: String,
        /// The step the job is at (`crate::domain::compliance::Step`), `done` at the end.
        pub step: String,
        pub messages_erased: i64,
        pub reactions_erased: i64,
        pub attachments_erased: i64,
        pub participations_erased: i64,
        pub events_erased: i64,
        pub started_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        pub finished_at: Option<DateTime<Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `compliance_audit`: exports, erasures and retention changes; never content.
pub mod audit {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "compliance_audit")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: String,
        pub actor_id: String,
        pub action: String,
        pub subject_id: String,
        pub at: DateTime<Utc>,
        /// JSON object of strings.
        pub details: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `retention_policies`: per tenant (conversation id nil) and per conversation (an override).
pub mod retention {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "retention_policies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: Uuid,
        /// 0: keep forever.
        pub message_days: i32,
        /// 0: keep forever.
        pub tombstone_days: i32,
        pub updater_id: String,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `conversation_purges`: conversations purged by conversation-service whose data this service
/// is still deleting (see `crate::store::compliance`).
pub mod purge {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversation_purges")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub conversation_id: Uuid,
        /// When conversation-service purged it.
        pub purged_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
