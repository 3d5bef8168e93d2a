//! MessageService over real gRPC with both services running, on SQLite and on PostgreSQL:
//! sending (idempotent, gap-free), listing in both directions, edits and revisions, the edit
//! window, tombstones and threads.

use std::collections::HashSet;
use std::time::Duration;

use messaging_e2e::{
    Backend, MessageClient, MessagingHarness, backend_tests, send, text_message as text,
    violated_fields,
};
use messaging_proto::message::v1::{self as pb, ListDirection};
use tonic::Code;

#[path = "messages/common.rs"]
mod common;
use common::*;

backend_tests!(
    send_get_and_list_in_both_directions,
    idempotent_send_under_concurrent_retries,
    sequences_are_gap_free_under_concurrent_senders,
    edits_keep_revisions_and_deletes_leave_tombstones,
    threads_count_their_replies,
    the_edit_window_is_enforced,
);

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
