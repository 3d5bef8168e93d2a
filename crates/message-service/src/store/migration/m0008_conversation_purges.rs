//! Conversations conversation-service purged (its `conversation.purged` event), whose messages
//! the compliance job still has to delete: a row stays until everything is gone, so the purge
//! resumes after a restart.

use sea_orm_migration::prelude::*;

use super::m0001_messages::{table, text, time, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(table(
                "conversation_purges",
                vec![
                    text("tenant_id"),
                    uuid("conversation_id"),
                    time("purged_at"),
                ],
                &["tenant_id", "conversation_id"],
            ))
            .await
    }
}
