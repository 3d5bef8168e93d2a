//! Production shape: events reach NATS JetStream exactly once for a durable consumer that
//! de-duplicates by event id, across relay restarts, conversation-service's events included;
//! and two replicas of each service on one
//! PostgreSQL serve one subscriber, which can move from one replica to the other.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use messaging_e2e::{
    Backend, TestDatabase, conversation_client, conversation_settings, create_group, isolated_nats,
    message_client, message_settings, nats_or_skip, postgres_or_skip, start_conversation_service,
    start_message_service, text_message as text, wait_for_participant,
};
use messaging_proto::conversation::v1::Role;
use messaging_proto::message::v1::{self as pb, event::Payload, subscribe_response::Item};
use prost::Message as _;

const TENANT: &str = "acme";
const WAIT: Duration = Duration::from_secs(20);

async fn group(client: &mut messaging_e2e::ConversationClient) -> String {
    create_group(client, "Ops", &[("bob", Role::Member)]).await
}

async fn durable_consumer_gets_every_change_once(backend: Backend) {
    let Some(url) = nats_or_skip().await else {
        return;
    };
    let nats = isolated_nats(&url);
    let conversation_database = TestDatabase::new(backend);
    let mut conversation_config = conversation_settings(&conversation_database);
    conversation_config.conversation_service.events.nats = nats.clone();
    let conversations = start_conversation_service(conversation_config).await;
    let message_database = TestDatabase::new(backend);
    let settings = || {
        let mut settings = message_settings(&message_database, &conversations.url());
        settings.message_service.events.nats = nats.clone();
        settings
    };
    let id = group(&mut conversation_client(&conversations, TENANT, "alice").await).await;

    let mut sent = Vec::new();
    let first = start_message_service(settings()).await;
    let mut alice = message_client(&first, TENANT, "alice").await;
    for index in 0..10 {
        sent.push(
            alice
                .send_message(text(&id, &format!("first {index}")))
                .await
                .expect("send")
                .into_inner()
                .message
                .expect("m")
                .message_id,
        );
    }
    // Kill the replica (and its relay) without waiting for it to publish, then roll its
    // progress mark back as if it had died after publishing but before recording that.
    first.stop().await.expect("stop");
    let db = message_service::store::connect(&message_database.settings)
        .await
        .expect("db");
    use sea_orm::ConnectionTrait;
    // Only ever backwards: the killed relay may not even have reached position 3.
    db.execute_unprepared(
        "UPDATE event_relay SET nats_published_through = \
         CASE WHEN nats_published_through > 3 THEN 3 ELSE nats_published_through END",
    )
    .await
    .expect("rewind");

    let second = start_message_service(settings()).await;
    let mut alice = message_client(&second, TENANT, "alice").await;
    for index in 0..10 {
        sent.push(
            alice
                .send_message(text(&id, &format!("second {index}")))
                .await
                .expect("send")
                .into_inner()
                .message
                .expect("m")
                .message_id,
        );
    }

    // A consumer as another service would write it: durable, explicit acks, de-duplicating
    // by event id.
    let client = async_nats::connect(&url).await.expect("nats");
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream(&nats.stream).await.expect("stream");
    let consumer = stream
        .get_or_create_consumer(
            "search-indexer",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("search-indexer".to_owned()),
                filter_subject: format!("{}.{TENANT}.*.message.created", nats.subject_prefix),
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut by_event: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while by_event.len() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} events arrived",
            by_event.len(),
            sent.len()
        );
        let Ok(Some(message)) = tokio::time::timeout(WAIT, messages.next()).await else {
            continue;
        };
        let message = message.expect("message");
        let event = pb::Event::decode(message.payload.clone()).expect("an Event");
        let Some(Payload::MessageCreated(created)) = event.payload else {
            panic!("filtered to message.created")
        };
        by_event.insert(event.event_id, created.message.expect("m").message_id);
        message.ack().await.expect("ack");
    }
    let delivered: Vec<&String> = by_event.values().collect();
    let distinct: HashSet<&String> = delivered.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        sent.len(),
        "every message exactly once after de-duplication"
    );
    assert_eq!(distinct, sent.iter().collect::<HashSet<_>>());

    // conversation-service publishes its own events to the same stream.
    let consumer = stream
        .get_or_create_consumer(
            "membership-auditor",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("membership-auditor".to_owned()),
                filter_subject: format!("{}.{TENANT}.{id}.participant.added", nats.subject_prefix),
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut added = HashSet::new();
    while added.len() < 2 {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("participant events within the deadline")
            .expect("a message")
            .expect("message");
        let event = pb::Event::decode(message.payload.clone()).expect("an Event");
        let Some(Payload::ParticipantAdded(change)) = event.payload else {
            panic!("filtered to participant.added")
        };
        added.insert(change.user_id);
        message.ack().await.expect("ack");
    }
    assert_eq!(added, HashSet::from(["alice".to_owned(), "bob".to_owned()]));
    second.stop().await.expect("stop");
    jetstream
        .delete_stream(&nats.stream)
        .await
        .expect("clean up the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_durable_consumer_gets_every_change_once() {
    durable_consumer_gets_every_change_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_durable_consumer_gets_every_change_once() {
    if postgres_or_skip().await {
        durable_consumer_gets_every_change_once(Backend::Postgres).await;
    }
}

async fn next_event(stream: &mut tonic::codec::Streaming<pb::SubscribeResponse>) -> pb::Event {
    loop {
        let item = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open")
            .item;
        match item {
            Some(Item::Event(event)) => return event,
            Some(Item::Heartbeat(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn body(event: &pb::Event) -> String {
    match &event.payload {
        Some(Payload::MessageCreated(created)) => {
            match created.message.as_ref().and_then(|m| m.content.as_ref()) {
                Some(pb::message::Content::Text(text)) => text.clone(),
                _ => String::new(),
            }
        }
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_each_service_serve_one_subscriber() {
    if !postgres_or_skip().await {
        return;
    }
    let Some(url) = nats_or_skip().await else {
        return;
    };
    let nats = isolated_nats(&url);
    // Two replicas of each service; each pair shares one PostgreSQL schema.
    let conversation_database = TestDatabase::new(Backend::Postgres);
    let conversations_a =
        start_conversation_service(conversation_settings(&conversation_database)).await;
    let conversations_b =
        start_conversation_service(conversation_settings(&conversation_database)).await;
    let message_database = TestDatabase::new(Backend::Postgres);
    let replica = |conversations: &messaging_e2e::RunningServer| {
        let mut settings = message_settings(&message_database, &conversations.url());
        settings.message_service.events.nats = nats.clone();
        settings
    };
    let messages_a = start_message_service(replica(&conversations_a)).await;
    let messages_b = start_message_service(replica(&conversations_b)).await;

    let id = group(&mut conversation_client(&conversations_b, TENANT, "alice").await).await;
    let mut bob_on_a = message_client(&messages_a, TENANT, "bob").await;
    // Both replicas copy the group's creation events (once, by event id) before the test's own.
    wait_for_participant(&mut bob_on_a, &id, "bob").await;
    let mut stream = bob_on_a
        .subscribe(pb::SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    let mut alice_on_b = message_client(&messages_b, TENANT, "alice").await;
    for index in 0..5 {
        alice_on_b
            .send_message(text(&id, &format!("via b {index}")))
            .await
            .expect("send");
    }
    let mut received = Vec::new();
    let mut last = String::new();
    for _ in 0..3 {
        let event = next_event(&mut stream).await;
        received.push(body(&event));
        last = event.position;
    }
    assert_eq!(received, vec!["via b 0", "via b 1", "via b 2"]);
    drop(stream);

    // More traffic through A while bob is away; he comes back on B.
    let mut alice_on_a = message_client(&messages_a, TENANT, "alice").await;
    for index in 0..3 {
        alice_on_a
            .send_message(text(&id, &format!("via a {index}")))
            .await
            .expect("send");
    }
    let mut bob_on_b = message_client(&messages_b, TENANT, "bob").await;
    let mut resumed = bob_on_b
        .subscribe(pb::SubscribeRequest {
            resume_position: last.clone(),
            conversation_ids: Vec::new(),
        })
        .await
        .expect("resume")
        .into_inner();
    let mut positions = vec![last.parse::<i64>().expect("position")];
    let mut rest = Vec::new();
    for _ in 0..5 {
        let event = next_event(&mut resumed).await;
        positions.push(event.position.parse().expect("position"));
        rest.push(body(&event));
    }
    assert_eq!(
        rest,
        vec!["via b 3", "via b 4", "via a 0", "via a 1", "via a 2"]
    );
    assert!(
        positions.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{positions:?}"
    );
    let jetstream = async_nats::jetstream::new(async_nats::connect(&url).await.expect("nats"));
    jetstream
        .delete_stream(&nats.stream)
        .await
        .expect("clean up the stream");
}
