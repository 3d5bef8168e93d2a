//! `conversations`: one row per conversation, soft-deleted rows included until purged.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    /// `direct`, `group` or `channel`.
    pub kind: String,
    pub title: String,
    pub description: String,
    /// For DIRECT conversations: both user ids in order (unique per tenant); cleared on delete.
    pub direct_key: Option<String>,
    /// The creator's idempotency key (unique per tenant and creator).
    pub create_request_id: Option<String>,
    /// The fingerprint of the creating request, when it had a request id.
    pub create_request_hash: Option<String>,
    pub creator_id: String,
    pub created_at: DateTime<Utc>,
    pub updater_id: String,
    pub updated_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    pub archiver_id: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleter_id: Option<String>,
    pub participant_count: i32,
    /// Incremented by every change; the etag.
    pub version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
