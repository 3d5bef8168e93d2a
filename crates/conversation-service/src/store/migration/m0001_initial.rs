//! Conversations, participants and the audit log.

use messaging_platform::migration::index;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    TenantId,
    Kind,
    Title,
    Description,
    DirectKey,
    CreateRequestId,
    CreatorId,
    CreatedAt,
    UpdaterId,
    UpdatedAt,
    LastActivityAt,
    ArchivedAt,
    ArchiverId,
    DeletedAt,
    DeleterId,
    ParticipantCount,
    Version,
}

#[derive(DeriveIden)]
enum Participants {
    Table,
    TenantId,
    ConversationId,
    UserId,
    Role,
    JoinedAt,
    InviterId,
    RoleUpdatedAt,
    RoleUpdaterId,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    TenantId,
    ConversationId,
    ActorId,
    Action,
    SubjectId,
    Details,
    OccurredAt,
}

fn text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string().not_null().take()
}

fn optional_text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string().null().take()
}

fn time(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .take()
}

fn optional_time(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .null()
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .col(
                        ColumnDef::new(Conversations::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(text(Conversations::TenantId))
                    .col(text(Conversations::Kind))
                    .col(text(Conversations::Title))
                    .col(text(Conversations::Description))
                    .col(optional_text(Conversations::DirectKey))
                    .col(optional_text(Conversations::CreateRequestId))
                    .col(text(Conversations::CreatorId))
                    .col(time(Conversations::CreatedAt))
                    .col(text(Conversations::UpdaterId))
                    .col(time(Conversations::UpdatedAt))
                    .col(time(Conversations::LastActivityAt))
                    .col(optional_time(Conversations::ArchivedAt))
                    .col(optional_text(Conversations::ArchiverId))
                    .col(optional_time(Conversations::DeletedAt))
                    .col(optional_text(Conversations::DeleterId))
                    .col(
                        ColumnDef::new(Conversations::ParticipantCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Conversations::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // DIRECT de-duplication, also under concurrent creation.
        manager
            .create_index(index(
                "conversations_direct_key",
                "conversations",
                &["tenant_id", "direct_key"],
                true,
            ))
            .await?;
        // Idempotent creation per creator.
        manager
            .create_index(index(
                "conversations_create_request",
                "conversations",
                &["tenant_id", "creator_id", "create_request_id"],
                true,
            ))
            .await?;
        // Keyset pagination of channels (JOINABLE/ALL) and purging.
        manager
            .create_index(index(
                "conversations_activity",
                "conversations",
                &["tenant_id", "last_activity_at", "id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "conversations_deleted",
                "conversations",
                &["deleted_at"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Participants::Table)
                    .col(text(Participants::TenantId))
                    .col(
                        ColumnDef::new(Participants::ConversationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(text(Participants::UserId))
                    .col(text(Participants::Role))
                    .col(time(Participants::JoinedAt))
                    .col(text(Participants::InviterId))
                    .col(time(Participants::RoleUpdatedAt))
                    .col(text(Participants::RoleUpdaterId))
                    .primary_key(
                        Index::create()
                            .col(Participants::TenantId)
                            .col(Participants::ConversationId)
                            .col(Participants::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("participants_conversation")
                            .from(Participants::Table, Participants::ConversationId)
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // "My conversations" and membership checks by user.
        manager
            .create_index(index(
                "participants_user",
                "participants",
                &["tenant_id", "user_id", "conversation_id"],
                false,
            ))
            .await?;
        // ListParticipants in join order.
        manager
            .create_index(index(
                "participants_join_order",
                "participants",
                &["tenant_id", "conversation_id", "joined_at", "user_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(ColumnDef::new(AuditLog::Id).uuid().not_null().primary_key())
                    .col(text(AuditLog::TenantId))
                    .col(ColumnDef::new(AuditLog::ConversationId).uuid().not_null())
                    .col(text(AuditLog::ActorId))
                    .col(text(AuditLog::Action))
                    .col(optional_text(AuditLog::SubjectId))
                    .col(text(AuditLog::Details))
                    .col(time(AuditLog::OccurredAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("audit_log_conversation")
                            .from(AuditLog::Table, AuditLog::ConversationId)
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "audit_log_conversation_time",
                "audit_log",
                &["tenant_id", "conversation_id", "occurred_at"],
                false,
            ))
            .await?;
        Ok(())
    }
}
