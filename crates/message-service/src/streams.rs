//! Subscribe streams and typing indicators.
//!
//! A stream subscribes to the bus first, then reads the relay's head and replays stored events
//! after the resume position up to that head, then goes on with live events above the head:
//! nothing between replay and live is lost or repeated. Too old a position (pruned) gets a
//! `ResyncRequired` item instead of a silent skip. Memory per stream is bounded: when a client
//! reads too slowly and its buffer fills, or the bus outruns it, the stream ends with
//! RESOURCE_EXHAUSTED naming the position to resume from. Idle streams get heartbeats.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use messaging_platform::{ApiError, ApiResult, Caller};
use messaging_proto::message::v1 as pb;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use uuid::Uuid;

use crate::app::Messages;
use crate::client::{Action, Answer};
use crate::events::{self, BusEvent};
use crate::store;

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
const REPLAY_BATCH: u64 = 500;

/// Which conversations a stream delivers: a fixed list, or whatever the caller can read,
/// re-checked through the permission gate (so joins appear and removals stop within the
/// permission cache's bound).
struct Membership {
    fixed: bool,
    followed: HashSet<Uuid>,
}

impl Membership {
    async fn admits(&mut self, app: &Messages, caller: &Caller, conversation: Uuid) -> bool {
        if self.fixed && !self.followed.contains(&conversation) {
            return false;
        }
        let readable = matches!(
            app.gate()
                .check(
                    &caller.tenant_id,
                    &caller.user_id,
                    conversation,
                    Action::Read
                )
                .await,
            Ok(Answer::Decided { allowed: true, .. })
        );
        if readable {
            self.followed.insert(conversation);
        } else {
            self.followed.remove(&conversation);
        }
        readable
    }
}

enum Sent {
    Ok,
    Closed,
    TooSlow,
}

fn offer(
    sender: &mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    item: pb::subscribe_response::Item,
) -> Sent {
    match sender.try_send(Ok(pb::SubscribeResponse { item: Some(item) })) {
        Ok(()) => Sent::Ok,
        Err(mpsc::error::TrySendError::Full(_)) => Sent::TooSlow,
        Err(mpsc::error::TrySendError::Closed(_)) => Sent::Closed,
    }
}

fn too_slow(cursor: i64) -> Status {
    Status::resource_exhausted(format!(
        "subscriber too slow: resume with resume_position \"{cursor}\""
    ))
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
    let mut live = app.bus().subscribe();
    let (head, pruned_through) = store::relay_state(app.db()).await.map_err(ApiError::from)?;
    let (sender, receiver) = mpsc::channel(settings.buffer.max(1));
    let (terminal_sender, terminal) = oneshot::channel::<Status>();
    let app = app.clone();
    let heartbeat_interval = settings.heartbeat_interval;
    tokio::spawn(async move {
        let mut membership = Membership { fixed, followed };
        let mut cursor = head;
        let outcome = async {
            match resume {
                Some(position) if position < pruned_through || position > head => {
                    let item = pb::subscribe_response::Item::ResyncRequired(pb::ResyncRequired { position: head.to_string() });
                    if let Sent::Closed | Sent::TooSlow = offer(&sender, item) {
                        return None;
                    }
                }
                Some(position) => {
                    let mut after = position;
                    while after < head {
                        let rows = match store::events_after(app.db(), Some(&caller.tenant_id), after, Some(head), REPLAY_BATCH).await {
                            Ok(rows) => rows,
                            Err(error) => {
                                tracing::warn!(%error, "replay failed");
                                return Some(Status::unavailable("replay failed; resume from your last position"));
                            }
                        };
                        // Pruning may have passed the cursor since the state was read: then events are
                        // missing and the client must resync rather than silently skip them.
                        match store::relay_state(app.db()).await {
                            Ok((_, pruned_now)) if pruned_now > after => {
                                let item = pb::subscribe_response::Item::ResyncRequired(pb::ResyncRequired {
                                    position: head.to_string(),
                                });
                                if let Sent::Closed | Sent::TooSlow = offer(&sender, item) {
                                    return None;
                                }
                                break;
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, "replay failed");
                                return Some(Status::unavailable("replay failed; resume from your last position"));
                            }
                        }
                        let Some(last) = rows.last().and_then(|row| row.position) else { break };
                        for row in rows {
                            let Some(event) = events::decode(&row) else { continue };
                            if membership.admits(&app, &caller, event.conversation_id).await {
                                match offer(&sender, pb::subscribe_response::Item::Event(event.event)) {
                                    Sent::Ok => {}
                                    Sent::Closed => return None,
                                    Sent::TooSlow => return Some(too_slow(row.position.unwrap_or(after))),
                                }
                            }
                        }
                        after = last;
                    }
                }
                None => {}
            }
            let mut heartbeat = tokio::time::interval(heartbeat_interval.max(Duration::from_millis(1)));
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    received = live.recv() => match received {
                        Ok(event) => {
                            let event: Arc<BusEvent> = event;
                            if let Some(position) = event.position {
                                if position <= cursor {
                                    continue;
                                }
                                cursor = position;
                            }
                            if event.tenant_id != caller.tenant_id
                                || !membership.admits(&app, &caller, event.conversation_id).await
                            {
                                continue;
                            }
                            match offer(&sender, pb::subscribe_response::Item::Event(event.event.clone())) {
                                Sent::Ok => heartbeat.reset(),
                                Sent::Closed => return None,
                                Sent::TooSlow => return Some(too_slow(event.position.map_or(cursor, |p| p - 1))),
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => return Some(too_slow(cursor)),
                        Err(broadcast::error::RecvError::Closed) => return Some(Status::unavailable("server shutting down")),
                    },
                    _ = heartbeat.tick() => {
                        let now = messaging_platform::time::to_timestamp(chrono::Utc::now());
                        match offer(&sender, pb::subscribe_response::Item::Heartbeat(now)) {
                            Sent::Ok => {}
                            Sent::Closed => return None,
                            Sent::TooSlow => return Some(too_slow(cursor)),
                        }
                    }
                    () = sender.closed() => return None,
                }
            }
        }
        .await;
        if let Some(status) = outcome {
            let _ = terminal_sender.send(status);
        }
    });
    let terminal =
        futures::stream::once(terminal).filter_map(|status| async move { status.ok().map(Err) });
    Ok(Box::pin(ReceiverStream::new(receiver).chain(terminal)))
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
