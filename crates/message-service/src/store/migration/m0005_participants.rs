//! Who participates where, as conversation-service's copied events say: the projection that
//! Subscribe streams decide from, so that a stream's view of membership is the one at each
//! event's position (see `crate::jobs::membership`).

use sea_orm_migration::prelude::*;

use super::m0001_messages::{table, text, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(table(
                "participants",
                vec![
                    text("tenant_id"),
                    text("user_id"),
                    uuid("conversation_id"),
                    text("role"),
                ],
                &["tenant_id", "user_id", "conversation_id"],
            ))
            .await?;
        // Existing copies were made before the projection existed: read conversation-service's
        // retained events again from the start; copies are not repeated (event ids), and the
        // projection applies each source position once.
        manager
            .get_connection()
            .execute_unprepared(
                "DELETE FROM event_relay WHERE name = 'source:conversation-service'",
            )
            .await?;
        Ok(())
    }
}
