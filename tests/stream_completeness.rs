//! Subscribe streams miss nothing and leak nothing under load: concurrent senders in several
//! conversations while participants are added and removed, with every user subscribed.
//!
//! Each operation's start and acknowledgment are timed on the test's one clock. A user "was
//! surely a participant" during a send when its last change acknowledged before the send began
//! made it one and no change of it overlaps the send; "surely not" likewise. Sends that overlap
//! a change of the user are concurrent with it, and either outcome is right; every other send
//! must be in the user's stream exactly when the user was surely a participant. A last message
//! in a conversation of everyone marks the end of each stream (events arrive in position order).
//! Then each stream is replayed from its first event and must give the same events again.
//!
//! `make test` runs one small round per backend; `make soak` sets `MESSAGING_SOAK_ROUNDS` for
//! more and larger rounds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging_e2e::{
    Backend, MessagingHarness, backend_tests, create_group, remove_participant, subscribe,
};
use messaging_proto::conversation::v1::{self as conversation, Role};
use messaging_proto::message::v1 as pb;
use pb::event::Payload;
use tokio::time::Instant;

backend_tests!(streams_miss_nothing_under_membership_churn);

const TENANT: &str = "acme";
const OWNER: &str = "alice";
const SENTINEL: &str = "the end";

/// How big one round is and how many rounds run.
#[derive(Debug, Clone, Copy)]
struct Scale {
    rounds: usize,
    users: usize,
    conversations: usize,
    senders: usize,
    messages_per_sender: usize,
    changes: usize,
}

fn scale() -> Scale {
    let soak_rounds = std::env::var("MESSAGING_SOAK_ROUNDS")
        .ok()
        .and_then(|value| value.parse::<usize>().ok());
    match soak_rounds {
        Some(rounds) => Scale {
            rounds,
            users: 10,
            conversations: 6,
            senders: 6,
            messages_per_sender: 150,
            changes: 300,
        },
        None => Scale {
            rounds: 1,
            users: 6,
            conversations: 4,
            senders: 3,
            messages_per_sender: 40,
            changes: 60,
        },
    }
}

/// A small deterministic generator (xorshift), seeded per round, so a failure can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// One membership change of one user in one conversation, as the test saw it.
#[derive(Debug, Clone, Copy)]
struct Change {
    started: Instant,
    acknowledged: Instant,
    participant_after: bool,
}

/// One sent message, as the test saw it.
#[derive(Debug, Clone)]
struct Sent {
    conversation: String,
    message_id: String,
    started: Instant,
    acknowledged: Instant,
}

/// What a user's membership surely was during `[from, to]`, or `None` when a change of it
/// overlaps that time.
fn surely_participant(
    initially: bool,
    changes: &[Change],
    from: Instant,
    to: Instant,
) -> Option<bool> {
    if changes
        .iter()
        .any(|change| change.started < to && change.acknowledged > from)
    {
        return None;
    }
    Some(
        changes
            .iter()
            .filter(|change| change.acknowledged <= from)
            .max_by_key(|change| change.acknowledged)
            .map_or(initially, |change| change.participant_after),
    )
}

async fn read_until_sentinel(
    mut stream: tonic::Streaming<pb::SubscribeResponse>,
    sentinel_conversation: String,
) -> Vec<pb::Event> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let response = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the end marker arrives within the deadline")
            .expect("the stream goes on")
            .expect("the stream does not end");
        let Some(pb::subscribe_response::Item::Event(event)) = response.item else {
            continue;
        };
        let is_end = event.conversation_id == sentinel_conversation
            && matches!(&event.payload, Some(Payload::MessageCreated(created))
                if created.message.as_ref().and_then(|m| m.content.as_ref())
                    == Some(&pb::message::Content::Text(SENTINEL.to_owned())));
        events.push(event);
        if is_end {
            return events;
        }
    }
}

fn message_ids(events: &[pb::Event]) -> HashSet<String> {
    events
        .iter()
        .filter_map(|event| match &event.payload {
            Some(Payload::MessageCreated(created)) => {
                created.message.as_ref().map(|m| m.message_id.clone())
            }
            _ => None,
        })
        .collect()
}

async fn streams_miss_nothing_under_membership_churn(backend: Backend) {
    let scale = scale();
    let harness = MessagingHarness::start(backend).await;
    for round in 0..scale.rounds {
        run_round(&harness, scale, round).await;
    }
}

async fn run_round(harness: &MessagingHarness, scale: Scale, round: usize) {
    let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ (round as u64 + 1));
    let users: Vec<String> = (0..scale.users)
        .map(|index| format!("user{index}-r{round}"))
        .collect();
    let mut owner = harness.conversations.client(TENANT, OWNER);

    // Conversations with a random half of the users in each.
    let mut initially: HashMap<(String, String), bool> = HashMap::new();
    let mut conversations = Vec::new();
    for index in 0..scale.conversations {
        let members: Vec<&str> = users
            .iter()
            .filter(|_| random.below(2) == 0)
            .map(String::as_str)
            .collect();
        let specs: Vec<(&str, Role)> = members.iter().map(|user| (*user, Role::Member)).collect();
        let id = create_group(&mut owner, &format!("churn {round}.{index}"), &specs).await;
        for user in &users {
            initially.insert((id.clone(), user.clone()), members.contains(&user.as_str()));
        }
        conversations.push(id);
    }

    // Every user (and the owner, who is in every conversation) subscribes from now.
    let mut subscribers: Vec<String> = users.clone();
    subscribers.push(OWNER.to_owned());
    let mut clients: HashMap<String, messaging_e2e::MessageClient> = subscribers
        .iter()
        .map(|user| (user.clone(), harness.client(TENANT, user)))
        .collect();
    let mut streams = Vec::new();
    for user in &subscribers {
        let client = clients.get_mut(user).expect("client");
        streams.push((user.clone(), subscribe(client, "").await));
    }
    // The end marker's conversation exists before the readers start, so they know its id.
    let everyone: Vec<(&str, Role)> = users
        .iter()
        .map(|user| (user.as_str(), Role::Member))
        .collect();
    let sentinel_conversation = create_group(&mut owner, "the end", &everyone).await;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|(user, stream)| {
            let sentinel = sentinel_conversation.clone();
            (user, tokio::spawn(read_until_sentinel(stream, sentinel)))
        })
        .collect();

    // Senders (the owner, always a participant) and one membership changer run at once.
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut senders = Vec::new();
    for sender_index in 0..scale.senders {
        let mut client = harness.client(TENANT, OWNER);
        let conversations = conversations.clone();
        let sent = Arc::clone(&sent);
        let mut random = Random(random.below(usize::MAX) as u64 | 1);
        senders.push(tokio::spawn(async move {
            for message_index in 0..scale.messages_per_sender {
                let conversation = conversations[random.below(conversations.len())].clone();
                let started = Instant::now();
                let message = client
                    .send_message(messaging_e2e::text_message(
                        &conversation,
                        &format!("{sender_index}.{message_index}"),
                    ))
                    .await
                    .expect("the owner may always send")
                    .into_inner()
                    .message
                    .expect("message");
                let acknowledged = Instant::now();
                sent.lock().expect("lock").push(Sent {
                    conversation,
                    message_id: message.message_id,
                    started,
                    acknowledged,
                });
            }
        }));
    }
    let mut changes: HashMap<(String, String), Vec<Change>> = HashMap::new();
    let mut current = initially.clone();
    for _ in 0..scale.changes {
        let conversation = conversations[random.below(conversations.len())].clone();
        let user = users[random.below(users.len())].clone();
        let key = (conversation.clone(), user.clone());
        let participant = current[&key];
        let started = Instant::now();
        if participant {
            remove_participant(&mut owner, &conversation, &user).await;
        } else {
            owner
                .add_participants(conversation::AddParticipantsRequest {
                    conversation_id: conversation.clone(),
                    participants: vec![conversation::ParticipantSpec {
                        user_id: user.clone(),
                        role: Role::Member.into(),
                    }],
                })
                .await
                .expect("add participant");
        }
        let acknowledged = Instant::now();
        current.insert(key.clone(), !participant);
        changes.entry(key).or_default().push(Change {
            started,
            acknowledged,
            participant_after: !participant,
        });
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let mut owner_messages = harness.client(TENANT, OWNER);
    owner_messages
        .send_message(messaging_e2e::text_message(
            &sentinel_conversation,
            SENTINEL,
        ))
        .await
        .expect("end marker");

    let sent = sent.lock().expect("lock").clone();
    let (mut checked, mut concurrent, mut missing, mut leaked) = (0, 0, Vec::new(), Vec::new());
    let mut delivered_total = 0;
    let mut streams_read = Vec::new();
    for (user, reader) in readers {
        let events = reader.await.expect("reader");
        delivered_total += events.len();
        // In position order, each event once.
        let positions: Vec<i64> = events
            .iter()
            .map(|event| event.position.parse().expect("position"))
            .collect();
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "{user}'s events are out of order: {positions:?}"
        );
        let received = message_ids(&events);
        for message in &sent {
            let surely = if user == OWNER {
                Some(true)
            } else {
                let key = (message.conversation.clone(), user.clone());
                surely_participant(
                    initially[&key],
                    changes.get(&key).map_or(&[][..], Vec::as_slice),
                    message.started,
                    message.acknowledged,
                )
            };
            match (surely, received.contains(&message.message_id)) {
                (None, _) => concurrent += 1,
                (Some(true), false) => missing.push((user.clone(), message.message_id.clone())),
                (Some(false), true) => leaked.push((user.clone(), message.message_id.clone())),
                (Some(_), _) => checked += 1,
            }
        }
        streams_read.push((user, events));
    }
    println!(
        "round {round}: {} messages, {} membership changes, {delivered_total} events delivered; \
         {checked} (user, message) pairs decided, {concurrent} concurrent with a change",
        sent.len(),
        scale.changes
    );
    assert!(
        missing.is_empty(),
        "{} messages missing from streams of users who were surely participants: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        leaked.is_empty(),
        "{} messages delivered to users who were surely not participants: {:?}",
        leaked.len(),
        &leaked[..leaked.len().min(10)]
    );
    assert!(checked > 0, "nothing was decided: the test proves nothing");
    for (user, events) in streams_read {
        // Replaying from just before the first event gives the same events again.
        let first = events.first().expect("at least the end marker");
        let before_first = (first.position.parse::<i64>().expect("position") - 1).to_string();
        let client = clients.get_mut(&user).expect("client");
        let replayed = read_until_sentinel(
            subscribe(client, &before_first).await,
            sentinel_conversation.clone(),
        )
        .await;
        let ids = |events: &[pb::Event]| -> Vec<String> {
            events.iter().map(|event| event.event_id.clone()).collect()
        };
        assert_eq!(
            ids(&replayed),
            ids(&events),
            "{user}: the replay from {before_first} differs from the live stream"
        );
    }
}
