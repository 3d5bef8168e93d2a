//! MessageService over real gRPC with both services running, on SQLite and on PostgreSQL:
//! sending (idempotent, gap-free), listing, edits, tombstones, threads, reactions, read state,
//! unread counts, permissions through conversation-service, tenant isolation and bad input.

use std::collections::HashSet;
use std::time::Duration;

use messaging_e2e::{
    Backend, MessageClient, MessagingHarness, RunningServer, backend_tests, create_direct,
    create_group, eventually, remove_participant, send, text_message as text, violated_fields,
};
use messaging_proto::conversation::v1::{self as conversation, ConversationType, Role};
use messaging_proto::message::v1::{self as pb, ListDirection};
use tonic::Code;

backend_tests!(
    send_get_and_list_in_both_directions,
    idempotent_send_under_concurrent_retries,
    sequences_are_gap_free_under_concurrent_senders,
    edits_keep_revisions_and_deletes_leave_tombstones,
    threads_count_their_replies,
    reactions_follow_the_rules,
    read_state_and_unread_counts,
    roles_and_membership_decide_access,
    other_tenants_get_not_found_everywhere,
    bad_input_names_the_fields,
    the_edit_window_is_enforced,
    removed_participants_lose_access_within_the_cache_ttl,
);

const TENANT: &str = "acme";

/// A group owned by alice with admin ada, members bob and mia, viewer vic.
async fn team(harness: &MessagingHarness) -> String {
    let mut alice = harness.conversations.client(TENANT, "alice");
    let members = [
        ("ada", Role::Admin),
        ("bob", Role::Member),
        ("mia", Role::Member),
        ("vic", Role::Viewer),
    ];
    create_group(&mut alice, "Team", &members).await
}

fn body(message: &pb::Message) -> &str {
    match &message.content {
        Some(pb::message::Content::Text(text)) => text,
        _ => "",
    }
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.map_or_else(|status| status.code(), |_| Code::Ok)
}

async fn list(
    client: &mut MessageClient,
    request: pb::ListMessagesRequest,
) -> pb::ListMessagesResponse {
    client
        .list_messages(request)
        .await
        .expect("list")
        .into_inner()
}

fn sequences(messages: &[pb::Message]) -> Vec<i64> {
    messages.iter().map(|message| message.sequence).collect()
}

async fn send_get_and_list_in_both_directions(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let mut alice = harness.client(TENANT, "alice");
    let mut bob = harness.client(TENANT, "bob");
    let mut sent = Vec::new();
    for index in 1..=7 {
        let client = if index % 2 == 0 { &mut bob } else { &mut alice };
        sent.push(send(client, text(&id, &format!("message {index}"))).await);
    }
    assert_eq!(sequences(&sent), (1..=7).collect::<Vec<_>>());
    let got = alice
        .get_message(pb::GetMessageRequest {
            conversation_id: id.clone(),
            message_id: sent[2].message_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(
        (body(&got), got.sender_id.as_str(), got.sequence),
        ("message 3", "alice", 3)
    );

    // Backwards from the newest, page by page.
    let base = pb::ListMessagesRequest {
        conversation_id: id.clone(),
        page_size: 3,
        ..Default::default()
    };
    let first = list(&mut alice, base.clone()).await;
    assert_eq!(sequences(&first.messages), vec![7, 6, 5]);
    let second = list(
        &mut alice,
        pb::ListMessagesRequest {
            page_token: first.next_page_token,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(sequences(&second.messages), vec![4, 3, 2]);
    let third = list(
        &mut alice,
        pb::ListMessagesRequest {
            page_token: second.next_page_token,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(sequences(&third.messages), vec![1]);
    assert!(third.next_page_token.is_empty());

    // Forwards from the oldest and from a position.
    let forward = pb::ListMessagesRequest {
        direction: ListDirection::Forward.into(),
        ..base.clone()
    };
    let page = list(&mut alice, forward.clone()).await;
    assert_eq!(sequences(&page.messages), vec![1, 2, 3]);
    let page = list(
        &mut alice,
        pb::ListMessagesRequest {
            page_token: page.next_page_token,
            ..forward.clone()
        },
    )
    .await;
    assert_eq!(sequences(&page.messages), vec![4, 5, 6]);
    let from_five = list(
        &mut alice,
        pb::ListMessagesRequest {
            start_sequence: 5,
            ..forward.clone()
        },
    )
    .await;
    assert_eq!(sequences(&from_five.messages), vec![5, 6, 7]);
    let back_from_five = list(
        &mut alice,
        pb::ListMessagesRequest {
            start_sequence: 5,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(sequences(&back_from_five.messages), vec![5, 4, 3]);

    // Around a message: both sides, with a token each way.
    let around = list(
        &mut alice,
        pb::ListMessagesRequest {
            direction: ListDirection::Around.into(),
            around_message_id: sent[3].message_id.clone(),
            page_size: 3,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(sequences(&around.messages), vec![3, 4, 5]);
    let older = list(
        &mut alice,
        pb::ListMessagesRequest {
            page_token: around.previous_page_token,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(sequences(&older.messages), vec![2, 1]);
    let newer = list(
        &mut alice,
        pb::ListMessagesRequest {
            page_token: around.next_page_token,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(sequences(&newer.messages), vec![6, 7]);

    // Filters: sender and time range.
    let bobs = list(
        &mut alice,
        pb::ListMessagesRequest {
            sender_id: "bob".to_owned(),
            page_size: 10,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(sequences(&bobs.messages), vec![6, 4, 2]);
    let since_five = list(
        &mut alice,
        pb::ListMessagesRequest {
            start_time: sent[4].create_time,
            end_time: sent[6].create_time,
            page_size: 10,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(sequences(&since_five.messages), vec![6, 5]);
    let with_attachments = list(
        &mut alice,
        pb::ListMessagesRequest {
            has_attachments: true,
            ..base.clone()
        },
    )
    .await;
    assert!(with_attachments.messages.is_empty());
    // A token from one filter does not fit another.
    let filtered = list(
        &mut alice,
        pb::ListMessagesRequest {
            sender_id: "bob".to_owned(),
            page_size: 1,
            ..base.clone()
        },
    )
    .await;
    let status = alice
        .list_messages(pb::ListMessagesRequest {
            page_token: filtered.next_page_token,
            ..base.clone()
        })
        .await
        .expect_err("mismatched token");
    assert_eq!(violated_fields(&status), vec!["page_token"]);

    // End-to-end payloads come back byte for byte.
    let payload = pb::EncryptedPayload {
        ciphertext: vec![0, 159, 146, 150, 255],
        algorithm: "mls.v1".to_owned(),
        key_id: "epoch-7".to_owned(),
        search_tokens: Vec::new(),
    };
    let sealed = send(
        &mut alice,
        pb::SendMessageRequest {
            conversation_id: id.clone(),
            content: Some(pb::send_message_request::Content::Encrypted(
                payload.clone(),
            )),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        sealed.content,
        Some(pb::message::Content::Encrypted(payload))
    );
}

async fn idempotent_send_under_concurrent_retries(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let request = pb::SendMessageRequest {
        request_id: "retry-1".to_owned(),
        ..text(&id, "exactly once")
    };
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut client = harness.client(TENANT, "bob");
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            client.send_message(request).await.map(|r| r.into_inner())
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(
            task.await
                .expect("join")
                .expect("send")
                .message
                .expect("m")
                .message_id,
        );
    }
    assert_eq!(ids.len(), 1);
    let mut bob = harness.client(TENANT, "bob");
    let all = list(
        &mut bob,
        pb::ListMessagesRequest {
            conversation_id: id.clone(),
            page_size: 50,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(sequences(&all.messages), vec![1]);
    // Same key, other content: a conflict, not a silent duplicate.
    let status = bob
        .send_message(pb::SendMessageRequest {
            request_id: "retry-1".to_owned(),
            ..text(&id, "something else")
        })
        .await
        .expect_err("conflict");
    assert_eq!(status.code(), Code::AlreadyExists);
    // The same key from another sender is another message.
    let mut mia = harness.client(TENANT, "mia");
    let other = send(
        &mut mia,
        pb::SendMessageRequest {
            request_id: "retry-1".to_owned(),
            ..text(&id, "exactly once")
        },
    )
    .await;
    assert_eq!(other.sequence, 2);
    assert_eq!(other.request_id, "retry-1");
}

async fn sequences_are_gap_free_under_concurrent_senders(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let mut tasks = Vec::new();
    for user in ["alice", "ada", "bob", "mia"] {
        let mut client = harness.client(TENANT, user);
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut sequences = Vec::new();
            for index in 0..10 {
                let message = client
                    .send_message(text(&id, &format!("{index}")))
                    .await
                    .expect("send")
                    .into_inner();
                sequences.push(message.message.expect("m").sequence);
            }
            sequences
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("join"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<_>>());
}

async fn edits_keep_revisions_and_deletes_leave_tombstones(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let (mut bob, mut mia, mut ada) = (
        harness.client(TENANT, "bob"),
        harness.client(TENANT, "mia"),
        harness.client(TENANT, "ada"),
    );
    let mut request = text(&id, "first draft");
    request
        .metadata
        .insert("client".to_owned(), "web".to_owned());
    let original = send(&mut bob, request).await;
    let edit = |body: &str| pb::UpdateMessageRequest {
        conversation_id: id.clone(),
        message_id: original.message_id.clone(),
        content: Some(pb::update_message_request::Content::Text(body.to_owned())),
        ..Default::default()
    };
    let edited = bob
        .update_message(edit("second draft"))
        .await
        .expect("edit")
        .into_inner()
        .message
        .expect("m");
    assert_eq!(body(&edited), "second draft");
    assert!(edited.edit_time.is_some());
    bob.update_message(edit("final")).await.expect("edit");
    assert_eq!(
        code(mia.update_message(edit("hijack")).await),
        Code::PermissionDenied
    );

    let revisions = |client: &mut MessageClient| {
        let request = pb::ListMessageRevisionsRequest {
            conversation_id: id.clone(),
            message_id: original.message_id.clone(),
            page_size: 1,
            ..Default::default()
        };
        let mut client = client.clone();
        async move { client.list_message_revisions(request).await }
    };
    assert_eq!(code(revisions(&mut mia).await), Code::PermissionDenied);
    let page = revisions(&mut ada)
        .await
        .expect("admin reads revisions")
        .into_inner();
    assert_eq!(page.revisions.len(), 1);
    assert_eq!(
        page.revisions[0].content,
        Some(pb::message_revision::Content::Text(
            "first draft".to_owned()
        ))
    );
    let rest = bob
        .list_message_revisions(pb::ListMessageRevisionsRequest {
            conversation_id: id.clone(),
            message_id: original.message_id.clone(),
            page_size: 10,
            page_token: page.next_page_token,
        })
        .await
        .expect("revisions")
        .into_inner();
    assert_eq!(
        rest.revisions
            .iter()
            .map(|r| r.revision)
            .collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(
        rest.revisions[0].content,
        Some(pb::message_revision::Content::Text(
            "second draft".to_owned()
        ))
    );

    // Deleting: not by other members; by the author it leaves a tombstone without content.
    let delete = pb::DeleteMessageRequest {
        conversation_id: id.clone(),
        message_id: original.message_id.clone(),
    };
    assert_eq!(
        code(mia.delete_message(delete.clone()).await),
        Code::PermissionDenied
    );
    let tombstone = bob
        .delete_message(delete.clone())
        .await
        .expect("delete")
        .into_inner()
        .message
        .expect("m");
    assert!(tombstone.content.is_none());
    assert!(tombstone.metadata.is_empty());
    assert!(tombstone.delete_time.is_some());
    assert_eq!(
        (tombstone.sequence, tombstone.sender_id.as_str()),
        (original.sequence, "bob")
    );
    let listed = list(
        &mut mia,
        pb::ListMessagesRequest {
            conversation_id: id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed.messages.len(), 1);
    assert!(listed.messages[0].content.is_none());
    let gone = revisions(&mut bob).await.expect("revisions").into_inner();
    assert!(gone.revisions.is_empty(), "revisions go with the content");
    assert_eq!(
        code(bob.update_message(edit("zombie")).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(bob.delete_message(delete).await),
        Code::Ok,
        "deleting twice is a no-op"
    );
    // Moderators delete others' messages.
    let mias = send(&mut mia, text(&id, "off topic")).await;
    let moderated = ada
        .delete_message(pb::DeleteMessageRequest {
            conversation_id: id.clone(),
            message_id: mias.message_id,
        })
        .await;
    assert_eq!(code(moderated), Code::Ok);
}

async fn threads_count_their_replies(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let (mut alice, mut bob) = (
        harness.client(TENANT, "alice"),
        harness.client(TENANT, "bob"),
    );
    let root = send(&mut alice, text(&id, "root")).await;
    send(&mut alice, text(&id, "unrelated")).await;
    let reply = send(
        &mut bob,
        pb::SendMessageRequest {
            parent_id: root.message_id.clone(),
            ..text(&id, "reply")
        },
    )
    .await;
    assert_eq!(reply.parent_id, root.message_id);
    let nested = send(
        &mut alice,
        pb::SendMessageRequest {
            parent_id: reply.message_id.clone(),
            ..text(&id, "reply to reply")
        },
    )
    .await;
    assert_eq!(
        nested.parent_id, root.message_id,
        "a reply to a reply joins the root's thread"
    );
    let root_now = alice
        .get_message(pb::GetMessageRequest {
            conversation_id: id.clone(),
            message_id: root.message_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .message
        .expect("m");
    assert_eq!(root_now.reply_count, 2);
    assert_eq!(root_now.last_reply_time, nested.create_time);
    let thread = list(
        &mut bob,
        pb::ListMessagesRequest {
            conversation_id: id.clone(),
            thread_id: root.message_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        sequences(&thread.messages),
        vec![nested.sequence, reply.sequence]
    );
    bob.delete_message(pb::DeleteMessageRequest {
        conversation_id: id.clone(),
        message_id: reply.message_id.clone(),
    })
    .await
    .expect("delete");
    let root_after = alice
        .get_message(pb::GetMessageRequest {
            conversation_id: id.clone(),
            message_id: root.message_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .message
        .expect("m");
    assert_eq!(root_after.reply_count, 1, "deleted replies are not counted");
    // Replies to a deleted message keep working.
    let more = send(
        &mut bob,
        pb::SendMessageRequest {
            parent_id: reply.message_id.clone(),
            ..text(&id, "still threaded")
        },
    )
    .await;
    assert_eq!(more.parent_id, root.message_id);
    let unknown = alice
        .send_message(pb::SendMessageRequest {
            parent_id: uuid::Uuid::now_v7().to_string(),
            ..text(&id, "orphan")
        })
        .await
        .expect_err("unknown parent");
    assert_eq!(violated_fields(&unknown), vec!["parent_id"]);
}

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

async fn roles_and_membership_decide_access(backend: Backend) {
    // No permission cache, so a removal takes effect on the next call.
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.permission_cache_ttl = Duration::ZERO;
    })
    .await;
    let id = team(&harness).await;
    let (mut vic, mut olga, mut bob) = (
        harness.client(TENANT, "vic"),
        harness.client(TENANT, "olga"),
        harness.client(TENANT, "bob"),
    );
    assert_eq!(
        code(vic.send_message(text(&id, "viewer")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            vic.list_messages(pb::ListMessagesRequest {
                conversation_id: id.clone(),
                ..Default::default()
            })
            .await
        ),
        Code::Ok
    );
    assert_eq!(
        code(olga.send_message(text(&id, "outsider")).await),
        Code::NotFound
    );
    assert_eq!(
        code(
            olga.list_messages(pb::ListMessagesRequest {
                conversation_id: id.clone(),
                ..Default::default()
            })
            .await
        ),
        Code::NotFound
    );
    // Mentions must be participants.
    let foreign = bob
        .send_message(pb::SendMessageRequest {
            mention_ids: vec!["mia".to_owned(), "olga".to_owned()],
            ..text(&id, "hi")
        })
        .await
        .expect_err("foreign mention");
    assert_eq!(violated_fields(&foreign), vec!["mention_ids[1]"]);

    // A channel: visible to everyone, readable after joining.
    let mut alice_conversations = harness.conversations.client(TENANT, "alice");
    let channel = alice_conversations
        .create_conversation(conversation::CreateConversationRequest {
            r#type: ConversationType::Channel.into(),
            title: "general".to_owned(),
            ..Default::default()
        })
        .await
        .expect("channel")
        .into_inner()
        .conversation
        .expect("c")
        .conversation_id;
    assert_eq!(
        code(olga.send_message(text(&channel, "hello?")).await),
        Code::PermissionDenied
    );

    // Archived: read-only.
    alice_conversations
        .archive_conversation(conversation::ArchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("archive");
    assert_eq!(
        code(bob.send_message(text(&id, "too late")).await),
        Code::FailedPrecondition
    );
    alice_conversations
        .unarchive_conversation(conversation::UnarchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("unarchive");
    assert_eq!(code(bob.send_message(text(&id, "back")).await), Code::Ok);

    // Removed: access ends.
    remove_participant(&mut alice_conversations, &id, "bob").await;
    assert_eq!(
        code(bob.send_message(text(&id, "still here?")).await),
        Code::NotFound
    );
    assert_eq!(
        code(
            bob.list_messages(pb::ListMessagesRequest {
                conversation_id: id.clone(),
                ..Default::default()
            })
            .await
        ),
        Code::NotFound
    );
}

async fn other_tenants_get_not_found_everywhere(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let mut alice = harness.client(TENANT, "alice");
    let message = send(
        &mut alice,
        pb::SendMessageRequest {
            request_id: "r".to_owned(),
            ..text(&id, "secret")
        },
    )
    .await;
    alice
        .add_reaction(pb::AddReactionRequest {
            conversation_id: id.clone(),
            message_id: message.message_id.clone(),
            emoji: "👍".to_owned(),
        })
        .await
        .expect("react");
    let m = || message.message_id.clone();
    let c = || id.clone();
    // The same user id in another tenant.
    let mut other = harness.client("globex", "alice");
    assert_eq!(
        code(other.send_message(text(&c(), "x")).await),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .send_message(pb::SendMessageRequest {
                    request_id: "r".to_owned(),
                    ..text(&c(), "secret")
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .get_message(pb::GetMessageRequest {
                    conversation_id: c(),
                    message_id: m()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .list_messages(pb::ListMessagesRequest {
                    conversation_id: c(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    let edit = pb::UpdateMessageRequest {
        conversation_id: c(),
        message_id: m(),
        content: Some(pb::update_message_request::Content::Text("x".to_owned())),
        ..Default::default()
    };
    assert_eq!(code(other.update_message(edit).await), Code::NotFound);
    assert_eq!(
        code(
            other
                .delete_message(pb::DeleteMessageRequest {
                    conversation_id: c(),
                    message_id: m()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .list_message_revisions(pb::ListMessageRevisionsRequest {
                    conversation_id: c(),
                    message_id: m(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .add_reaction(pb::AddReactionRequest {
                    conversation_id: c(),
                    message_id: m(),
                    emoji: "👍".to_owned()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .remove_reaction(pb::RemoveReactionRequest {
                    conversation_id: c(),
                    message_id: m(),
                    emoji: "👍".to_owned()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .list_reactions(pb::ListReactionsRequest {
                    conversation_id: c(),
                    message_id: m(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .mark_read(pb::MarkReadRequest {
                    conversation_id: c(),
                    up_to_sequence: 1
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            other
                .get_read_state(pb::GetReadStateRequest {
                    conversation_id: c()
                })
                .await
        ),
        Code::NotFound
    );
    let counts = other
        .get_unread_counts(pb::GetUnreadCountsRequest {
            conversation_ids: vec![c()],
        })
        .await
        .expect("counts")
        .into_inner();
    assert!(
        counts.counts.is_empty(),
        "no count, not even zero, for another tenant's conversation"
    );
    let all = other
        .get_unread_counts(pb::GetUnreadCountsRequest::default())
        .await
        .expect("counts")
        .into_inner();
    assert!(all.counts.is_empty());
    // Nothing changed for the owner.
    let reactions = alice
        .get_message(pb::GetMessageRequest {
            conversation_id: c(),
            message_id: m(),
        })
        .await
        .expect("get")
        .into_inner()
        .message
        .expect("m")
        .reactions;
    assert_eq!(reactions[0].count, 1);
}

async fn bad_input_names_the_fields(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = team(&harness).await;
    let mut alice = harness.client(TENANT, "alice");
    let fields = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        violated_fields(&status)
    };
    let oversized = alice
        .send_message(text(&id, &"x".repeat(16 * 1024 + 1)))
        .await
        .expect_err("big");
    assert_eq!(fields(oversized), vec!["text"]);
    assert!(
        alice
            .send_message(text(&id, &"x".repeat(16 * 1024)))
            .await
            .is_ok(),
        "the limit itself is fine"
    );
    let empty = alice.send_message(text(&id, "")).await.expect_err("empty");
    assert_eq!(fields(empty), vec!["text"]);
    let mut request = text(&id, "hi");
    request.conversation_id = "nope".to_owned();
    request
        .metadata
        .insert("bad key".to_owned(), "v".to_owned());
    request.mention_ids = vec![String::new()];
    request.request_id = "r".repeat(129);
    let many = alice.send_message(request).await.expect_err("many");
    assert_eq!(
        fields(many),
        vec![
            "conversation_id",
            "mention_ids[0]",
            "metadata[bad key]",
            "request_id"
        ]
    );
    let too_many_mentions = alice
        .send_message(pb::SendMessageRequest {
            mention_ids: (0..51).map(|i| format!("u{i}")).collect(),
            ..text(&id, "hi")
        })
        .await
        .expect_err("mentions");
    assert_eq!(fields(too_many_mentions), vec!["mention_ids"]);
    let bad_payload = alice
        .send_message(pb::SendMessageRequest {
            conversation_id: id.clone(),
            content: Some(pb::send_message_request::Content::Encrypted(
                pb::EncryptedPayload {
                    ciphertext: Vec::new(),
                    algorithm: "é".to_owned(),
                    key_id: "k".to_owned(),
                    search_tokens: Vec::new(),
                },
            )),
            ..Default::default()
        })
        .await
        .expect_err("payload");
    assert_eq!(fields(bad_payload), vec!["encrypted.ciphertext"]);
    for page_size in [-1, 201] {
        let status = alice
            .list_messages(pb::ListMessagesRequest {
                conversation_id: id.clone(),
                page_size,
                ..Default::default()
            })
            .await
            .expect_err("size");
        assert_eq!(fields(status), vec!["page_size"]);
    }
    let token = alice
        .list_messages(pb::ListMessagesRequest {
            conversation_id: id.clone(),
            page_token: "garbage".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("token");
    assert_eq!(fields(token), vec!["page_token"]);
    let around = alice
        .list_messages(pb::ListMessagesRequest {
            conversation_id: id.clone(),
            direction: ListDirection::Around.into(),
            around_message_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .expect_err("around unknown");
    assert_eq!(fields(around), vec!["around_message_id"]);
    let negative = alice
        .mark_read(pb::MarkReadRequest {
            conversation_id: id.clone(),
            up_to_sequence: -1,
        })
        .await
        .expect_err("negative");
    assert_eq!(fields(negative), vec!["up_to_sequence"]);
    let ids = alice
        .get_message(pb::GetMessageRequest {
            conversation_id: "x".to_owned(),
            message_id: "y".to_owned(),
        })
        .await
        .expect_err("ids");
    assert_eq!(fields(ids), vec!["conversation_id", "message_id"]);
    let attachments = alice
        .send_message(pb::SendMessageRequest {
            attachment_ids: vec!["a".to_owned()],
            ..text(&id, "file")
        })
        .await
        .expect_err("attachments");
    assert_eq!(fields(attachments), vec!["attachment_ids"]);
}

#[tokio::test]
async fn conversation_service_down_fails_closed() {
    // A port that nothing listens on: bind, note it, close.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("address")
    };
    let database = messaging_e2e::TestDatabase::new(Backend::Sqlite);
    let settings = messaging_e2e::message_settings(&database, &format!("http://{closed}"));
    let server: RunningServer = messaging_e2e::start_message_service(settings).await;
    let token = messaging_e2e::issuer()
        .issue(TENANT, "alice", &[], Duration::from_secs(60))
        .expect("token");
    let mut client = messaging_proto::message::v1::message_service_client::MessageServiceClient::with_interceptor(server.channel().await, messaging_e2e::Headers::bearer(&token));
    let id = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        code(client.send_message(text(&id, "hello")).await),
        Code::Unavailable
    );
    assert_eq!(
        code(
            client
                .list_messages(pb::ListMessagesRequest {
                    conversation_id: id.clone(),
                    ..Default::default()
                })
                .await
        ),
        Code::Unavailable
    );
    assert_eq!(
        code(
            client
                .get_unread_counts(pb::GetUnreadCountsRequest::default())
                .await
        ),
        Code::Unavailable
    );
}

async fn the_edit_window_is_enforced(backend: Backend) {
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.edit_window = Some(Duration::ZERO);
    })
    .await;
    let id = team(&harness).await;
    let mut bob = harness.client(TENANT, "bob");
    let message = send(&mut bob, text(&id, "typo")).await;
    let status = bob
        .update_message(pb::UpdateMessageRequest {
            conversation_id: id.clone(),
            message_id: message.message_id,
            content: Some(pb::update_message_request::Content::Text(
                "fixed".to_owned(),
            )),
            ..Default::default()
        })
        .await
        .expect_err("window passed");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

async fn removed_participants_lose_access_within_the_cache_ttl(backend: Backend) {
    let ttl = Duration::from_millis(500);
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.permission_cache_ttl = ttl;
    })
    .await;
    let id = team(&harness).await;
    let mut bob = harness.client(TENANT, "bob");
    send(&mut bob, text(&id, "cached now")).await;
    let mut alice = harness.conversations.client(TENANT, "alice");
    remove_participant(&mut alice, &id, "bob").await;
    // Wait on the condition (access gone), with the staleness bound plus slack as the deadline.
    eventually(ttl + Duration::from_secs(2), "bob losing access", || {
        let (mut bob, id) = (bob.clone(), id.clone());
        async move {
            let status = code(
                bob.list_messages(pb::ListMessagesRequest {
                    conversation_id: id,
                    ..Default::default()
                })
                .await,
            );
            assert!(matches!(status, Code::Ok | Code::NotFound), "{status:?}");
            status == Code::NotFound
        }
    })
    .await;
}
