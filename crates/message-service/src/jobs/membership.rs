//! Following conversation-service's events.
//!
//! One task per replica watches conversation-service's WatchEvents stream (every tenant, with
//! the service credentials). For each event it forgets the permission cache's answers about
//! that conversation, then copies the event into this service's outbox, where the relay gives
//! it a position of this service: Subscribe delivers and replays membership and conversation
//! changes like message events, and a removed participant's stream stops at once, since the
//! next permission check asks conversation-service again. How far it has copied is stored with
//! the copy, so a restart resumes where it stopped; replicas copying the same event are
//! de-duplicated by event id. While conversation-service is unreachable the cache's TTL
//! (`permission_cache_ttl`) still bounds stale answers.

use std::time::Duration;

use messaging_outbox::store;
use messaging_proto::conversation::v1::watch_events_response::Item;
use sea_orm::DatabaseConnection;

use crate::events::EventBus;
use crate::peer::ConversationGate;
use crate::store::participants::ParticipantProjection;

/// The name under which the copy progress is stored.
pub const SOURCE: &str = "conversation-service";

const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Runs until the bus is closing (see `EventBus::closing`); a copy in progress completes.
pub async fn follow(
    db: DatabaseConnection,
    gate: ConversationGate,
    bus: EventBus,
    keys: crate::store::keys::Keyring,
) {
    let projection = ParticipantProjection { keys };
    let mut retry = FIRST_RETRY;
    let closing = bus.closing().clone();
    loop {
        // Not raced against `closing`: that would cancel a copy midway; follow_once gives way
        // at its waits.
        let outcome = follow_once(&db, &gate, &bus, &projection, &mut retry, &closing).await;
        if closing.is_cancelled() {
            return;
        }
        match outcome {
            Ok(()) => tracing::info!("conversation-service ended its event stream; reconnecting"),
            Err(error) => {
                tracing::warn!(%error, "following conversation-service's events failed; retrying")
            }
        }
        // Answers cached while the stream was down may be stale.
        gate.invalidate_all();
        tokio::select! {
            () = closing.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(LAST_RETRY);
    }
}

async fn follow_once(
    db: &DatabaseConnection,
    gate: &ConversationGate,
    bus: &EventBus,
    projection: &ParticipantProjection,
    retry: &mut Duration,
    closing: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    // The first time, from the oldest retained event: changes made before this service first
    // connected are part of its streams' history too (and none is missed in a race with start-up).
    let after = store::source_position(db, SOURCE).await?.unwrap_or(0);
    let mut stream = gate.watch_events(after).await?;
    *retry = FIRST_RETRY;
    // Copied through `after` (by this replica or another), and this replica's answers were all
    // dropped before connecting.
    gate.followed_through(after);
    loop {
        // Only the wait for the next event gives way to shutdown, never a copy.
        let first = tokio::select! {
            () = closing.cancelled() => return Ok(()),
            response = stream.message() => match response? {
                Some(response) => response,
                None => return Ok(()),
            },
        };
        // Whatever else has arrived already is copied in the same transaction: a burst of
        // changes costs one commit per batch, not one per event.
        let mut batch = vec![first];
        let mut ended = None;
        while batch.len() < COPY_BATCH {
            match futures::FutureExt::now_or_never(stream.message()) {
                Some(Ok(Some(response))) => batch.push(response),
                Some(Ok(None)) => {
                    ended = Some(Ok(()));
                    break;
                }
                Some(Err(status)) => {
                    ended = Some(Err(status.into()));
                    break;
                }
                None => break,
            }
        }
        let mut events = Vec::new();
        let mut through = None;
        for response in batch {
            match response.item {
                Some(Item::Event(event)) => {
                    let Ok(position) = event.position.parse::<i64>() else {
                        anyhow::bail!("conversation-service sent an event without a position");
                    };
                    through = Some(position);
                    if uuid::Uuid::parse_str(&event.conversation_id).is_ok() {
                        events.push((event, position));
                    }
                }
                Some(Item::ResyncRequired(resync)) => {
                    copy(db, gate, bus, projection, &mut events, &mut through).await?;
                    // Events were missed: nothing cached can be trusted.
                    tracing::warn!(position = %resync.position, "conversation-service events were missed; resynchronising");
                    gate.invalidate_all();
                    tracing::error!(
                        "participants changed in the missed events are not known to Subscribe streams until they change again"
                    );
                    let position = resync.position.parse::<i64>().unwrap_or_default();
                    store::set_source_position(db, SOURCE, position).await?;
                    gate.followed_through(position);
                }
                Some(Item::Heartbeat(_)) | None => {}
            }
        }
        copy(db, gate, bus, projection, &mut events, &mut through).await?;
        if let Some(ended) = ended {
            return ended;
        }
    }
}

/// Most events copied in one transaction.
const COPY_BATCH: usize = 256;

/// Copies `events` in one transaction, then drops what they make stale and records how far
/// this replica has followed (`through`, which may pass events that were not copied).
async fn copy(
    db: &DatabaseConnection,
    gate: &ConversationGate,
    bus: &EventBus,
    projection: &ParticipantProjection,
    events: &mut Vec<(messaging_outbox::contract::Event, i64)>,
    through: &mut Option<i64>,
) -> anyhow::Result<()> {
    if !events.is_empty() {
        store::copy_events(db, SOURCE, events, projection).await?;
        // After the copy: a fence that passes these positions finds the answers they made
        // stale gone, and the projection and streams up to date.
        for (event, _) in events.iter() {
            gate.invalidate_for(event);
        }
        bus.committed();
        events.clear();
    }
    if let Some(position) = through.take() {
        gate.followed_through(position);
    }
    Ok(())
}
