//! Subscribe over real gRPC, on SQLite and on PostgreSQL: every kind of change arrives, resume
//! delivers exactly what was missed (also with concurrent writers), too-old positions get the
//! resync signal, removed participants and other tenants see nothing, typing is ephemeral and
//! rate limited, idle streams get heartbeats and slow ones are ended with a clear status.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use messaging_e2e::{
    Backend, MessagingHarness, backend_tests, create_direct, create_group, eventually,
    is_conversation_event, remove_participant, subscribe, text_message as text,
};
use messaging_proto::conversation::v1::{self as conversation, Role};
use messaging_proto::message::v1::{self as pb, event::Payload, subscribe_response::Item};
use tonic::Code;
use tonic::codec::Streaming;

backend_tests!(
    every_kind_of_change_arrives_in_order,
    resume_delivers_exactly_what_was_missed,
    too_old_positions_get_a_resync_signal,
    removed_participants_stop_receiving,
    membership_changes_arrive_and_take_effect_at_once,
    streams_decide_without_conversation_service,
    other_tenants_events_never_arrive,
    typing_is_ephemeral_and_rate_limited,
    idle_streams_get_heartbeats,
    slow_subscribers_are_ended_with_a_resume_position,
    shutdown_ends_streams_with_a_resume_position,
);

const TENANT: &str = "acme";
const WAIT: Duration = Duration::from_secs(15);

/// A group of alice, bob, mia and vic. Streams opened after it see only the changes the test
/// makes: Subscribe fences, so the creation's events are behind its start.
async fn team(harness: &MessagingHarness, tenant: &str) -> String {
    let mut alice = harness.conversations.client(tenant, "alice");
    let members = [
        ("bob", Role::Member),
        ("mia", Role::Member),
        ("vic", Role::Viewer),
    ];
    // No waiting for message-service to take the change in: every request to it fences.
    create_group(&mut alice, "Team", &members).await
}

/// The next item that is not a heartbeat, within `WAIT`.
async fn next(stream: &mut Streaming<pb::SubscribeResponse>) -> Item {
    loop {
        let item = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("an item within the deadline")
            .expect("stream ok")
            .expect("stream open")
            .item
            .expect("item");
        if !matches!(item, Item::Heartbeat(_)) {
            return item;
        }
    }
}

/// The next event of any kind.
async fn next_any_event(stream: &mut Streaming<pb::SubscribeResponse>) -> pb::Event {
    match next(stream).await {
        Item::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The next event of message-service's own (conversation and participant changes skipped).
async fn next_event(stream: &mut Streaming<pb::SubscribeResponse>) -> pb::Event {
    loop {
        let event = next_any_event(stream).await;
        if !is_conversation_event(&event) {
            return event;
        }
    }
}

fn created_text(event: &pb::Event) -> Option<String> {
    match &event.payload {
        Some(Payload::MessageCreated(created)) => {
            match created.message.as_ref()?.content.as_ref()? {
                pb::message::Content::Text(text) => Some(text.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

async fn every_kind_of_change_arrives_in_order(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness, TENANT).await;
    let (mut alice, mut bob) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
    );
    let mut stream = subscribe(&mut bob, "").await;

    let message = alice
        .send_message(text(&id, "hello"))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("m");
    let ids = |message: &pb::Message| (id.clone(), message.message_id.clone());
    let (conversation_id, message_id) = ids(&message);
    alice
        .update_message(pb::UpdateMessageRequest {
            conversation_id: conversation_id.clone(),
            message_id: message_id.clone(),
            content: Some(pb::update_message_request::Content::Text(
                "hello, edited".to_owned(),
            )),
            ..Default::default()
        })
        .await
        .expect("edit");
    let reaction = pb::AddReactionRequest {
        conversation_id: conversation_id.clone(),
        message_id: message_id.clone(),
        emoji: "👍".to_owned(),
    };
    bob.add_reaction(reaction.clone()).await.expect("react");
    bob.add_reaction(reaction)
        .await
        .expect("react again: no event");
    bob.remove_reaction(pb::RemoveReactionRequest {
        conversation_id: conversation_id.clone(),
        message_id: message_id.clone(),
        emoji: "👍".to_owned(),
    })
    .await
    .expect("unreact");
    bob.mark_read(pb::MarkReadRequest {
        conversation_id: conversation_id.clone(),
        up_to_sequence: 1,
    })
    .await
    .expect("read");
    bob.mark_read(pb::MarkReadRequest {
        conversation_id: conversation_id.clone(),
        up_to_sequence: 1,
    })
    .await
    .expect("read again: no event");
    alice
        .delete_message(pb::DeleteMessageRequest {
            conversation_id: conversation_id.clone(),
            message_id: message_id.clone(),
        })
        .await
        .expect("delete");

    let mut kinds = Vec::new();
    let mut positions = Vec::new();
    for _ in 0..6 {
        let event = next_event(&mut stream).await;
        assert_eq!(
            (event.tenant_id.as_str(), event.conversation_id.as_str()),
            (TENANT, id.as_str())
        );
        assert!(!event.event_id.is_empty() && event.time.is_some());
        positions.push(event.position.parse::<i64>().expect("numeric position"));
        kinds.push(match event.payload.expect("payload") {
            Payload::MessageCreated(created) => {
                assert_eq!(created.message.expect("m").message_id, message_id);
                "created"
            }
            Payload::MessageEdited(edited) => {
                assert_eq!(
                    edited.message.expect("m").content,
                    Some(pb::message::Content::Text("hello, edited".to_owned()))
                );
                "edited"
            }
            Payload::ReactionAdded(added) => {
                assert_eq!(added.reaction.expect("r").user_id, "bob");
                "reaction added"
            }
            Payload::ReactionRemoved(_) => "reaction removed",
            Payload::ReadStateMoved(moved) => {
                assert_eq!(moved.read_state.expect("s").last_read_sequence, 1);
                "read"
            }
            Payload::MessageDeleted(deleted) => {
                assert_eq!(
                    (deleted.message_id.as_str(), deleted.sequence),
                    (message_id.as_str(), 1)
                );
                "deleted"
            }
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(
        kinds,
        vec![
            "created",
            "edited",
            "reaction added",
            "reaction removed",
            "read",
            "deleted"
        ]
    );
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{positions:?}"
    );
}

async fn resume_delivers_exactly_what_was_missed(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness, TENANT).await;
    let mut bob = harness.client(TENANT, "bob");
    let mut first = subscribe(&mut bob, "").await;
    let mut writers = Vec::new();
    for user in ["alice", "bob", "mia"] {
        let mut client = harness.client(TENANT, user);
        let id = id.clone();
        writers.push(tokio::spawn(async move {
            for index in 0..10 {
                client
                    .send_message(text(&id, &format!("{user} {index}")))
                    .await
                    .expect("send");
            }
        }));
    }
    // Take part of the stream, then disconnect while the writers go on.
    let mut seen = Vec::new();
    let mut last = String::new();
    for _ in 0..7 {
        let event = next_event(&mut first).await;
        seen.push(created_text(&event).expect("a message"));
        last = event.position;
    }
    drop(first);
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut resumed = subscribe(&mut bob, &last).await;
    let mut positions = vec![last.parse::<i64>().expect("position")];
    while seen.len() < 30 {
        let event = next_event(&mut resumed).await;
        positions.push(event.position.parse().expect("position"));
        seen.push(created_text(&event).expect("a message"));
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 30, "every message exactly once");
    assert!(
        positions.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "in order, none missing: {positions:?}"
    );
    // Per writer, the order of sending is kept.
    for user in ["alice", "bob", "mia"] {
        let own: Vec<&String> = seen.iter().filter(|text| text.starts_with(user)).collect();
        let expected: Vec<String> = (0..10).map(|index| format!("{user} {index}")).collect();
        assert_eq!(own, expected.iter().collect::<Vec<_>>());
    }
}

async fn too_old_positions_get_a_resync_signal(backend: Backend) {
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.events.retention = Duration::ZERO;
    })
    .await;
    let id = team(&harness, TENANT).await;
    let (mut alice, mut bob) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
    );
    alice
        .send_message(text(&id, "soon pruned"))
        .await
        .expect("send");
    // Pruning runs in the background: wait (with a deadline) until resuming from 0 says resync.
    eventually(WAIT, "pruning (resuming from 0 says resync)", || {
        let mut bob = bob.clone();
        async move {
            let mut stream = subscribe(&mut bob, "0").await;
            match next(&mut stream).await {
                Item::ResyncRequired(resync) => {
                    assert!(resync.position.parse::<i64>().expect("position") >= 1);
                    true
                }
                Item::Event(_) => false,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let status = bob
        .subscribe(pb::SubscribeRequest {
            resume_position: "not-a-position".to_owned(),
            conversation_ids: Vec::new(),
        })
        .await
        .expect_err("bad position");
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn removed_participants_stop_receiving(backend: Backend) {
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.permission_cache_ttl = Duration::ZERO;
    })
    .await;
    let id = team(&harness, TENANT).await;
    let (mut alice, mut bob) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
    );
    let mut stream = subscribe(&mut bob, "").await;
    alice
        .send_message(text(&id, "for bob"))
        .await
        .expect("send");
    assert_eq!(
        created_text(&next_event(&mut stream).await).as_deref(),
        Some("for bob")
    );
    let mut conversations = harness.conversations.client(TENANT, "alice");
    remove_participant(&mut conversations, &id, "bob").await;
    alice
        .send_message(text(&id, "not for bob"))
        .await
        .expect("send");
    // A conversation bob joins after subscribing still reaches him, and proves the order.
    let direct = create_direct(&mut conversations, "bob").await;
    alice
        .send_message(text(&direct, "direct to bob"))
        .await
        .expect("send");
    assert_eq!(
        created_text(&next_event(&mut stream).await).as_deref(),
        Some("direct to bob")
    );
}

async fn membership_changes_arrive_and_take_effect_at_once(backend: Backend) {
    // A long permission cache: whatever takes effect below does so through conversation-service's
    // events invalidating it, not through expiry.
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.permission_cache_ttl = Duration::from_secs(600);
    })
    .await;
    let id = team(&harness, TENANT).await;
    let (mut alice, mut bob) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
    );
    // Bob's permission to post is cached now.
    bob.send_message(text(&id, "bob was here"))
        .await
        .expect("send");
    // Zed's refusal is cached too.
    let mut zed = harness.client(TENANT, "zed");
    let refused = zed
        .send_message(text(&id, "let me in"))
        .await
        .expect_err("not a participant yet");
    assert_eq!(refused.code(), Code::NotFound);
    let mut stream = subscribe(&mut bob, "").await;
    let mut owner = harness.conversations.client(TENANT, "alice");
    owner
        .update_conversation(conversation::UpdateConversationRequest {
            conversation: Some(conversation::Conversation {
                conversation_id: id.clone(),
                title: "Team, renamed".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".to_owned()],
            }),
            ..Default::default()
        })
        .await
        .expect("rename");
    owner
        .add_participants(conversation::AddParticipantsRequest {
            conversation_id: id.clone(),
            participants: vec![conversation::ParticipantSpec {
                user_id: "zed".to_owned(),
                role: Role::Member.into(),
            }],
        })
        .await
        .expect("add");
    owner
        .update_participant_role(conversation::UpdateParticipantRoleRequest {
            conversation_id: id.clone(),
            user_id: "mia".to_owned(),
            role: Role::Admin.into(),
        })
        .await
        .expect("promote");
    owner
        .archive_conversation(conversation::ArchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("archive");
    owner
        .unarchive_conversation(conversation::UnarchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("unarchive");
    remove_participant(&mut owner, &id, "bob").await;

    let mut seen = Vec::new();
    let mut positions = Vec::new();
    for _ in 0..6 {
        let event = next_any_event(&mut stream).await;
        assert_eq!(
            (
                event.tenant_id.as_str(),
                event.conversation_id.as_str(),
                event.actor_id.as_str()
            ),
            (TENANT, id.as_str(), "alice")
        );
        positions.push(event.position.parse::<i64>().expect("numeric position"));
        seen.push(match event.payload.expect("payload") {
            Payload::ConversationUpdated(changed) => format!("updated {}", changed.title),
            Payload::ParticipantAdded(added) => format!("added {} {}", added.user_id, added.role),
            Payload::ParticipantRoleChanged(changed) => {
                format!("role {} {}", changed.user_id, changed.role)
            }
            Payload::ConversationArchived(changed) => format!("archived {}", changed.archived),
            Payload::ParticipantRemoved(removed) => format!("removed {}", removed.user_id),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(
        seen,
        vec![
            "updated Team, renamed",
            "added zed ROLE_MEMBER",
            "role mia ROLE_ADMIN",
            "archived true",
            "archived false",
            "removed bob",
        ]
    );
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));

    // Bob heard of his removal, so the cached "may post" is gone: refused at once.
    let status = bob
        .send_message(text(&id, "still here?"))
        .await
        .expect_err("removed");
    assert_eq!(status.code(), Code::NotFound);
    // And his stream no longer carries the group: a later message in a conversation he is in
    // arrives, the group's message before it does not.
    alice
        .send_message(text(&id, "not for bob"))
        .await
        .expect("send");
    let direct = create_direct(&mut owner, "bob").await;
    // The new conversation's own events reach bob as well, then its message.
    let created = next_any_event(&mut stream).await;
    assert_eq!(created.conversation_id, direct);
    assert!(matches!(
        created.payload,
        Some(Payload::ConversationCreated(_))
    ));
    alice
        .send_message(text(&direct, "direct to bob"))
        .await
        .expect("send");
    assert_eq!(
        created_text(&next_event(&mut stream).await).as_deref(),
        Some("direct to bob")
    );
    // Zed, refused before being added, may post now: the cached refusal went with the event.
    zed.send_message(text(&id, "zed says hi"))
        .await
        .expect("zed posts");
}

async fn streams_decide_without_conversation_service(backend: Backend) {
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.permission_cache_ttl = Duration::ZERO;
    })
    .await;
    let id = team(&harness, TENANT).await;
    let mut carols_own = harness.conversations.client(TENANT, "carol");
    let carols = create_group(&mut carols_own, "Carol's", &[]).await;
    let mut bob = harness.client(TENANT, "bob");
    let mut carol = harness.client(TENANT, "carol");
    let mut bobs_stream = subscribe(&mut bob, "").await;
    let mut carols_stream = subscribe(&mut carol, "").await;
    let MessagingHarness {
        conversations,
        message_database,
        ..
    } = harness;
    // conversation-service goes away; then events are committed (written straight into the
    // outbox, since no RPC could pass the permission gate now).
    drop(conversations);
    let db = message_service::store::connect(&message_database.settings)
        .await
        .expect("connect");
    for conversation in [&id, &carols] {
        messaging_outbox::store::record(
            &db,
            None,
            TENANT,
            uuid::Uuid::parse_str(conversation).expect("uuid"),
            "alice",
            messaging_platform::time::now(),
            Payload::MessageDeleted(pb::MessageDeleted {
                message_id: uuid::Uuid::now_v7().to_string(),
                sequence: 1,
            }),
        )
        .await
        .expect("record");
    }
    // Membership comes from the event flow: bob gets his team's event, carol only her own
    // (which comes after the team's, so she would have had the team's first).
    assert_eq!(next_event(&mut bobs_stream).await.conversation_id, id);
    assert_eq!(next_event(&mut carols_stream).await.conversation_id, carols);
}

async fn other_tenants_events_never_arrive(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let acme = team(&harness, TENANT).await;
    let globex = team(&harness, "globex").await;
    let mut globex_bob = harness.client("globex", "bob");
    let mut stream = subscribe(&mut globex_bob, "").await;
    let mut acme_alice = harness.client(TENANT, "alice");
    for index in 0..3 {
        acme_alice
            .send_message(text(&acme, &format!("acme secret {index}")))
            .await
            .expect("send");
    }
    let mut globex_alice = harness.client("globex", "alice");
    globex_alice
        .send_message(text(&globex, "globex news"))
        .await
        .expect("send");
    let event = next_event(&mut stream).await;
    assert_eq!(
        (event.tenant_id.as_str(), created_text(&event).as_deref()),
        ("globex", Some("globex news"))
    );
    // Replay filters by tenant too.
    let mut replay = subscribe(&mut globex_bob, "0").await;
    let event = next_event(&mut replay).await;
    assert_eq!(created_text(&event).as_deref(), Some("globex news"));
}

async fn typing_is_ephemeral_and_rate_limited(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness, TENANT).await;
    let (mut alice, mut bob, mut vic) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
        harness.client(TENANT, "vic"),
    );
    let mut stream = subscribe(&mut bob, "").await;
    let typing = pb::SendTypingIndicatorRequest {
        conversation_id: id.clone(),
        parent_id: String::new(),
    };
    alice
        .send_typing_indicator(typing.clone())
        .await
        .expect("typing");
    let status = alice
        .send_typing_indicator(typing.clone())
        .await
        .expect_err("too often");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        vic.send_typing_indicator(typing)
            .await
            .expect_err("viewer")
            .code(),
        Code::PermissionDenied
    );
    let event = next_event(&mut stream).await;
    assert!(event.position.is_empty(), "typing has no position");
    assert!(
        matches!(event.payload, Some(Payload::Typing(ref typing)) if typing.user_id == "alice")
    );
    alice
        .send_message(text(&id, "after typing"))
        .await
        .expect("send");
    assert_eq!(
        created_text(&next_event(&mut stream).await).as_deref(),
        Some("after typing")
    );
    // Never replayed.
    let mut replay = subscribe(&mut bob, "0").await;
    assert_eq!(
        created_text(&next_event(&mut replay).await).as_deref(),
        Some("after typing")
    );
}

async fn idle_streams_get_heartbeats(backend: Backend) {
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.events.heartbeat_interval = Duration::from_millis(50);
    })
    .await;
    team(&harness, TENANT).await;
    let mut bob = harness.client(TENANT, "bob");
    let mut stream = subscribe(&mut bob, "").await;
    let item = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open");
    assert!(matches!(item.item, Some(Item::Heartbeat(_))));
}

async fn slow_subscribers_are_ended_with_a_resume_position(backend: Backend) {
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.events.stream_buffer = 1;
        settings.message_service.events.bus_capacity = 16;
    })
    .await;
    let id = team(&harness, TENANT).await;
    let (mut alice, mut bob) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
    );
    let mut stream = subscribe(&mut bob, "").await;
    // Bob does not read while 300 messages of 16 KiB (about 4.8 MiB, well beyond the HTTP/2
    // flow-control windows of both ends) go out.
    let body = "x".repeat(16 * 1024);
    for _ in 0..300 {
        alice.send_message(text(&id, &body)).await.expect("send");
    }
    let deadline = Instant::now() + WAIT;
    let status = loop {
        assert!(Instant::now() < deadline, "the slow stream was never ended");
        match tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("in time")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("resume_position"),
        "{}",
        status.message()
    );
}

async fn shutdown_ends_streams_with_a_resume_position(backend: Backend) {
    let drain = Duration::from_secs(5);
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.drain_timeout = drain;
    })
    .await;
    let id = team(&harness, TENANT).await;
    let mut alice = harness.client(TENANT, "alice");
    let mut bob = harness.client(TENANT, "bob");
    let mut stream = subscribe(&mut bob, "").await;
    alice
        .send_message(text(&id, "before the restart"))
        .await
        .expect("send");
    let first = next_event(&mut stream).await;
    let MessagingHarness {
        conversations,
        messages,
        message_database,
        ..
    } = harness;

    // SIGTERM's path: the open stream does not hold the shutdown up.
    let started = Instant::now();
    messages.stop().await.expect("a clean stop");
    assert!(
        started.elapsed() < drain,
        "message-service took {:?} to stop with an open stream",
        started.elapsed()
    );
    let status = loop {
        match tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("the stream ends within the deadline")
        {
            Ok(Some(response)) if matches!(response.item, Some(Item::Heartbeat(_))) => continue,
            Ok(other) => panic!("expected the end of the stream, got {other:?}"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let resume = status
        .message()
        .split('"')
        .nth(1)
        .expect("a quoted resume position")
        .to_owned();
    assert!(
        resume.parse::<i64>().expect("position")
            >= first.position.parse::<i64>().expect("position"),
        "{}",
        status.message()
    );

    // Another instance takes over; resuming there misses nothing.
    let settings = messaging_e2e::message_settings(&message_database, &conversations.server.url());
    let messages = messaging_e2e::start_message_service(settings).await;
    let mut alice = messaging_e2e::message_client(&messages, TENANT, "alice").await;
    let mut bob = messaging_e2e::message_client(&messages, TENANT, "bob").await;
    let mut resumed = subscribe(&mut bob, &resume).await;
    alice
        .send_message(text(&id, "after the restart"))
        .await
        .expect("send");
    assert_eq!(
        created_text(&next_event(&mut resumed).await).as_deref(),
        Some("after the restart")
    );

    // conversation-service stops promptly too while message-service follows its events.
    let started = Instant::now();
    conversations.server.stop().await.expect("a clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "conversation-service took {:?} to stop while followed",
        started.elapsed()
    );
    messages.stop().await.expect("a clean stop");
}
