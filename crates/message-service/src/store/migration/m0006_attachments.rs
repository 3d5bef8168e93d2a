//! Attachments: one row per upload, its content's layout in object storage, and the message
//! that carries it.

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
                "attachments",
                vec![
                    text("tenant_id"),
                    uuid("id"),
                    uuid("conversation_id"),
                    text("uploader_id"),
                    ColumnDef::new(Alias::new("message_id"))
                        .uuid()
                        .null()
                        .take(),
                    int("position"),
                    ColumnDef::new(Alias::new("file_name"))
                        .blob()
                        .not_null()
                        .take(),
                    int("key_version"),
                    text("declared_type"),
                    text("content_type"),
                    big("size_bytes"),
                    text("sha256"),
                    big("uploaded_bytes"),
                    text("state"),
                    text("storage_key"),
                    text("segments"),
                    time("created_at"),
                    time("updated_at"),
                    optional_time("deleted_at"),
                ],
                &["tenant_id", "id"],
            ))
            .await?;
        // A message's attachments, in order.
        manager
            .create_index(index(
                "attachments_message",
                "attachments",
                &["tenant_id", "message_id", "position"],
                false,
            ))
            .await?;
        // The sweeper: deleted, abandoned and unscanned attachments.
        manager
            .create_index(index(
                "attachments_sweep",
                "attachments",
                &["state", "updated_at"],
                false,
            ))
            .await?;
        Ok(())
    }
}
