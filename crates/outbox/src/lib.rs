//! Events: the transactional outbox both services write, the relay that stamps and publishes
//! it, the in-process bus, NATS JetStream publishing, and the replay-then-live stream.
//!
//! Use cases write an event row in the same transaction as their change. The relay then stamps
//! committed rows with dense positions (one after the other, under a row lock, so a visible
//! position implies every lower one is visible: ids handed out before commit never surface out
//! of order), and publishes every stamped event, in position order, to the bus that
//! `Subscribe` streams read. Writers wake the relay after commit; it also polls, which picks up
//! events that other replicas stamped in the same database. Ephemeral events (typing) go to the
//! bus directly and are never stored.

/// The event contract both services write and read: the envelope and its payloads. Their
/// proto lives in `messaging.message.v1` (Subscribe embeds the envelope and the message
/// payloads embed `Message`, so a package of their own would import that package and be
/// imported by it); this module is where services take them from.
pub mod contract {
    pub use messaging_proto::message::v1::{
        ConversationChanged, Event, MessageCreated, MessageDeleted, MessageEdited,
        ParticipantChanged, ReactionAdded, ReactionRemoved, ReadStateMoved, ResyncRequired, Typing,
        event,
    };
}

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use messaging_proto::message::v1 as pb;
use prost::Message as _;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

use messaging_platform::crypto::{Binding, DataKey};

pub mod entity;
pub mod migration;
pub mod nats;
pub mod store;
pub mod stream;

pub use nats::{NatsPublisher, NatsSettings, tenant_token};

/// An event as the bus carries it.
#[derive(Debug, Clone)]
pub struct BusEvent {
    /// Its position; `None` for ephemeral events.
    pub position: Option<i64>,
    /// The tenant, for filtering before anything else.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: Uuid,
    /// The event itself, position included.
    pub event: pb::Event,
}

/// Where the data keys of sealed event payloads come from (encryption at rest).
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// Data key `version` of `tenant`, read through `transaction` when one is open.
    async fn data_key(
        &self,
        transaction: Option<&sea_orm::DatabaseTransaction>,
        tenant: &str,
        version: u32,
    ) -> Result<Arc<DataKey>, String>;
}

/// The in-process bus: a bounded broadcast of events plus the relay's wake-up, and the keys
/// that open sealed payloads.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<BusEvent>>,
    wake: Arc<Notify>,
    keys: Option<Arc<dyn KeySource>>,
    /// Cancelled when the service begins to shut down: streams end with their resume
    /// position, background tasks stop at their next wait.
    closing: tokio_util::sync::CancellationToken,
}

impl EventBus {
    /// A bus that holds up to `capacity` events for slow receivers; a receiver that falls
    /// further behind is told it lagged.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(16));
        Self {
            sender,
            wake: Arc::new(Notify::new()),
            keys: None,
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The shutdown signal of the service this bus belongs to.
    pub fn closing(&self) -> &tokio_util::sync::CancellationToken {
        &self.closing
    }

    /// The same bus, opening sealed payloads with keys from `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<dyn KeySource>>) -> Self {
        self.keys = keys;
        self
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.sender.subscribe()
    }

    /// Tells the relay that events were committed.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    /// Publishes an event (for stored events: in position order, by the relay only).
    pub fn publish(&self, event: BusEvent) {
        // No receivers is fine: nobody is subscribed.
        let _ = self.sender.send(Arc::new(event));
    }
}

/// The `events` section of each service: outbox retention, relay, streams and NATS.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct EventSettings {
    /// How long events stay replayable for resuming streams; older positions get a resync
    /// signal; default 7 days.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the relay looks for events committed by other replicas; default 100 ms.
    #[serde(with = "humantime_serde")]
    pub relay_poll_interval: Duration,
    /// Heartbeat period of idle streams; default 15 s.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Items buffered per stream before it is ended as too slow; default 256.
    pub stream_buffer: usize,
    /// Events the in-process bus holds for slow streams; default 4,096.
    pub bus_capacity: usize,
    /// Where events go for other services (`[<service>.events.nats]`); off by default.
    pub nats: NatsSettings,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            relay_poll_interval: Duration::from_millis(100),
            heartbeat_interval: Duration::from_secs(15),
            stream_buffer: 256,
            bus_capacity: 4_096,
            nats: NatsSettings::default(),
        }
    }
}

impl EventSettings {
    /// Creates the bus, connects to NATS when configured, and starts the relay. The relay
    /// runs until the bus is closing (see [`EventBus::closing`]).
    pub async fn start(
        &self,
        db: &DatabaseConnection,
        foreign_kinds: &'static [&'static str],
        keys: Option<Arc<dyn KeySource>>,
    ) -> anyhow::Result<(EventBus, tokio::task::JoinHandle<()>)> {
        let bus = EventBus::new(self.bus_capacity).with_keys(keys);
        let nats = if self.nats.url.is_empty() {
            None
        } else {
            Some(
                NatsPublisher::connect(&self.nats)
                    .await?
                    .skipping(foreign_kinds),
            )
        };
        let settings = RelaySettings {
            poll_interval: self.relay_poll_interval,
            retention: self.retention,
            prune_interval: Duration::from_secs(60)
                .min(self.retention.max(Duration::from_millis(10))),
        };
        let relay = tokio::spawn(run_relay(db.clone(), bus.clone(), settings, nats));
        // Stops at its next wait once the bus is closing: a pass in progress completes.
        Ok((bus, relay))
    }
}

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How often it looks for events committed elsewhere.
    pub poll_interval: Duration,
    /// How long stored events stay replayable.
    pub retention: Duration,
    /// How often old events are pruned.
    pub prune_interval: Duration,
}

const STAMP_BATCH: u64 = 500;
const PUBLISH_BATCH: u64 = 1_000;

/// Builds the stored form of an event: its kind and encoded payload.
pub fn encode(event: &pb::Event) -> (String, Vec<u8>) {
    let kind = match &event.payload {
        Some(pb::event::Payload::MessageCreated(_)) => "message.created",
        Some(pb::event::Payload::MessageEdited(_)) => "message.edited",
        Some(pb::event::Payload::MessageDeleted(_)) => "message.deleted",
        Some(pb::event::Payload::ReactionAdded(_)) => "reaction.added",
        Some(pb::event::Payload::ReactionRemoved(_)) => "reaction.removed",
        Some(pb::event::Payload::ReadStateMoved(_)) => "read_state.moved",
        Some(pb::event::Payload::Typing(_)) => "typing",
        Some(pb::event::Payload::ConversationCreated(_)) => "conversation.created",
        Some(pb::event::Payload::ConversationUpdated(_)) => "conversation.updated",
        Some(pb::event::Payload::ConversationArchived(_)) => "conversation.archived",
        Some(pb::event::Payload::ConversationDeleted(_)) => "conversation.deleted",
        Some(pb::event::Payload::ConversationPurged(_)) => "conversation.purged",
        Some(pb::event::Payload::ParticipantAdded(_)) => "participant.added",
        Some(pb::event::Payload::ParticipantRemoved(_)) => "participant.removed",
        Some(pb::event::Payload::ParticipantRoleChanged(_)) => "participant.role_changed",
        Some(pb::event::Payload::UserErased(_)) => "user.erased",
        None => "unknown",
    };
    (kind.to_owned(), event.encode_to_vec())
}

fn payload_binding(tenant: &str, conversation: Uuid, event_id: Uuid) -> Binding {
    Binding::new("event.payload")
        .with(tenant.as_bytes())
        .with(conversation.as_bytes())
        .with(event_id.as_bytes())
}

/// Seals an encoded event with `key`, bound to its tenant, conversation and event id.
pub fn seal_payload(
    key: &DataKey,
    tenant: &str,
    conversation: Uuid,
    event_id: Uuid,
    payload: &[u8],
) -> Result<Vec<u8>, messaging_platform::crypto::CryptoError> {
    key.seal(&payload_binding(tenant, conversation, event_id), payload)
}

/// Opens what [`seal_payload`] sealed for the same tenant, conversation and event id.
pub fn open_sealed_payload(
    key: &DataKey,
    tenant: &str,
    conversation: Uuid,
    event_id: Uuid,
    sealed: &[u8],
) -> Result<Vec<u8>, messaging_platform::crypto::CryptoError> {
    key.open(&payload_binding(tenant, conversation, event_id), sealed)
}

async fn open_payload<'a>(
    bus: &EventBus,
    transaction: Option<&sea_orm::DatabaseTransaction>,
    row: &'a store::EventRow,
) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    if !messaging_platform::crypto::is_sealed(&row.payload) {
        return Ok(std::borrow::Cow::Borrowed(row.payload.as_slice()));
    }
    let keys = bus
        .keys
        .as_ref()
        .ok_or("the payload is sealed and no keys are configured")?;
    let version =
        messaging_platform::crypto::key_version(&row.payload).map_err(|error| error.to_string())?;
    let key = keys.data_key(transaction, &row.tenant_id, version).await?;
    open_sealed_payload(
        &key,
        &row.tenant_id,
        row.conversation_id,
        row.event_id,
        &row.payload,
    )
    .map(std::borrow::Cow::Owned)
    .map_err(|error| error.to_string())
}

/// Decodes a stored event (opening it if sealed) and gives it its position. An event that
/// cannot be opened or decoded is logged and skipped.
pub async fn decode(bus: &EventBus, row: &store::EventRow) -> Option<BusEvent> {
    decode_within(bus, None, row).await
}

/// [`decode`] within an open transaction, which key lookups then use.
pub async fn decode_within(
    bus: &EventBus,
    transaction: Option<&sea_orm::DatabaseTransaction>,
    row: &store::EventRow,
) -> Option<BusEvent> {
    let position = row.position?;
    let payload = match open_payload(bus, transaction, row).await {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(event_id = %row.event_id, position, %error, "a stored event cannot be opened");
            return None;
        }
    };
    let mut event = pb::Event::decode(payload.as_ref()).ok()?;
    event.position = position.to_string();
    Some(BusEvent {
        position: Some(position),
        tenant_id: row.tenant_id.clone(),
        conversation_id: row.conversation_id,
        event,
    })
}

/// Runs the relay until the task is dropped.
pub async fn run_relay(
    db: DatabaseConnection,
    bus: EventBus,
    settings: RelaySettings,
    nats: Option<NatsPublisher>,
) {
    let mut published = match store::relay_state(&db).await {
        Ok((last, _)) => last,
        Err(error) => {
            tracing::error!(%error, "event relay cannot read its state");
            0
        }
    };
    let mut poll = tokio::time::interval(settings.poll_interval.max(Duration::from_millis(1)));
    let mut prune = tokio::time::interval(settings.prune_interval.max(Duration::from_millis(1)));
    loop {
        tokio::select! {
            () = bus.closing.cancelled() => return,
            () = bus.wake.notified() => {}
            _ = poll.tick() => {}
            _ = prune.tick() => {
                let before = Utc::now() - chrono::Duration::from_std(settings.retention).unwrap_or(chrono::Duration::MAX);
                let keep_after = match &nats {
                    Some(_) => store::relay_state_full(&db).await.ok().map(|state| state.nats_published_through),
                    None => None,
                };
                match store::prune_events(&db, before, keep_after).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "pruned old events"),
                    Err(error) => tracing::warn!(%error, "pruning events failed"),
                }
            }
        }
        let recent = match relay_once(&db, &bus, &mut published, nats.is_some()).await {
            Ok(recent) => recent,
            Err(error) => {
                tracing::warn!(%error, "event relay pass failed; retrying");
                Vec::new()
            }
        };
        if let Some(nats) = &nats {
            loop {
                match store::publish_pending(&db, &bus, STAMP_BATCH, &recent, |rows| {
                    nats.publish(rows)
                })
                .await
                {
                    Ok(count) if count == STAMP_BATCH => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "publishing events to NATS failed; retrying");
                        break;
                    }
                }
            }
        }
    }
}

/// Stamps what is committed and publishes everything stamped after `published`. The events
/// it stamps itself right after `published` go out as the stamp returned them; what others
/// stamped (another replica, a transaction that stamped its own events) is read back. Returns
/// what it published, with the rows, when `keep` asks for them (for NATS).
pub async fn relay_once(
    db: &DatabaseConnection,
    bus: &EventBus,
    published: &mut i64,
    keep: bool,
) -> Result<Vec<(store::EventRow, BusEvent)>, sea_orm::DbErr> {
    let mut kept = Vec::new();
    let mut hand_out =
        |rows: Vec<store::EventRow>, published: &mut i64, decoded: Vec<Option<BusEvent>>| {
            for (row, event) in rows.into_iter().zip(decoded) {
                // An event that cannot be opened (logged) is passed over by the next one
                // that can; the last one of a pass is tried again on the next pass.
                if let Some(event) = event {
                    *published = event.position.unwrap_or(*published);
                    if keep {
                        kept.push((row, event.clone()));
                    }
                    bus.publish(event);
                }
            }
        };
    // The last position handed out, as of the last stamp.
    let mut head;
    loop {
        let stamped = store::stamp_events(db, STAMP_BATCH).await?;
        let count = stamped.count();
        head = stamped.after + i64::try_from(count).unwrap_or(i64::MAX);
        if stamped.after == *published && count > 0 {
            let decoded = decode_all(bus, &stamped.rows).await;
            hand_out(stamped.rows, published, decoded);
        }
        if count < STAMP_BATCH {
            break;
        }
    }
    if *published >= head {
        return Ok(kept);
    }
    loop {
        let rows = store::events_after(db, None, *published, None, PUBLISH_BATCH).await?;
        let count = rows.len() as u64;
        let decoded = decode_all(bus, &rows).await;
        hand_out(rows, published, decoded);
        if count < PUBLISH_BATCH {
            return Ok(kept);
        }
    }
}

async fn decode_all(bus: &EventBus, rows: &[store::EventRow]) -> Vec<Option<BusEvent>> {
    let mut decoded = Vec::with_capacity(rows.len());
    for row in rows {
        decoded.push(decode(bus, row).await);
    }
    decoded
}
