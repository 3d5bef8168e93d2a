//! `audit_log`: who changed what and when, one row per mutation, written in the mutation's
//! transaction.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub conversation_id: Uuid,
    pub actor_id: String,
    /// For example `conversation.created` or `participant.role_changed`.
    pub action: String,
    /// The participant acted on, if any.
    pub subject_id: Option<String>,
    /// Small JSON object with the change's details.
    pub details: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
