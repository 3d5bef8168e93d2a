//! Compliance: erasure jobs, the compliance audit log and retention policies.

use messaging_platform::migration::index;
use sea_orm_migration::prelude::*;

use super::m0001_messages::{big, int, optional_time, table, text, time, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(table(
                "erasures",
                vec![
                    text("tenant_id"),
                    text("user_id"),
                    text("requester_id"),
                    text("step"),
                    big("messages_erased"),
                    big("reactions_erased"),
                    big("attachments_erased"),
                    big("participations_erased"),
                    big("events_erased"),
                    time("started_at"),
                    time("updated_at"),
                    optional_time("finished_at"),
                ],
                &["tenant_id", "user_id"],
            ))
            .await?;
        manager
            .create_table(table(
                "compliance_audit",
                vec![
                    uuid("id"),
                    text("tenant_id"),
                    text("actor_id"),
                    text("action"),
                    text("subject_id"),
                    time("at"),
                    ColumnDef::new(Alias::new("details"))
                        .text()
                        .not_null()
                        .take(),
                ],
                &["id"],
            ))
            .await?;
        manager
            .create_index(index(
                "compliance_audit_tenant_time",
                "compliance_audit",
                &["tenant_id", "at", "id"],
                false,
            ))
            .await?;
        manager
            .create_table(table(
                "retention_policies",
                vec![
                    text("tenant_id"),
                    uuid("conversation_id"),
                    int("message_days"),
                    int("tombstone_days"),
                    text("updater_id"),
                    time("updated_at"),
                ],
                &["tenant_id", "conversation_id"],
            ))
            .await?;
        // Retention finds expired messages by time; erasure finds a user's by sender.
        manager
            .create_index(index(
                "messages_created",
                "messages",
                &["tenant_id", "created_at"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "messages_tenant_sender",
                "messages",
                &["tenant_id", "sender_id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "events_actor",
                "events",
                &["tenant_id", "actor_id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "mentions_user",
                "mentions",
                &["tenant_id", "user_id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "read_states_user",
                "read_states",
                &["tenant_id", "user_id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "reactions_user",
                "reactions",
                &["tenant_id", "user_id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "attachments_uploader",
                "attachments",
                &["tenant_id", "uploader_id"],
                false,
            ))
            .await?;
        Ok(())
    }
}
