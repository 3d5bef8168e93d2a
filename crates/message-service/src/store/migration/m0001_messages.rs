//! Messages, revisions, reactions, read state, sequences, mentions and deletions.

use messaging_platform::migration::index;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

pub(super) fn text(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).string().not_null().take()
}
pub(super) fn optional_text(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).string().null().take()
}
pub(super) fn uuid(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).uuid().not_null().take()
}
pub(super) fn time(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .timestamp_with_time_zone()
        .not_null()
        .take()
}
pub(super) fn optional_time(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .timestamp_with_time_zone()
        .null()
        .take()
}
pub(super) fn big(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .big_integer()
        .not_null()
        .take()
}
pub(super) fn int(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).integer().not_null().take()
}

pub(super) fn table(
    name: &str,
    columns: Vec<ColumnDef>,
    primary_key: &[&str],
) -> TableCreateStatement {
    let mut statement = Table::create();
    statement.table(Alias::new(name));
    for mut column in columns {
        statement.col(&mut column);
    }
    let mut key = Index::create();
    for column in primary_key {
        key.col(Alias::new(*column));
    }
    statement.primary_key(&mut key);
    statement.take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            table(
                "messages",
                vec![
                    uuid("id"),
                    text("tenant_id"),
                    uuid("conversation_id"),
                    big("sequence"),
                    text("sender_id"),
                    text("content_kind"),
                    ColumnDef::new(Alias::new("text")).text().null().take(),
                    ColumnDef::new(Alias::new("ciphertext"))
                        .blob()
                        .null()
                        .take(),
                    optional_text("cipher_algorithm"),
                    optional_text("cipher_key_id"),
                    ColumnDef::new(Alias::new("parent_id")).uuid().null().take(),
                    ColumnDef::new(Alias::new("mention_ids"))
                        .text()
                        .not_null()
                        .take(),
                    ColumnDef::new(Alias::new("metadata"))
                        .text()
                        .not_null()
                        .take(),
                    ColumnDef::new(Alias::new("has_attachments"))
                        .boolean()
                        .not_null()
                        .take(),
                    int("reply_count"),
                    optional_time("last_reply_at"),
                    optional_text("request_id"),
                    text("payload_hash"),
                    time("created_at"),
                    optional_time("edited_at"),
                    optional_time("deleted_at"),
                    int("revision_count"),
                ],
                &["id"],
            ),
            table(
                "message_revisions",
                vec![
                    text("tenant_id"),
                    uuid("message_id"),
                    int("revision"),
                    text("content_kind"),
                    ColumnDef::new(Alias::new("text")).text().null().take(),
                    ColumnDef::new(Alias::new("ciphertext"))
                        .blob()
                        .null()
                        .take(),
                    optional_text("cipher_algorithm"),
                    optional_text("cipher_key_id"),
                    time("created_at"),
                ],
                &["tenant_id", "message_id", "revision"],
            ),
            table(
                "reactions",
                vec![
                    text("tenant_id"),
                    uuid("message_id"),
                    text("user_id"),
                    text("emoji"),
                    uuid("conversation_id"),
                    time("created_at"),
                ],
                &["tenant_id", "message_id", "user_id", "emoji"],
            ),
            table(
                "read_states",
                vec![
                    text("tenant_id"),
                    uuid("conversation_id"),
                    text("user_id"),
                    big("last_read_sequence"),
                    time("updated_at"),
                ],
                &["tenant_id", "conversation_id", "user_id"],
            ),
            table(
                "conversation_sequences",
                vec![
                    text("tenant_id"),
                    uuid("conversation_id"),
                    big("last_sequence"),
                ],
                &["tenant_id", "conversation_id"],
            ),
            table(
                "mentions",
                vec![
                    text("tenant_id"),
                    uuid("conversation_id"),
                    text("user_id"),
                    big("sequence"),
                    text("sender_id"),
                ],
                &["tenant_id", "conversation_id", "user_id", "sequence"],
            ),
            table(
                "deletions",
                vec![
                    text("tenant_id"),
                    uuid("conversation_id"),
                    big("sequence"),
                    text("sender_id"),
                ],
                &["tenant_id", "conversation_id", "sequence"],
            ),
        ];
        for statement in tables {
            manager.create_table(statement).await?;
        }
        let indexes = [
            // Keyset pages by position; also guarantees one message per position.
            index(
                "messages_position",
                "messages",
                &["tenant_id", "conversation_id", "sequence"],
                true,
            ),
            // Idempotent sends: one message per sender and request id in a conversation.
            index(
                "messages_request",
                "messages",
                &["tenant_id", "conversation_id", "sender_id", "request_id"],
                true,
            ),
            // The sender filter.
            index(
                "messages_sender",
                "messages",
                &["tenant_id", "conversation_id", "sender_id", "sequence"],
                false,
            ),
            // Threads: the replies of a root, by position.
            index(
                "messages_thread",
                "messages",
                &["tenant_id", "conversation_id", "parent_id", "sequence"],
                false,
            ),
            // ListReactions in order.
            index(
                "reactions_message_time",
                "reactions",
                &["tenant_id", "message_id", "created_at"],
                false,
            ),
        ];
        for statement in indexes {
            manager.create_index(statement).await?;
        }
        Ok(())
    }
}
