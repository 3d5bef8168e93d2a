//! MessageService over real gRPC with both services running, on SQLite and on PostgreSQL:
//! reactions, read state and unread counts.

use messaging_e2e::{
    Backend, MessageClient, MessagingHarness, backend_tests, create_direct, send,
    text_message as text, violated_fields,
};
use messaging_proto::message::v1 as pb;
use tonic::Code;

#[path = "messages/common.rs"]
mod common;
use common::*;

backend_tests!(
    reactions_follow_the_rules,
    read_state_and_unread_counts,
    concurrent_mark_reads_of_one_user,
);

async fn reactions_follow_the_rules(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let (mut alice, mut bob, mut vic) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
        harness.client(TENANT, "vic"),
    );
    let message = send(&mut alice, text(&id, "react to me")).await;
    let react = |emoji: &str| pb::AddReactionRequest {
        conversation_id: id.clone(),
        message_id: message.message_id.clone(),
        emoji: emoji.to_owned(),
    };
    bob.add_reaction(react("👍")).await.expect("react");
    let twice = bob
        .add_reaction(react("👍"))
        .await
        .expect("react again")
        .into_inner();
    assert_eq!(
        twice.reactions,
        vec![pb::ReactionSummary {
            emoji: "👍".to_owned(),
            count: 1,
            reacted_by_caller: true
        }]
    );
    alice.add_reaction(react("👍")).await.expect("react");
    let summary = alice
        .add_reaction(react(":party_parrot:"))
        .await
        .expect("react")
        .into_inner();
    assert_eq!(
        summary.reactions,
        vec![
            pb::ReactionSummary {
                emoji: "👍".to_owned(),
                count: 2,
                reacted_by_caller: true
            },
            pb::ReactionSummary {
                emoji: ":party_parrot:".to_owned(),
                count: 1,
                reacted_by_caller: true
            },
        ]
    );
    assert_eq!(
        code(vic.add_reaction(react("👍")).await),
        Code::PermissionDenied,
        "viewers may not react"
    );
    let bad = bob
        .add_reaction(react("not an emoji"))
        .await
        .expect_err("bad emoji");
    assert_eq!(violated_fields(&bad), vec!["emoji"]);
    // Messages carry the summary as each reader sees it.
    let seen_by_vic = vic
        .get_message(pb::GetMessageRequest {
            conversation_id: id.clone(),
            message_id: message.message_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .message
        .expect("m");
    assert_eq!(
        seen_by_vic.reactions[0],
        pb::ReactionSummary {
            emoji: "👍".to_owned(),
            count: 2,
            reacted_by_caller: false
        }
    );
    // Who reacted, page by page.
    let mut who = Vec::new();
    let mut token = String::new();
    loop {
        let page = vic
            .list_reactions(pb::ListReactionsRequest {
                conversation_id: id.clone(),
                message_id: message.message_id.clone(),
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        who.extend(page.reactions.into_iter().map(|r| (r.user_id, r.emoji)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(who.len(), 3);
    let removed = bob
        .remove_reaction(pb::RemoveReactionRequest {
            conversation_id: id.clone(),
            message_id: message.message_id.clone(),
            emoji: "👍".to_owned(),
        })
        .await
        .expect("remove")
        .into_inner();
    assert_eq!(
        removed.reactions[0],
        pb::ReactionSummary {
            emoji: "👍".to_owned(),
            count: 1,
            reacted_by_caller: false
        }
    );
}

async fn read_state_and_unread_counts(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let (mut alice, mut bob) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
    );
    send(&mut alice, text(&id, "one")).await;
    send(
        &mut alice,
        pb::SendMessageRequest {
            mention_ids: vec!["bob".to_owned()],
            ..text(&id, "two, @bob")
        },
    )
    .await;
    let third = send(
        &mut alice,
        pb::SendMessageRequest {
            mention_ids: vec!["bob".to_owned()],
            ..text(&id, "three, @bob")
        },
    )
    .await;
    let counts = |client: &mut MessageClient, ids: Vec<String>| {
        let mut client = client.clone();
        async move {
            client
                .get_unread_counts(pb::GetUnreadCountsRequest {
                    conversation_ids: ids,
                })
                .await
                .expect("counts")
                .into_inner()
                .counts
        }
    };
    let bobs = counts(&mut bob, vec![id.clone()]).await;
    assert_eq!(
        (
            bobs[0].unread_count,
            bobs[0].unread_mention_count,
            bobs[0].last_sequence
        ),
        (3, 2, 3)
    );
    let alices = counts(&mut alice, vec![id.clone()]).await;
    assert_eq!(alices[0].unread_count, 0, "own messages do not count");

    let mark = |up_to: i64| pb::MarkReadRequest {
        conversation_id: id.clone(),
        up_to_sequence: up_to,
    };
    let state = bob
        .mark_read(mark(2))
        .await
        .expect("mark")
        .into_inner()
        .read_state
        .expect("state");
    assert_eq!(state.last_read_sequence, 2);
    let backwards = bob
        .mark_read(mark(1))
        .await
        .expect("mark")
        .into_inner()
        .read_state
        .expect("state");
    assert_eq!(
        backwards.last_read_sequence, 2,
        "watermarks only move forward"
    );
    let bobs = counts(&mut bob, vec![id.clone()]).await;
    assert_eq!(
        (
            bobs[0].unread_count,
            bobs[0].unread_mention_count,
            bobs[0].last_read_sequence
        ),
        (1, 1, 2)
    );

    // Deleted messages stop counting.
    alice
        .delete_message(pb::DeleteMessageRequest {
            conversation_id: id.clone(),
            message_id: third.message_id,
        })
        .await
        .expect("delete");
    let bobs = counts(&mut bob, vec![id.clone()]).await;
    assert_eq!((bobs[0].unread_count, bobs[0].unread_mention_count), (0, 0));
    // Beyond the end is clamped.
    let clamped = bob
        .mark_read(mark(99))
        .await
        .expect("mark")
        .into_inner()
        .read_state
        .expect("state");
    assert_eq!(clamped.last_read_sequence, 3);

    // Read receipts for everyone who read something.
    let receipts = bob
        .get_read_state(pb::GetReadStateRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("state")
        .into_inner();
    let receipts: Vec<(String, i64)> = receipts
        .read_states
        .into_iter()
        .map(|s| (s.user_id, s.last_read_sequence))
        .collect();
    assert_eq!(
        receipts,
        vec![("alice".to_owned(), 3), ("bob".to_owned(), 3)]
    );

    // By default: every conversation the caller is in.
    let mut alice_conversations = harness.conversations.client(TENANT, "alice");
    let other = create_direct(&mut alice_conversations, "bob").await;
    send(&mut alice, text(&other, "psst")).await;
    let all = counts(&mut bob, Vec::new()).await;
    let mut all: Vec<(String, i64)> = all
        .into_iter()
        .map(|c| (c.conversation_id, c.unread_count))
        .collect();
    all.sort();
    let mut expected = vec![(id.clone(), 0), (other, 1)];
    expected.sort();
    assert_eq!(all, expected);
}

/// 32 MarkRead calls of one user at once, the first ones racing to create the read state: none
/// fails, the watermark ends at the latest message, and the moves (one event each) only go
/// forward.
async fn concurrent_mark_reads_of_one_user(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let (mut alice, bob, mut mia) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
        harness.client(TENANT, "mia"),
    );
    for index in 0..10 {
        send(&mut alice, text(&id, &format!("message {index}"))).await;
    }
    let mut events = messaging_e2e::subscribe(&mut mia, "").await;
    let calls = (0..32).map(|index| {
        let mut bob = bob.clone();
        let request = pb::MarkReadRequest {
            conversation_id: id.clone(),
            up_to_sequence: index % 12 + 1,
        };
        async move { bob.mark_read(request).await }
    });
    for answer in futures::future::join_all(calls).await {
        let state = answer.expect("every MarkRead succeeds").into_inner();
        let sequence = state.read_state.expect("state").last_read_sequence;
        assert!((1..=10).contains(&sequence), "{sequence}");
    }
    let mut moves = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while moves.last() != Some(&10) {
            let response = events.message().await.expect("stream").expect("open");
            if let Some(pb::subscribe_response::Item::Event(event)) = response.item
                && let Some(pb::event::Payload::ReadStateMoved(moved)) = event.payload
            {
                let state = moved.read_state.expect("state");
                assert_eq!(state.user_id, "bob");
                moves.push(state.last_read_sequence);
            }
        }
    })
    .await
    .expect("the move to 10 arrives");
    assert!(
        moves.windows(2).all(|pair| pair[0] < pair[1]),
        "moves only go forward: {moves:?}"
    );
    let states = bob
        .clone()
        .get_read_state(pb::GetReadStateRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("read state")
        .into_inner();
    let bobs: Vec<i64> = states
        .read_states
        .iter()
        .filter(|state| state.user_id == "bob")
        .map(|state| state.last_read_sequence)
        .collect();
    assert_eq!(bobs, vec![10]);
}
