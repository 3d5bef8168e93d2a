//! The event outbox and the relay's state.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    EventId,
    TenantId,
    ConversationId,
    ActorId,
    Kind,
    OccurredAt,
    Payload,
    Position,
}

#[derive(DeriveIden)]
enum EventRelay {
    Table,
    Name,
    LastPosition,
    PrunedThrough,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(
                        ColumnDef::new(Events::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Events::EventId)
                            .uuid()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Events::TenantId).string().not_null())
                    .col(ColumnDef::new(Events::ConversationId).uuid().not_null())
                    .col(ColumnDef::new(Events::ActorId).string().not_null())
                    .col(ColumnDef::new(Events::Kind).string().not_null())
                    .col(
                        ColumnDef::new(Events::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Events::Payload).blob().not_null())
                    .col(
                        ColumnDef::new(Events::Position)
                            .big_integer()
                            .null()
                            .unique_key(),
                    )
                    .to_owned(),
            )
            .await?;
        // Replay by tenant from a position.
        manager
            .create_index(
                Index::create()
                    .name("events_tenant_position")
                    .table(Events::Table)
                    .col(Events::TenantId)
                    .col(Events::Position)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventRelay::Table)
                    .col(
                        ColumnDef::new(EventRelay::Name)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(EventRelay::LastPosition)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EventRelay::PrunedThrough)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(EventRelay::Table)
                    .columns([
                        EventRelay::Name,
                        EventRelay::LastPosition,
                        EventRelay::PrunedThrough,
                    ])
                    .values_panic(["relay".into(), 0_i64.into(), 0_i64.into()])
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
