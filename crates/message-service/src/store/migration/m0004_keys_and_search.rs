//! Encryption at rest and search: tenant keys, sealed columns on messages and revisions, and
//! the blind search index.

use messaging_platform::migration::index;
use sea_orm_migration::prelude::*;

use super::m0001_messages::{int, table, text, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn blob(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).blob().not_null().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(table(
                "tenant_keys",
                vec![
                    text("tenant_id"),
                    text("kind"),
                    int("version"),
                    blob("wrapped"),
                    super::m0001_messages::time("created_at"),
                ],
                &["tenant_id", "kind", "version"],
            ))
            .await?;
        manager
            .create_table(table(
                "search_index",
                vec![
                    text("tenant_id"),
                    blob("token"),
                    uuid("conversation_id"),
                    uuid("message_id"),
                    ColumnDef::new(Alias::new("weight"))
                        .big_integer()
                        .not_null()
                        .take(),
                ],
                &["tenant_id", "token", "conversation_id", "message_id"],
            ))
            .await?;
        // Replacing a message's tokens on edit and delete.
        manager
            .create_index(index(
                "search_index_message",
                "search_index",
                &["tenant_id", "message_id"],
                false,
            ))
            .await?;
        for name in ["messages", "message_revisions"] {
            // NULL: nothing to seal (tombstones, end-to-end payloads without metadata);
            // 0: stored in plaintext (encryption off); n: sealed with data key version n.
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(name))
                        .add_column(ColumnDef::new(Alias::new("key_version")).integer().null())
                        .take(),
                )
                .await?;
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(name))
                        .add_column(ColumnDef::new(Alias::new("sealed")).blob().null())
                        .take(),
                )
                .await?;
        }
        // Rows written before this migration hold plaintext: re-encryption seals them.
        manager
            .exec_stmt(
                Query::update()
                    .table(Alias::new("messages"))
                    .value(Alias::new("key_version"), 0)
                    .and_where(Expr::col(Alias::new("deleted_at")).is_null())
                    .take(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(Alias::new("message_revisions"))
                    .value(Alias::new("key_version"), 0)
                    .take(),
            )
            .await?;
        // Re-encryption finds the rows of older key versions.
        manager
            .create_index(index(
                "messages_key_version",
                "messages",
                &["tenant_id", "key_version"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "message_revisions_key_version",
                "message_revisions",
                &["tenant_id", "key_version"],
                false,
            ))
            .await?;
        Ok(())
    }
}
