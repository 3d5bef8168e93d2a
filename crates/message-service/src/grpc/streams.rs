//! Subscribe streams and typing indicators.
//!
//! The replay-then-live machinery (resume, resync, bounded buffers, heartbeats) is shared with
//! conversation-service in `messaging_outbox::stream`; what is particular here is
//! which events a subscriber sees: its tenant's, of conversations it may read.

use std::collections::HashSet;

use futures::Stream;
use messaging_outbox::stream::{self, Admission, Item, StreamSpec, Undecided};
use messaging_platform::{ApiError, ApiResult, Caller};
use messaging_proto::message::v1 as pb;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;
use uuid::Uuid;

use crate::domain::Action;
use crate::events::{BusEvent, EventBus};
use crate::limits::Limits;
use crate::peer::ConversationGate;

/// Stream tuning.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Heartbeat period of idle streams.
    pub heartbeat_interval: Duration,
    /// Items buffered per stream before it counts as too slow.
    pub buffer: usize,
    /// Least time between two typing indicators of one user in one conversation.
    pub typing_interval: Duration,
}

/// What Subscribe and SendTypingIndicator need: the outbox's bus and database (streams read
/// a snapshot of the participant projection with the relay's head), the gate, the limits.
#[derive(Debug, Clone)]
pub struct Live {
    db: sea_orm::DatabaseConnection,
    bus: EventBus,
    gate: ConversationGate,
    limits: Arc<Limits>,
    settings: StreamSettings,
    /// Who typed where lately: at most one indicator per `typing_interval`.
    typing_limiter: moka::sync::Cache<(String, Uuid, String), ()>,
}

impl Live {
    /// Streams over `db` and `bus`.
    pub fn new(
        db: sea_orm::DatabaseConnection,
        bus: EventBus,
        gate: ConversationGate,
        limits: Arc<Limits>,
        settings: StreamSettings,
    ) -> Self {
        let typing_limiter = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(
                settings
                    .typing_interval
                    .max(std::time::Duration::from_millis(1)),
            )
            .build();
        Self {
            db,
            bus,
            gate,
            limits,
            settings,
            typing_limiter,
        }
    }
}

/// The item stream a Subscribe call returns.
pub type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

/// Which conversations a stream delivers, decided from the event flow alone: the conversations
/// the caller participates in as of each event's position. The stream starts from the
/// participant projection read in the same snapshot as the relay's head (undone back to the
/// resume position), then follows participant events in position order. Every change
/// conversation-service acknowledged before a message-service write is copied into the outbox
/// ahead of that write's event (each write fences first, see `ConversationGate::fence`), so a
/// participant added before a message was sent gets it, and one removed before does not,
/// whatever the stream's delay.
struct Membership {
    bus: EventBus,
    caller: Caller,
    /// The conversations named in the request, if any: only their events are delivered.
    named: Option<HashSet<Uuid>>,
    /// The conversations the caller participates in, as of the stream's position.
    joined: HashSet<Uuid>,
}

impl Membership {
    fn reads(&self, conversation: Uuid) -> bool {
        match &self.named {
            // A tenant administrator may read every conversation it names.
            Some(named) => {
                named.contains(&conversation)
                    && (self.caller.is_admin || self.joined.contains(&conversation))
            }
            None => self.joined.contains(&conversation),
        }
    }
}

impl Admission for Membership {
    async fn prepare(
        &mut self,
        snapshot: &sea_orm::DatabaseTransaction,
        head: i64,
        from: i64,
    ) -> Result<(), sea_orm::DbErr> {
        self.joined = crate::store::participants::conversations_at(
            snapshot,
            &self.bus,
            &self.caller.tenant_id,
            &self.caller.user_id,
            head,
            from,
        )
        .await?;
        Ok(())
    }

    async fn admits(&mut self, event: &BusEvent) -> Result<bool, Undecided> {
        let conversation = event.conversation_id;
        let me = self.caller.user_id.as_str();
        use pb::event::Payload;
        match &event.event.payload {
            Some(Payload::ParticipantAdded(change) | Payload::ParticipantRoleChanged(change))
                if change.user_id == me =>
            {
                self.joined.insert(conversation);
            }
            // The participant who was removed hears of it, and of nothing after.
            Some(Payload::ParticipantRemoved(change)) if change.user_id == me => {
                let admitted = self.reads(conversation);
                self.joined.remove(&conversation);
                return Ok(admitted);
            }
            // The creation comes before the participants' own events: its list names them.
            Some(Payload::ConversationCreated(created))
                if created.participants.iter().any(|p| p.user_id == me) =>
            {
                self.joined.insert(conversation);
            }
            _ => {}
        }
        Ok(self.reads(conversation))
    }
}

impl Live {
    /// Opens a Subscribe stream for `caller`.
    pub async fn subscribe(
        &self,
        caller: Caller,
        resume: Option<i64>,
        conversations: Vec<Uuid>,
    ) -> ApiResult<SubscribeStream> {
        let settings = &self.settings;
        let permit = self.limits.open_stream(&caller)?;
        // Every change acknowledged before the call is in the projection the stream starts from.
        self.gate.fence().await?;
        let named = if conversations.is_empty() {
            None
        } else {
            for conversation in &conversations {
                self.gate
                    .require_fenced(&caller, *conversation, Action::Read)
                    .await?;
            }
            Some(conversations.into_iter().collect())
        };
        let spec = StreamSpec {
            tenant: Some(caller.tenant_id.to_string()),
            resume,
            heartbeat_interval: settings.heartbeat_interval,
            buffer: settings.buffer,
            resume_field: "resume_position",
        };
        let membership = Membership {
            bus: self.bus.clone(),
            caller,
            named,
            joined: HashSet::new(),
        };
        stream::open(&self.db, &self.bus, spec, membership, |item| {
            let item = match item {
                Item::Event(event) => pb::subscribe_response::Item::Event(*event),
                Item::ResyncRequired(position) => {
                    pb::subscribe_response::Item::ResyncRequired(pb::ResyncRequired {
                        position: position.to_string(),
                    })
                }
                Item::Heartbeat(time) => pb::subscribe_response::Item::Heartbeat(time),
            };
            pb::SubscribeResponse { item: Some(item) }
        })
        .await
        .map_err(ApiError::from)
        // The stream counts against the caller's limits for as long as it is open.
        .map(|stream| -> SubscribeStream {
            Box::pin(futures::StreamExt::map(stream, move |item| {
                let _open = &permit;
                item
            }))
        })
    }

    /// SendTypingIndicator: ephemeral, never stored, at most one per `typing_interval` per user
    /// and conversation (RESOURCE_EXHAUSTED beyond).
    pub async fn typing(
        &self,
        caller: &Caller,
        conversation: Uuid,
        parent: Option<Uuid>,
    ) -> ApiResult<()> {
        self.gate
            .require(caller, conversation, Action::Post)
            .await?;
        let key = (
            caller.tenant_id.to_string(),
            conversation,
            caller.user_id.to_string(),
        );
        if self.typing_limiter.contains_key(&key) {
            return Err(ApiError::ResourceExhausted(
                "typing indicators are limited to one per second".to_owned(),
            ));
        }
        self.typing_limiter.insert(key, ());
        let now = chrono::Utc::now();
        self.bus.publish(BusEvent {
            position: None,
            tenant_id: caller.tenant_id.to_string(),
            conversation_id: conversation,
            event: pb::Event {
                event_id: Uuid::now_v7().to_string(),
                tenant_id: caller.tenant_id.to_string(),
                conversation_id: conversation.to_string(),
                actor_id: caller.user_id.to_string(),
                time: Some(messaging_platform::time::to_timestamp(now)),
                position: String::new(),
                payload: Some(pb::event::Payload::Typing(pb::Typing {
                    user_id: caller.user_id.to_string(),
                    parent_id: parent.map(|id| id.to_string()).unwrap_or_default(),
                })),
            },
        });
        Ok(())
    }
}
