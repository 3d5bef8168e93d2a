//! Outbox queries: writing events, stamping positions, replay, pruning, NATS progress.

use chrono::{DateTime, Utc};
use messaging_proto::message::v1 as pb;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

pub use super::entity::event::Model as EventRow;
use super::entity::{event, event_relay};

/// The name of the relay's state row in `event_relay`.
pub const RELAY: &str = "relay";

/// An event to write into the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its unique id.
    pub event_id: Uuid,
    /// The tenant.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: Uuid,
    /// Who caused it.
    pub actor_id: String,
    /// For example `message.created`.
    pub kind: String,
    /// When the change happened.
    pub occurred_at: DateTime<Utc>,
    /// The encoded `messaging.message.v1.Event`, without position.
    pub payload: Vec<u8>,
}

/// Writes an event into the outbox, in the caller's transaction.
pub async fn insert_event<C: ConnectionTrait>(connection: &C, new: NewEvent) -> Result<(), DbErr> {
    event::Entity::insert(active(new))
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

fn active(new: NewEvent) -> event::ActiveModel {
    event::ActiveModel {
        id: sea_orm::NotSet,
        event_id: sea_orm::Set(new.event_id),
        tenant_id: sea_orm::Set(new.tenant_id),
        conversation_id: sea_orm::Set(new.conversation_id),
        actor_id: sea_orm::Set(new.actor_id),
        kind: sea_orm::Set(new.kind),
        occurred_at: sea_orm::Set(new.occurred_at),
        payload: sea_orm::Set(new.payload),
        position: sea_orm::Set(None),
    }
}

/// Writes the event of a change into the outbox, within `connection`'s transaction, its
/// stored payload sealed with `key` when given (encryption at rest).
pub async fn record<C: ConnectionTrait>(
    connection: &C,
    key: Option<&messaging_platform::crypto::DataKey>,
    tenant: &str,
    conversation: Uuid,
    actor: &str,
    at: DateTime<Utc>,
    payload: pb::event::Payload,
) -> Result<(), DbErr> {
    insert_event(
        connection,
        new_event(key, tenant, conversation, actor, at, payload)?,
    )
    .await
}

/// The outbox row of a change's event: a new event id, the encoded event, its payload sealed
/// with `key` when given (encryption at rest).
pub fn new_event(
    key: Option<&messaging_platform::crypto::DataKey>,
    tenant: &str,
    conversation: Uuid,
    actor: &str,
    at: DateTime<Utc>,
    payload: pb::event::Payload,
) -> Result<NewEvent, DbErr> {
    let event_id = Uuid::now_v7();
    let event = pb::Event {
        event_id: event_id.to_string(),
        tenant_id: tenant.to_owned(),
        conversation_id: conversation.to_string(),
        actor_id: actor.to_owned(),
        time: Some(messaging_platform::time::to_timestamp(at)),
        position: String::new(),
        payload: Some(payload),
    };
    let (kind, mut payload) = super::encode(&event);
    if let Some(key) = key {
        payload = super::seal_payload(key, tenant, conversation, event_id, &payload)
            .map_err(|error| DbErr::Custom(format!("sealing an event failed: {error}")))?;
    }
    Ok(NewEvent {
        event_id,
        tenant_id: tenant.to_owned(),
        conversation_id: conversation,
        actor_id: actor.to_owned(),
        kind,
        occurred_at: at,
        payload,
    })
}

/// Writes events into the outbox in their order, in the caller's transaction, a few hundred
/// rows a statement.
pub async fn insert_events<C: ConnectionTrait>(
    connection: &C,
    events: Vec<NewEvent>,
) -> Result<(), DbErr> {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        event::Entity::insert_many(events.by_ref().take(200).map(active))
            .exec_without_returning(connection)
            .await?;
    }
    Ok(())
}

/// The insert of [`events_json`]'s rows, from placeholder `$parameter` (PostgreSQL; see
/// [`messaging_platform::db::json_rows`]): in their order, as [`insert_events`] writes them.
pub fn insert_events_json(parameter: usize) -> String {
    messaging_platform::db::json_rows::insert::<event::Entity>(parameter, &["id"])
}

/// `events` as the parameter of [`insert_events_json`].
pub fn events_json(events: Vec<NewEvent>) -> Result<sea_orm::Value, DbErr> {
    messaging_platform::db::json_rows::encode(events.into_iter().map(active))
}

/// The relay's state: last position handed out, and how far events were pruned.
pub async fn relay_state<C: ConnectionTrait>(connection: &C) -> Result<(i64, i64), DbErr> {
    let state = event_relay::Entity::find_by_id(RELAY.to_owned())
        .one(connection)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("event_relay row".to_owned()))?;
    Ok((state.last_position, state.pruned_through))
}

/// What a stamp did.
#[derive(Debug, Default)]
pub struct Stamped {
    /// The last position handed out before it.
    pub after: i64,
    /// The events it stamped, in position order: positions `after + 1` on, without gaps.
    pub rows: Vec<EventRow>,
}

impl Stamped {
    /// How many events it stamped.
    pub fn count(&self) -> u64 {
        self.rows.len() as u64
    }
}

/// Stamps up to `batch` committed, unstamped events with the next positions, in insertion
/// order. The relay row is locked meanwhile, so replicas stamp one after the other and a
/// visible position implies every lower one is visible too.
pub async fn stamp_events(db: &DatabaseConnection, batch: u64) -> Result<Stamped, DbErr> {
    let transaction = messaging_platform::db::begin_write(db).await?;
    let stamped = stamp_within(&transaction, batch).await?;
    if stamped.rows.is_empty() {
        transaction.rollback().await?;
    } else {
        transaction.commit().await?;
    }
    Ok(stamped)
}

/// [`stamp_events`] within `transaction`, which keeps the relay row locked until it ends: its
/// own events are stamped too, so they are positioned the moment they become visible.
pub async fn stamp_within(
    transaction: &sea_orm::DatabaseTransaction,
    batch: u64,
) -> Result<Stamped, DbErr> {
    use sea_orm::FromQueryResult as _;
    let relay = lock_relay(transaction).await?;
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    let backend = transaction.get_database_backend();
    // One statement numbers the oldest unstamped rows, reading them from the `events_unstamped`
    // index, and returns them. On PostgreSQL its plan must not come from statistics: a plan
    // made while the table was small scanned the whole table once per row stamped, 13 to
    // 548 ms a call as a conversation filled up. So it is planned with sequential scans off
    // (the setting holds for the plan the connection then keeps for the statement, which only
    // ever runs after it): the unstamped rows by the partial index, each row to update by the
    // primary key, whatever the statistics say.
    if backend == sea_orm::DbBackend::Postgres {
        transaction.execute_unprepared(SEQUENTIAL_SCANS_OFF).await?;
    }
    let mut rows = transaction
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            stamp_statement(backend),
            [relay.last_position.into(), limit.into()],
        ))
        .await?
        .iter()
        .map(|row| EventRow::from_query_result(row, ""))
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_by_key(|row| row.position);
    if let Some(last) = rows.last().and_then(|row| row.position) {
        set_relay_column(transaction, event_relay::Column::LastPosition, last).await?;
    }
    Ok(Stamped {
        after: relay.last_position,
        rows,
    })
}

/// The statement that stamps up to `$2` unstamped events with the positions after `$1` and
/// returns them (PostgreSQL, and SQLite 3.35+, whose placeholders are `?1` and `?2`).
/// [`stamp_within`] runs it on PostgreSQL with sequential scans off.
pub fn stamp_statement(backend: sea_orm::DbBackend) -> &'static str {
    match backend {
        sea_orm::DbBackend::Postgres => {
            "WITH batch AS (SELECT id AS stamped_id, row_number() OVER (ORDER BY id) AS n \
             FROM events WHERE position IS NULL ORDER BY id LIMIT $2) \
             UPDATE events SET position = $1 + batch.n FROM batch WHERE events.id = batch.stamped_id \
             RETURNING id, event_id, tenant_id, conversation_id, actor_id, kind, occurred_at, payload, position"
        }
        _ => {
            "WITH batch AS (SELECT id AS stamped_id, row_number() OVER (ORDER BY id) AS n \
             FROM events WHERE position IS NULL ORDER BY id LIMIT ?2) \
             UPDATE events SET position = ?1 + batch.n FROM batch WHERE events.id = batch.stamped_id \
             RETURNING id, event_id, tenant_id, conversation_id, actor_id, kind, occurred_at, payload, position"
        }
    }
}

/// Whether any committed event has no position yet: one probe of the `events_unstamped`
/// index. On PostgreSQL it goes as one simple query after `SET LOCAL enable_seqscan = off`
/// (the query string is one implicit transaction, so the setting holds for the probe and ends
/// with it): planned from statistics gathered while most events were unstamped, the probe
/// scanned the whole outbox, on every fence round. The row the probe finds comes back as
/// the query's row count.
pub async fn has_unstamped(db: &DatabaseConnection) -> Result<bool, DbErr> {
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        let probe = format!("{SEQUENTIAL_SCANS_OFF}; {UNSTAMPED_PROBE}");
        return Ok(db.execute_unprepared(&probe).await?.rows_affected() > 0);
    }
    Ok(event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .filter(event::Column::Position.is_null())
        .limit(1)
        .into_tuple::<i64>()
        .one(db)
        .await?
        .is_some())
}

/// The probe of [`has_unstamped`] on PostgreSQL.
pub const UNSTAMPED_PROBE: &str = "SELECT 1 FROM events WHERE position IS NULL LIMIT 1";

/// What the relay's statements are planned under on PostgreSQL, in their transaction.
pub const SEQUENTIAL_SCANS_OFF: &str = "SET LOCAL enable_seqscan = off";

/// Stamps every committed, unstamped event (in batches); returns how many.
pub async fn stamp_all(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let stamped = stamp_events(db, STAMP_ALL_BATCH).await?.count();
        total += stamped;
        if stamped < STAMP_ALL_BATCH {
            return Ok(total);
        }
    }
}

const STAMP_ALL_BATCH: u64 = 500;

/// Stamped events after `after`, in position order: all tenants when `tenant` is `None`.
pub async fn events_after<C: ConnectionTrait>(
    connection: &C,
    tenant: Option<&str>,
    after: i64,
    through: Option<i64>,
    limit: u64,
) -> Result<Vec<EventRow>, DbErr> {
    let mut query = event::Entity::find().filter(event::Column::Position.gt(after));
    if let Some(tenant) = tenant {
        query = query.filter(event::Column::TenantId.eq(tenant));
    }
    if let Some(through) = through {
        query = query.filter(event::Column::Position.lte(through));
    }
    query
        .order_by_asc(event::Column::Position)
        .limit(limit)
        .all(connection)
        .await
}

/// Deletes stamped events that occurred before `before` (a prefix of positions), and records
/// how far: resuming from before that point then needs a resync. Returns how many went.
pub async fn prune_events(
    db: &DatabaseConnection,
    before: DateTime<Utc>,
    keep_after: Option<i64>,
) -> Result<u64, DbErr> {
    let transaction = messaging_platform::db::begin_write(db).await?;
    let newest_old: Option<i64> = event::Entity::find()
        .select_only()
        .column_as(event::Column::Position.max(), "position")
        .filter(event::Column::Position.is_not_null())
        .filter(event::Column::OccurredAt.lt(before))
        .into_tuple::<Option<i64>>()
        .one(&transaction)
        .await?
        .flatten();
    // Never past what NATS has acknowledged, when events go there too.
    let Some(through) =
        newest_old.map(|newest| keep_after.map_or(newest, |keep| std::cmp::min(newest, keep)))
    else {
        transaction.rollback().await?;
        return Ok(0);
    };
    let deleted = event::Entity::delete_many()
        .filter(event::Column::Position.lte(through))
        .exec(&transaction)
        .await?
        .rows_affected;
    event_relay::Entity::update_many()
        .col_expr(event_relay::Column::PrunedThrough, Expr::value(through))
        .filter(event_relay::Column::Name.eq(RELAY))
        .filter(event_relay::Column::PrunedThrough.lt(through))
        .exec(&transaction)
        .await?;
    transaction.commit().await?;
    Ok(deleted)
}

/// Publishes, under the relay row's lock, the stamped events after the NATS progress mark
/// through `publish` (which must return only once JetStream acknowledged them all), then moves
/// the mark. Replicas take turns; a relay killed in between publishes again from the mark,
/// and JetStream drops the repeats by message id. `recent` holds events this replica's relay
/// just published on the bus (in position order): when they follow the mark without a gap,
/// they are published as they are instead of read and opened again. Returns how many were
/// published.
pub async fn publish_pending<F, Fut>(
    db: &DatabaseConnection,
    bus: &super::EventBus,
    batch: u64,
    recent: &[(EventRow, super::BusEvent)],
    publish: F,
) -> Result<u64, DbErr>
where
    F: FnOnce(Vec<(EventRow, super::BusEvent)>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let transaction = messaging_platform::db::begin_write(db).await?;
    let relay = lock_relay(&transaction).await?;
    let mark = relay.nats_published_through;
    let limit = usize::try_from(batch).unwrap_or(usize::MAX);
    let following: Vec<(EventRow, super::BusEvent)> = recent
        .iter()
        .skip_while(|(row, _)| row.position != Some(mark + 1))
        .zip(mark + 1..)
        .take_while(|((row, _), position)| row.position == Some(*position))
        .map(|(pair, _)| pair.clone())
        .take(limit)
        .collect();
    let (decoded, through) =
        if let Some(through) = following.last().and_then(|(row, _)| row.position) {
            (following, through)
        } else {
            let rows = events_after(&transaction, None, mark, None, batch).await?;
            let Some(through) = rows.last().and_then(|row| row.position) else {
                transaction.rollback().await?;
                return Ok(0);
            };
            let mut decoded = Vec::with_capacity(rows.len());
            for row in rows {
                // Keys come through this transaction: on SQLite it holds the only connection.
                if let Some(event) = super::decode_within(bus, Some(&transaction), &row).await {
                    decoded.push((row, event));
                }
            }
            (decoded, through)
        };
    let count = u64::try_from(through - mark).unwrap_or(0);
    publish(decoded).await.map_err(DbErr::Custom)?;
    set_relay_column(
        &transaction,
        event_relay::Column::NatsPublishedThrough,
        through,
    )
    .await?;
    transaction.commit().await?;
    Ok(count)
}

/// The relay row, locked until `transaction` ends: replicas take turns behind it.
async fn lock_relay(
    transaction: &sea_orm::DatabaseTransaction,
) -> Result<event_relay::Model, DbErr> {
    event_relay::Entity::find_by_id(RELAY.to_owned())
        .lock_exclusive()
        .one(transaction)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("event_relay row".to_owned()))
}

async fn set_relay_column<C: ConnectionTrait>(
    connection: &C,
    column: event_relay::Column,
    value: i64,
) -> Result<(), DbErr> {
    event_relay::Entity::update_many()
        .col_expr(column, Expr::value(value))
        .filter(event_relay::Column::Name.eq(RELAY))
        .exec(connection)
        .await?;
    Ok(())
}

/// The relay's whole state row.
pub async fn relay_state_full<C: ConnectionTrait>(
    connection: &C,
) -> Result<event_relay::Model, DbErr> {
    event_relay::Entity::find_by_id(RELAY.to_owned())
        .one(connection)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("event_relay row".to_owned()))
}

/// How far events of another service's stream named `source` have been copied into this
/// outbox; `None` before the first copy.
pub async fn source_position<C: ConnectionTrait>(
    connection: &C,
    source: &str,
) -> Result<Option<i64>, DbErr> {
    Ok(event_relay::Entity::find_by_id(source_row(source))
        .one(connection)
        .await?
        .map(|row| row.last_position))
}

fn source_row(source: &str) -> String {
    format!("source:{source}")
}

/// What a service keeps of the events it copies from another's stream (message-service: who
/// participates where), updated in the copying transaction.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Applies `event` within `transaction`: once per source position, in order.
    async fn apply(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        event: &pb::Event,
    ) -> Result<(), DbErr>;

    /// The payload to store for `event` (encoded as `payload`, of `kind`): sealed when this
    /// service encrypts what it stores; as it is by default.
    async fn seal(
        &self,
        _transaction: &sea_orm::DatabaseTransaction,
        _event: &pb::Event,
        _kind: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DbErr> {
        Ok(payload)
    }
}

/// Copies `events` (another service's, each with its position in that service's stream, in
/// order) into this outbox, applies each to `projection`, stamps them, and moves the source's
/// mark to the last position, all in one transaction. Events already copied (by this or
/// another replica) are skipped by event id. Because copies are stamped before they commit, a
/// snapshot that sees the projection's change also sees the event's position at or below the
/// relay's head, and one that does not, sees neither. Returns how many were new.
pub async fn copy_events(
    db: &DatabaseConnection,
    source: &str,
    events: &[(pb::Event, i64)],
    projection: &dyn Projection,
) -> Result<u64, DbErr> {
    use sea_orm::sea_query::OnConflict;
    let Some((_, last)) = events.last() else {
        return Ok(0);
    };
    let transaction = messaging_platform::db::begin_write(db).await?;
    let mut inserted = 0;
    for (event, position) in events {
        let event_id = Uuid::parse_str(&event.event_id)
            .map_err(|_| DbErr::Custom(format!("event id {:?} is not a UUID", event.event_id)))?;
        let conversation = Uuid::parse_str(&event.conversation_id).map_err(|_| {
            DbErr::Custom(format!(
                "conversation id {:?} is not a UUID",
                event.conversation_id
            ))
        })?;
        let occurred_at = event
            .time
            .as_ref()
            .and_then(|time| {
                DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
            })
            .unwrap_or_else(Utc::now);
        let mut stored = event.clone();
        stored.position = String::new();
        let (kind, payload) = super::encode(&stored);
        let payload = projection.seal(&transaction, event, &kind, payload).await?;
        inserted += event::Entity::insert(event::ActiveModel {
            id: sea_orm::NotSet,
            event_id: sea_orm::Set(event_id),
            tenant_id: sea_orm::Set(event.tenant_id.clone()),
            conversation_id: sea_orm::Set(conversation),
            actor_id: sea_orm::Set(event.actor_id.clone()),
            kind: sea_orm::Set(kind),
            occurred_at: sea_orm::Set(occurred_at),
            payload: sea_orm::Set(payload),
            position: sea_orm::Set(None),
        })
        .on_conflict(
            OnConflict::column(event::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&transaction)
        .await?;
        // The projection has a mark of its own, moved first: of replicas copying the same
        // event, only the one that moves it applies the event (the row lock orders them), each
        // source position once and in order, also when the copy itself was made before
        // (rebuilding).
        if advance_projection(&transaction, source, *position).await? {
            projection.apply(&transaction, event).await?;
        }
    }
    if inserted > 0 {
        while stamp_within(&transaction, STAMP_ALL_BATCH).await?.count() == STAMP_ALL_BATCH {}
    }
    move_source(&transaction, source, *last, true).await?;
    transaction.commit().await?;
    Ok(inserted)
}

/// Moves the projection mark of `source` forward to `position`; false when it was there already.
async fn advance_projection(
    transaction: &sea_orm::DatabaseTransaction,
    source: &str,
    position: i64,
) -> Result<bool, DbErr> {
    Ok(set_mark(transaction, format!("projection:{source}"), position, true).await? > 0)
}

/// Moves the mark of `source` to `position` (after a resync: even backwards, when the source
/// started over).
pub async fn set_source_position(
    db: &DatabaseConnection,
    source: &str,
    position: i64,
) -> Result<(), DbErr> {
    let transaction = messaging_platform::db::begin_write(db).await?;
    move_source(&transaction, source, position, false).await?;
    // The projection follows the source from there on.
    set_mark(
        &transaction,
        format!("projection:{source}"),
        position,
        false,
    )
    .await?;
    transaction.commit().await
}

async fn move_source<C: ConnectionTrait>(
    connection: &C,
    source: &str,
    position: i64,
    forward_only: bool,
) -> Result<(), DbErr> {
    set_mark(connection, source_row(source), position, forward_only).await?;
    Ok(())
}

/// Sets the `event_relay` row `name` (created if missing) to `position`, only forward when
/// `forward_only`; returns how many rows moved.
async fn set_mark<C: ConnectionTrait>(
    connection: &C,
    name: String,
    position: i64,
    forward_only: bool,
) -> Result<u64, DbErr> {
    use sea_orm::sea_query::OnConflict;
    event_relay::Entity::insert(event_relay::ActiveModel {
        name: sea_orm::Set(name.clone()),
        last_position: sea_orm::Set(0),
        pruned_through: sea_orm::Set(0),
        nats_published_through: sea_orm::Set(0),
    })
    .on_conflict(
        OnConflict::column(event_relay::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(connection)
    .await?;
    let mut update = event_relay::Entity::update_many()
        .col_expr(event_relay::Column::LastPosition, Expr::value(position))
        .filter(event_relay::Column::Name.eq(name));
    if forward_only {
        update = update.filter(event_relay::Column::LastPosition.lt(position));
    }
    Ok(update.exec(connection).await?.rows_affected)
}
