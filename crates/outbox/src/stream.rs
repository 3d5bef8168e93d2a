//! Replay-then-live event streams, as Subscribe and WatchEvents serve them.
//!
//! A stream subscribes to the bus first, then reads the relay's head and replays stored events
//! after the resume position up to that head, then goes on with live events above the head:
//! nothing between replay and live is lost or repeated. Too old a position (pruned) gets a
//! resync item instead of a silent skip. Memory per stream is bounded: when a client reads too
//! slowly and its buffer fills, or the bus outruns it, the stream ends with RESOURCE_EXHAUSTED
//! naming the position to resume from. Idle streams get heartbeats.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use messaging_proto::message::v1 as pb;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{BusEvent, EventBus, decode, store};

/// One item of a stream, before the service wraps it in its response message.
#[derive(Debug, Clone)]
pub enum Item {
    /// An event.
    Event(Box<pb::Event>),
    /// The resume position was too old or unknown: reload, then go on from this position.
    ResyncRequired(i64),
    /// Nothing happened for a while.
    Heartbeat(prost_types::Timestamp),
}

/// Decides which events a stream delivers.
pub trait Admission: Send + 'static {
    /// Called once before anything is delivered, within a database snapshot whose relay head
    /// is `head`: sets up what the decisions rest on as it was at position `from` (the resume
    /// position, or `head` for a stream from now), since events are then offered from `from`
    /// on, in order.
    fn prepare(
        &mut self,
        _snapshot: &DatabaseTransaction,
        _head: i64,
        _from: i64,
    ) -> impl Future<Output = Result<(), DbErr>> + Send {
        async { Ok(()) }
    }

    /// Whether `event` goes to this stream; [`Undecided`] when that cannot be known now (a
    /// permission service down): the stream then ends with UNAVAILABLE and the position to
    /// resume from, rather than silently dropping the event.
    fn admits(&mut self, event: &BusEvent) -> impl Future<Output = Result<bool, Undecided>> + Send;
}

/// Whether an event may be delivered could not be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided;

/// Admits every event: streams for services that filter themselves.
#[derive(Debug, Clone, Copy)]
pub struct AdmitAll;

impl Admission for AdmitAll {
    async fn admits(&mut self, _event: &BusEvent) -> Result<bool, Undecided> {
        Ok(true)
    }
}

/// Parses a resume position as clients send it: empty is "from now".
pub fn parse_position(
    field: &str,
    value: &str,
) -> Result<Option<i64>, tonic_types::FieldViolation> {
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<i64>() {
        Ok(position) if position >= 0 => Ok(Some(position)),
        _ => Err(tonic_types::FieldViolation::new(
            field,
            "is not a position this service issued",
        )),
    }
}

/// Where a stream starts and how it behaves.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Only this tenant's events; `None` for every tenant (services only).
    pub tenant: Option<String>,
    /// The last position the client processed; `None` for "from now".
    pub resume: Option<i64>,
    /// Heartbeat period of idle streams.
    pub heartbeat_interval: Duration,
    /// Items buffered before the stream counts as too slow.
    pub buffer: usize,
    /// The request field a client resumes with, named in RESOURCE_EXHAUSTED messages.
    pub resume_field: &'static str,
}

/// A stream of wrapped items.
pub type ItemStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

const REPLAY_BATCH: u64 = 500;

enum Sent {
    Ok,
    Closed,
    TooSlow,
}

fn too_slow(field: &str, cursor: i64) -> Status {
    Status::resource_exhausted(format!(
        "subscriber too slow: resume with {field} \"{cursor}\""
    ))
}

fn undecided(field: &str, cursor: i64) -> Status {
    Status::unavailable(format!(
        "permissions cannot be checked right now: resume with {field} \"{cursor}\""
    ))
}

fn shutting_down(field: &str, cursor: i64) -> Status {
    Status::unavailable(format!(
        "server shutting down: resume with {field} \"{cursor}\" on another replica or later"
    ))
}

fn replay_failed(error: &DbErr) -> Status {
    tracing::warn!(%error, "replay failed");
    Status::unavailable("replay failed; resume from your last position")
}

/// Opens a stream: `wrap` turns items into the RPC's response message.
pub async fn open<A, R, W>(
    db: &DatabaseConnection,
    bus: &EventBus,
    spec: StreamSpec,
    mut admission: A,
    wrap: W,
) -> Result<ItemStream<R>, DbErr>
where
    A: Admission,
    R: Send + 'static,
    W: Fn(Item) -> R + Send + Sync + 'static,
{
    let mut live = bus.subscribe();
    let snapshot = messaging_platform::db::begin_snapshot(db).await?;
    let (head, pruned_through) = store::relay_state(&snapshot).await?;
    let from = match spec.resume {
        Some(position) if position >= pruned_through && position <= head => position,
        _ => head,
    };
    admission.prepare(&snapshot, head, from).await?;
    snapshot.commit().await?;
    // Boxed items: the channel allocates its slots in blocks of 32 up front, and a boxed
    // slot is a pointer rather than a whole response, which keeps idle streams small.
    let (sender, receiver) = mpsc::channel::<Box<R>>(spec.buffer.max(1));
    let (terminal_sender, terminal) = oneshot::channel::<Status>();
    let db = db.clone();
    let bus = bus.clone();
    tokio::spawn(async move {
        let wrap = &wrap;
        let offer = |item: Item| match sender.try_send(Box::new(wrap(item))) {
            Ok(()) => Sent::Ok,
            Err(mpsc::error::TrySendError::Full(_)) => Sent::TooSlow,
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Closed,
        };
        // Replayed events come from the database, not the bus: they wait for a client that
        // reads (up to a heartbeat interval per item) rather than end its stream at once.
        let patience = spec.heartbeat_interval.max(Duration::from_millis(1));
        let offer_replayed = |item: Item| {
            let sender = &sender;
            async move {
                match tokio::time::timeout(patience, sender.send(Box::new(wrap(item)))).await {
                    Ok(Ok(())) => Sent::Ok,
                    Ok(Err(_)) => Sent::Closed,
                    Err(_) => Sent::TooSlow,
                }
            }
        };
        let tenant = spec.tenant.as_deref();
        let mut cursor = head;
        let outcome = async {
            match spec.resume {
                Some(position) if position < pruned_through || position > head => {
                    if let Sent::Closed | Sent::TooSlow = offer(Item::ResyncRequired(head)) {
                        return None;
                    }
                }
                Some(position) => {
                    let mut after = position;
                    while after < head {
                        let rows = match store::events_after(&db, tenant, after, Some(head), REPLAY_BATCH).await {
                            Ok(rows) => rows,
                            Err(error) => return Some(replay_failed(&error)),
                        };
                        // Pruning may have passed the cursor since the state was read: then
                        // events are missing and the client must resync rather than skip them.
                        match store::relay_state(&db).await {
                            Ok((_, pruned_now)) if pruned_now > after => {
                                if let Sent::Closed | Sent::TooSlow = offer(Item::ResyncRequired(head)) {
                                    return None;
                                }
                                break;
                            }
                            Ok(_) => {}
                            Err(error) => return Some(replay_failed(&error)),
                        }
                        let Some(last) = rows.last().and_then(|row| row.position) else { break };
                        if bus.closing().is_cancelled() {
                            return Some(shutting_down(spec.resume_field, after));
                        }
                        for row in rows {
                            let Some(event) = decode(&bus, &row).await else { continue };
                            let before = row.position.map_or(after, |p| p - 1);
                            match admission.admits(&event).await {
                                Ok(true) => match offer_replayed(Item::Event(Box::new(event.event))).await {
                                    Sent::Ok => {}
                                    Sent::Closed => return None,
                                    Sent::TooSlow => return Some(too_slow(spec.resume_field, before)),
                                },
                                Ok(false) => {}
                                Err(Undecided) => return Some(undecided(spec.resume_field, before)),
                            }
                        }
                        after = last;
                    }
                }
                None => {}
            }
            let mut heartbeat = tokio::time::interval(spec.heartbeat_interval.max(Duration::from_millis(1)));
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
                            if tenant.is_some_and(|tenant| tenant != event.tenant_id) {
                                continue;
                            }
                            match admission.admits(&event).await {
                                Ok(true) => {}
                                Ok(false) => continue,
                                Err(Undecided) => {
                                    return Some(undecided(spec.resume_field, event.position.map_or(cursor, |p| p - 1)));
                                }
                            }
                            match offer(Item::Event(Box::new(event.event.clone()))) {
                                Sent::Ok => heartbeat.reset(),
                                Sent::Closed => return None,
                                Sent::TooSlow => return Some(too_slow(spec.resume_field, event.position.map_or(cursor, |p| p - 1))),
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => return Some(too_slow(spec.resume_field, cursor)),
                        Err(broadcast::error::RecvError::Closed) => return Some(Status::unavailable("server shutting down")),
                    },
                    _ = heartbeat.tick() => {
                        match offer(Item::Heartbeat(messaging_platform::time::to_timestamp(chrono::Utc::now()))) {
                            Sent::Ok => {}
                            Sent::Closed => return None,
                            Sent::TooSlow => return Some(too_slow(spec.resume_field, cursor)),
                        }
                    }
                    () = sender.closed() => return None,
                    () = bus.closing().cancelled() => return Some(shutting_down(spec.resume_field, cursor)),
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
    Ok(Box::pin(
        ReceiverStream::new(receiver)
            .map(|item| Ok(*item))
            .chain(terminal),
    ))
}
