//! Subscribe streams and typing indicators.
//!
//! The replay-then-live machinery (resume, resync, bounded buffers, heartbeats) is shared with
//! conversation-service in `messaging_platform::outbox::stream`; what is particular here is
//! which events a subscriber sees: its tenant's, of conversations it may read.

use std::collections::HashSet;

use futures::Stream;
use messaging_platform::outbox::stream::{self, Admission, Item, StreamSpec, Undecided};
use messaging_platform::{ApiError, ApiResult, Caller};
use messaging_proto::message::v1 as pb;
use std::pin::Pin;
use std::time::Duration;
use tonic::Status;
use uuid::Uuid;

use crate::app::Messages;
use crate::client::{Action, Answer};
use crate::events::BusEvent;

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

/// The item stream a Subscribe call returns.
pub type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

/// Most conversations a subscription follows.
const MAX_FOLLOWED: usize = 10_000;

/// Which conversations a stream delivers: a fixed list, or whatever the caller can read,
/// re-checked through the permission gate, whose cache membership events invalidate (so joins
/// appear and removals stop as soon as conversation-service's event arrives).
struct Membership {
    app: Messages,
    caller: Caller,
    fixed: bool,
    followed: HashSet<Uuid>,
}

impl Admission for Membership {
    async fn admits(&mut self, event: &BusEvent) -> Result<bool, Undecided> {
        let conversation = event.conversation_id;
        if self.fixed && !self.followed.contains(&conversation) {
            return Ok(false);
        }
        use pb::event::Payload;
        match &event.event.payload {
            // The participant who was removed hears of it, and of nothing after.
            Some(Payload::ParticipantRemoved(change)) if change.user_id == self.caller.user_id => {
                self.followed.remove(&conversation);
                return Ok(true);
            }
            // A deleted conversation is unreadable: tell those who followed it.
            Some(Payload::ConversationDeleted(_)) => {
                return Ok(self.followed.remove(&conversation));
            }
            // Other conversation changes go to the conversation's participants as the stream
            // knows them at that point (the events arrive in order): asking for the current
            // permission instead would drop the changes just before one's own removal.
            Some(
                Payload::ConversationCreated(_)
                | Payload::ConversationUpdated(_)
                | Payload::ConversationArchived(_)
                | Payload::ParticipantAdded(_)
                | Payload::ParticipantRemoved(_)
                | Payload::ParticipantRoleChanged(_),
            ) if self.followed.contains(&conversation) => return Ok(true),
            _ => {}
        }
        let answer = self
            .app
            .gate()
            .check(
                &self.caller.tenant_id,
                &self.caller.user_id,
                conversation,
                Action::Read,
            )
            .await
            .map_err(|_| Undecided)?;
        let readable = matches!(answer, Answer::Decided { allowed: true, .. });
        if readable {
            self.followed.insert(conversation);
        } else {
            self.followed.remove(&conversation);
        }
        Ok(readable)
    }
}

/// Opens a Subscribe stream for `caller`.
pub async fn subscribe(
    app: &Messages,
    settings: &StreamSettings,
    caller: Caller,
    resume: Option<i64>,
    conversations: Vec<Uuid>,
) -> ApiResult<SubscribeStream> {
    let fixed = !conversations.is_empty();
    let followed: HashSet<Uuid> = if fixed {
        for conversation in &conversations {
            app.gate()
                .require(&caller, *conversation, Action::Read)
                .await?;
        }
        conversations.into_iter().collect()
    } else {
        app.gate()
            .joined_conversations(&caller, MAX_FOLLOWED)
            .await?
            .into_iter()
            .collect()
    };
    let spec = StreamSpec {
        tenant: Some(caller.tenant_id.clone()),
        resume,
        heartbeat_interval: settings.heartbeat_interval,
        buffer: settings.buffer,
        resume_field: "resume_position",
    };
    let membership = Membership {
        app: app.clone(),
        caller,
        fixed,
        followed,
    };
    stream::open(app.db(), app.bus(), spec, membership, |item| {
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
}

/// SendTypingIndicator: ephemeral, never stored, at most one per `typing_interval` per user
/// and conversation (RESOURCE_EXHAUSTED beyond).
pub async fn typing(
    app: &Messages,
    limiter: &moka::sync::Cache<(String, Uuid, String), ()>,
    caller: &Caller,
    conversation: Uuid,
    parent: Option<Uuid>,
) -> ApiResult<()> {
    app.gate()
        .require(caller, conversation, Action::Post)
        .await?;
    let key = (
        caller.tenant_id.clone(),
        conversation,
        caller.user_id.clone(),
    );
    if limiter.contains_key(&key) {
        return Err(ApiError::ResourceExhausted(
            "typing indicators are limited to one per second".to_owned(),
        ));
    }
    limiter.insert(key, ());
    let now = chrono::Utc::now();
    app.bus().publish(BusEvent {
        position: None,
        tenant_id: caller.tenant_id.clone(),
        conversation_id: conversation,
        event: pb::Event {
            event_id: Uuid::now_v7().to_string(),
            tenant_id: caller.tenant_id.clone(),
            conversation_id: conversation.to_string(),
            actor_id: caller.user_id.clone(),
            time: Some(messaging_platform::time::to_timestamp(now)),
            position: String::new(),
            payload: Some(pb::event::Payload::Typing(pb::Typing {
                user_id: caller.user_id.clone(),
                parent_id: parent.map(|id| id.to_string()).unwrap_or_default(),
            })),
        },
    });
    Ok(())
}
