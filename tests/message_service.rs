//! MessageService over real gRPC with both services running, on SQLite and on PostgreSQL: who
//! may do what. Roles and membership through conversation-service, tenant isolation on every
//! RPC, bad input naming the fields, access lost within the cache bound, and failing closed
//! when conversation-service is down.

use std::time::Duration;

use messaging_e2e::{
    Backend, MessagingHarness, RunningServer, backend_tests, eventually, remove_participant, send,
    text_message as text, violated_fields,
};
use messaging_proto::conversation::v1::{self as conversation, ConversationType};
use messaging_proto::message::v1::{self as pb, ListDirection};
use tonic::Code;

#[path = "messages/common.rs"]
mod common;
use common::*;

backend_tests!(
    roles_and_membership_decide_access,
    other_tenants_get_not_found_everywhere,
    bad_input_names_the_fields,
    removed_participants_lose_access_within_the_cache_ttl,
);

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
    assert_eq!(fields(attachments), vec!["attachment_ids[0]"]);
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
