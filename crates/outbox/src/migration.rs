//! The outbox tables, as each service's migrations create them.

use sea_orm_migration::prelude::*;

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
    NatsPublishedThrough,
}

/// Creates `events` and `event_relay` and the relay's state row.
pub async fn create_tables(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
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
        .create_index(messaging_platform::migration::index(
            "events_tenant_position",
            "events",
            &["tenant_id", "position"],
            false,
        ))
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
                .col(
                    ColumnDef::new(EventRelay::NatsPublishedThrough)
                        .big_integer()
                        .not_null()
                        .default(0),
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
                .values_panic([super::store::RELAY.into(), 0_i64.into(), 0_i64.into()])
                .to_owned(),
        )
        .await?;
    Ok(())
}

/// Adds `event_relay.nats_published_through` to outbox tables made before it existed.
pub async fn add_nats_progress(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if manager
        .has_column("event_relay", "nats_published_through")
        .await?
    {
        return Ok(());
    }
    manager
        .alter_table(
            Table::alter()
                .table(EventRelay::Table)
                .add_column(
                    ColumnDef::new(EventRelay::NatsPublishedThrough)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await
}

/// Adds `events_unstamped`: the events the relay has not stamped yet, in id order, so that
/// stamping (`WHERE position IS NULL ORDER BY id LIMIT n`) reads only those rows. Without it the
/// plan depended on statistics: gathered while most rows were unstamped, they made the planner
/// walk the primary key from the oldest event and filter (50,000 rows read to stamp 20, on an
/// outbox of 50,000); see also [`super::store::stamp_within`].
pub async fn add_unstamped_index(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_index(
            Index::create()
                .name("events_unstamped")
                .table(Events::Table)
                .col(Events::Id)
                .and_where(Expr::col(Events::Position).is_null())
                .if_not_exists()
                .to_owned(),
        )
        .await
}
