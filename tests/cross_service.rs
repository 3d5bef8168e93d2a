//! Promises that span the two services, tried as a client written from the protos would:
//! what conversation-service acknowledged is what message-service applies, at once (grants and
//! revocations alike), tenant administrators may do everything an OWNER may on both services,
//! and `*` is never a tenant of a user.
//!
//! The permission cache's TTL is set to ten minutes here, so that only the fence that every
//! message-service request makes (and the events it waits for) can make a change visible.

use std::time::Duration;

use messaging_e2e::{
    Backend, Headers, MessagingHarness, backend_tests, create_group, issuer, remove_participant,
    text_message,
};
use messaging_proto::conversation::v1::{self as conversation, ConversationType, Role};
use messaging_proto::message::v1 as pb;
use tonic::Code;

backend_tests!(
    grants_are_usable_on_message_service_at_once,
    mentions_follow_membership_at_once,
    revocations_apply_on_message_service_at_once,
    tenant_administrators_may_do_what_owners_may,
    star_is_never_a_users_tenant,
    one_idempotency_rule_on_both_services,
    control_characters_are_refused_in_every_text_field,
    ids_beyond_ascii_work_across_both_services,
);

/// Tenant and user ids may be any printable text: one that is not ASCII travels between the
/// services in binary metadata and works like any other (found by the REST edge's fuzzing: it
/// was UNAVAILABLE).
async fn ids_beyond_ascii_work_across_both_services(backend: Backend) {
    let harness = harness(backend).await;
    let tenant = "société";
    let mut josé = harness.conversations.client(tenant, "josé");
    let conversation = create_group(&mut josé, "Café", &[("zoë", Role::Member)]).await;
    let mut josé_messages = harness.client(tenant, "josé");
    let sent =
        messaging_e2e::send(&mut josé_messages, text_message(&conversation, "bonjour")).await;
    assert_eq!(sent.sender_id, "josé");
    let mut zoë = harness.client(tenant, "zoë");
    let listed = zoë
        .list_messages(pb::ListMessagesRequest {
            conversation_id: conversation.clone(),
            ..Default::default()
        })
        .await
        .expect("zoë reads")
        .into_inner();
    assert_eq!(listed.messages.len(), 1);
    let stranger = harness
        .client(tenant, "ana")
        .list_messages(pb::ListMessagesRequest {
            conversation_id: conversation,
            ..Default::default()
        })
        .await
        .expect_err("not a participant");
    assert_eq!(stranger.code(), Code::NotFound);
}

const TENANT: &str = "acme";
/// How often each grant and revocation is tried: the old races showed up in a fraction of tries.
const TRIES: usize = 15;

async fn harness(backend: Backend) -> MessagingHarness {
    MessagingHarness::start_with(backend, |settings| {
        settings.message_service.permission_cache_ttl = Duration::from_secs(600);
    })
    .await
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.map_or_else(|status| status.code(), |_| Code::Ok)
}

async fn create_channel(client: &mut messaging_e2e::ConversationClient, title: &str) -> String {
    client
        .create_conversation(conversation::CreateConversationRequest {
            r#type: ConversationType::Channel.into(),
            title: title.to_owned(),
            ..Default::default()
        })
        .await
        .expect("create channel")
        .into_inner()
        .conversation
        .expect("conversation")
        .conversation_id
}

fn query_in(conversation: &str, words: &str) -> pb::SearchMessagesRequest {
    pb::SearchMessagesRequest {
        query: words.to_owned(),
        conversation_ids: vec![conversation.to_owned()],
        ..Default::default()
    }
}

/// Mentions are checked against the participant projection (one query for all of them): a user
/// added by conversation-service may be mentioned at once, and a removed one may not.
async fn mentions_follow_membership_at_once(backend: Backend) {
    let harness = harness(backend).await;
    let mut alice = harness.conversations.client(TENANT, "alice");
    let mut alice_messages = harness.client(TENANT, "alice");
    let group = create_group(&mut alice, "Mentions", &[("bob", Role::Member)]).await;
    let mention = |users: &[&str]| pb::SendMessageRequest {
        mention_ids: users.iter().map(|user| (*user).to_owned()).collect(),
        ..text_message(&group, "hello")
    };
    for attempt in 0..TRIES {
        let user = format!("dan{attempt}");
        let refused = alice_messages
            .send_message(mention(&["bob", &user]))
            .await
            .expect_err("not a participant yet");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(messaging_e2e::violated_fields(&refused), ["mention_ids[1]"]);
        alice
            .add_participants(conversation::AddParticipantsRequest {
                conversation_id: group.clone(),
                participants: vec![conversation::ParticipantSpec {
                    user_id: user.clone(),
                    role: Role::Member.into(),
                }],
            })
            .await
            .expect("add");
        let sent = alice_messages
            .send_message(mention(&["bob", &user]))
            .await
            .expect("a participant added before the send may be mentioned")
            .into_inner()
            .message
            .expect("message");
        assert_eq!(sent.mention_ids, ["bob".to_owned(), user.clone()]);
        remove_participant(&mut alice, &group, &user).await;
        let refused = alice_messages
            .send_message(mention(&[&user]))
            .await
            .expect_err("removed before the send");
        assert_eq!(messaging_e2e::violated_fields(&refused), ["mention_ids[0]"]);
    }
}

async fn grants_are_usable_on_message_service_at_once(backend: Backend) {
    let harness = harness(backend).await;
    let mut alice = harness.conversations.client(TENANT, "alice");
    let mut alice_messages = harness.client(TENANT, "alice");
    for attempt in 0..TRIES {
        // Join a channel, then post at once: denied just before (and that denial was cached).
        let channel = create_channel(&mut alice, &format!("channel {attempt}")).await;
        let user = format!("carol{attempt}");
        let mut carol = harness.conversations.client(TENANT, &user);
        let mut carol_messages = harness.client(TENANT, &user);
        assert_eq!(
            code(
                carol_messages
                    .send_message(text_message(&channel, "before"))
                    .await
            ),
            Code::PermissionDenied
        );
        carol
            .join_conversation(conversation::JoinConversationRequest {
                conversation_id: channel.clone(),
            })
            .await
            .expect("join");
        carol_messages
            .send_message(text_message(&channel, "right after joining"))
            .await
            .expect("a member may post at once after JoinConversation answered");

        // Unarchive, then post at once.
        alice
            .archive_conversation(conversation::ArchiveConversationRequest {
                conversation_id: channel.clone(),
            })
            .await
            .expect("archive");
        assert_eq!(
            code(
                alice_messages
                    .send_message(text_message(&channel, "archived"))
                    .await
            ),
            Code::FailedPrecondition
        );
        alice
            .unarchive_conversation(conversation::UnarchiveConversationRequest {
                conversation_id: channel.clone(),
            })
            .await
            .expect("unarchive");
        alice_messages
            .send_message(text_message(&channel, "unarchived quokka"))
            .await
            .expect("posting works at once after UnarchiveConversation answered");

        // Added to a group, then search and unread counts at once.
        let group = create_group(&mut alice, "group", &[]).await;
        alice_messages
            .send_message(text_message(&group, "hidden wombat"))
            .await
            .expect("send");
        let dave = format!("dave{attempt}");
        let mut dave_messages = harness.client(TENANT, &dave);
        let before = dave_messages
            .search_messages(pb::SearchMessagesRequest {
                query: "wombat".to_owned(),
                ..Default::default()
            })
            .await
            .expect("search")
            .into_inner();
        assert!(before.hits.is_empty(), "not a participant yet");
        alice
            .add_participants(conversation::AddParticipantsRequest {
                conversation_id: group.clone(),
                participants: vec![conversation::ParticipantSpec {
                    user_id: dave.clone(),
                    role: Role::Member.into(),
                }],
            })
            .await
            .expect("add");
        let found = dave_messages
            .search_messages(pb::SearchMessagesRequest {
                query: "wombat".to_owned(),
                ..Default::default()
            })
            .await
            .expect("search")
            .into_inner();
        assert_eq!(found.hits.len(), 1, "found at once after AddParticipants");
        let counts = dave_messages
            .get_unread_counts(pb::GetUnreadCountsRequest::default())
            .await
            .expect("unread counts")
            .into_inner();
        assert!(
            counts
                .counts
                .iter()
                .any(|count| count.conversation_id == group && count.unread_count == 1),
            "unread counts include the new conversation at once: {counts:?}"
        );
        dave_messages
            .search_messages(query_in(&group, "wombat"))
            .await
            .expect("searching the named conversation at once");
    }
}

async fn revocations_apply_on_message_service_at_once(backend: Backend) {
    let harness = harness(backend).await;
    let mut alice = harness.conversations.client(TENANT, "alice");
    let mut alice_messages = harness.client(TENANT, "alice");
    for attempt in 0..TRIES {
        let bob = format!("bob{attempt}");
        let group = create_group(&mut alice, "group", &[(bob.as_str(), Role::Member)]).await;
        let mut bob_messages = harness.client(TENANT, &bob);
        // Cache bob's allowed answers.
        bob_messages
            .send_message(text_message(&group, "while a member"))
            .await
            .expect("send");
        remove_participant(&mut alice, &group, &bob).await;
        assert_eq!(
            code(
                bob_messages
                    .send_message(text_message(&group, "after removal"))
                    .await
            ),
            Code::NotFound,
            "removed participants cannot post once RemoveParticipant answered"
        );
        assert_eq!(
            code(
                bob_messages
                    .list_messages(pb::ListMessagesRequest {
                        conversation_id: group.clone(),
                        ..Default::default()
                    })
                    .await
            ),
            Code::NotFound
        );
        // Archiving stops posting at once too.
        alice
            .archive_conversation(conversation::ArchiveConversationRequest {
                conversation_id: group.clone(),
            })
            .await
            .expect("archive");
        assert_eq!(
            code(
                alice_messages
                    .send_message(text_message(&group, "archived"))
                    .await
            ),
            Code::FailedPrecondition
        );
    }
}

async fn tenant_administrators_may_do_what_owners_may(backend: Backend) {
    let harness = harness(backend).await;
    let mut alice = harness.conversations.client(TENANT, "alice");
    let group = create_group(&mut alice, "Team", &[("bob", Role::Member)]).await;
    let mut alice_messages = harness.client(TENANT, "alice");
    let by_alice = alice_messages
        .send_message(text_message(&group, "by alice"))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("message");
    alice_messages
        .update_message(pb::UpdateMessageRequest {
            conversation_id: group.clone(),
            message_id: by_alice.message_id.clone(),
            content: Some(pb::update_message_request::Content::Text(
                "edited by alice".to_owned(),
            )),
            ..Default::default()
        })
        .await
        .expect("edit");

    // The same calls by a tenant administrator who is not a participant, and by an outsider.
    let mut root = harness.client_with_roles(TENANT, "root", &["admin"]);
    let mut eve = harness.client(TENANT, "eve");
    for (client, allowed) in [(&mut root, true), (&mut eve, false)] {
        // Named conversations the caller may not read are left out, as the proto says.
        let hits = client
            .search_messages(query_in(&group, "alice"))
            .await
            .expect("search")
            .into_inner()
            .hits;
        assert_eq!(
            hits.len(),
            usize::from(allowed),
            "SearchMessages naming the conversation"
        );
        let message = || by_alice.message_id.clone();
        // (RPC, what it answers a tenant administrator, what it answered here)
        let rows = [
            (
                "SendMessage",
                Code::Ok,
                code(client.send_message(text_message(&group, "by root")).await),
            ),
            (
                "ListMessages",
                Code::Ok,
                code(
                    client
                        .list_messages(pb::ListMessagesRequest {
                            conversation_id: group.clone(),
                            ..Default::default()
                        })
                        .await,
                ),
            ),
            (
                "GetMessage",
                Code::Ok,
                code(
                    client
                        .get_message(pb::GetMessageRequest {
                            conversation_id: group.clone(),
                            message_id: message(),
                        })
                        .await,
                ),
            ),
            (
                "AddReaction",
                Code::Ok,
                code(
                    client
                        .add_reaction(pb::AddReactionRequest {
                            conversation_id: group.clone(),
                            message_id: message(),
                            emoji: "👍".to_owned(),
                        })
                        .await,
                ),
            ),
            (
                "ListReactions",
                Code::Ok,
                code(
                    client
                        .list_reactions(pb::ListReactionsRequest {
                            conversation_id: group.clone(),
                            message_id: message(),
                            ..Default::default()
                        })
                        .await,
                ),
            ),
            (
                "ListMessageRevisions",
                Code::Ok,
                code(
                    client
                        .list_message_revisions(pb::ListMessageRevisionsRequest {
                            conversation_id: group.clone(),
                            message_id: message(),
                            ..Default::default()
                        })
                        .await,
                ),
            ),
            (
                "MarkRead",
                Code::Ok,
                code(
                    client
                        .mark_read(pb::MarkReadRequest {
                            conversation_id: group.clone(),
                            up_to_sequence: 1,
                        })
                        .await,
                ),
            ),
            (
                "GetReadState",
                Code::Ok,
                code(
                    client
                        .get_read_state(pb::GetReadStateRequest {
                            conversation_id: group.clone(),
                        })
                        .await,
                ),
            ),
            (
                "Subscribe naming the conversation",
                Code::Ok,
                code(
                    client
                        .subscribe(pb::SubscribeRequest {
                            conversation_ids: vec![group.clone()],
                            ..Default::default()
                        })
                        .await,
                ),
            ),
            // Only authors edit, administrators included: visible, so PERMISSION_DENIED.
            (
                "UpdateMessage of another's message",
                Code::PermissionDenied,
                code(
                    client
                        .update_message(pb::UpdateMessageRequest {
                            conversation_id: group.clone(),
                            message_id: message(),
                            content: Some(pb::update_message_request::Content::Text(
                                "hijacked".to_owned(),
                            )),
                            ..Default::default()
                        })
                        .await,
                ),
            ),
            (
                "DeleteMessage of another's message",
                Code::Ok,
                code(
                    client
                        .delete_message(pb::DeleteMessageRequest {
                            conversation_id: group.clone(),
                            message_id: message(),
                        })
                        .await,
                ),
            ),
        ];
        for (rpc, for_administrators, got) in rows {
            let expected = if allowed {
                for_administrators
            } else {
                Code::NotFound
            };
            assert_eq!(got, expected, "{rpc}, administrator: {allowed}");
        }
    }
    // An administrator's stream naming the conversation gets its events.
    let mut stream = root
        .subscribe(pb::SubscribeRequest {
            conversation_ids: vec![group.clone()],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    alice_messages
        .send_message(text_message(&group, "for the administrator"))
        .await
        .expect("send");
    let event = loop {
        let response = tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .expect("an event within 15 s")
            .expect("stream")
            .expect("item");
        if let Some(pb::subscribe_response::Item::Event(event)) = response.item {
            break event;
        }
    };
    assert!(matches!(
        event.payload,
        Some(pb::event::Payload::MessageCreated(_))
    ));
    // Another tenant's administrator sees nothing of it.
    let mut globex_root = harness.client_with_roles("globex", "root", &["admin"]);
    assert_eq!(
        code(
            globex_root
                .list_messages(pb::ListMessagesRequest {
                    conversation_id: group.clone(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
}

async fn star_is_never_a_users_tenant(backend: Backend) {
    let harness = harness(backend).await;
    for roles in [&[][..], &["admin"][..]] {
        let token = issuer()
            .issue("*", "mallory", roles, Duration::from_secs(600))
            .expect("token");
        let mut conversations = harness
            .conversations
            .client_with_headers(Headers::bearer(&token));
        let mut messages = harness.client_with_headers(Headers::bearer(&token));
        let codes = [
            code(
                conversations
                    .list_conversations(conversation::ListConversationsRequest::default())
                    .await,
            ),
            code(
                conversations
                    .create_conversation(conversation::CreateConversationRequest {
                        r#type: ConversationType::Group.into(),
                        title: "in star".to_owned(),
                        ..Default::default()
                    })
                    .await,
            ),
            code(
                messages
                    .get_unread_counts(pb::GetUnreadCountsRequest::default())
                    .await,
            ),
            code(
                messages
                    .search_messages(pb::SearchMessagesRequest {
                        query: "anything".to_owned(),
                        ..Default::default()
                    })
                    .await,
            ),
            code(messages.subscribe(pb::SubscribeRequest::default()).await),
        ];
        assert!(
            codes.iter().all(|code| *code == Code::Unauthenticated),
            "roles {roles:?}: {codes:?}"
        );
    }
}

async fn one_idempotency_rule_on_both_services(backend: Backend) {
    let harness = harness(backend).await;
    let mut alice = harness.conversations.client(TENANT, "alice");
    let create = |title: &str, request_id: &str| conversation::CreateConversationRequest {
        r#type: ConversationType::Group.into(),
        title: title.to_owned(),
        request_id: request_id.to_owned(),
        ..Default::default()
    };
    let first = alice
        .create_conversation(create("Plans", "create-1"))
        .await
        .expect("create")
        .into_inner()
        .conversation
        .expect("conversation");
    let retried = alice
        .create_conversation(create("Plans", "create-1"))
        .await
        .expect("retry")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(retried.conversation_id, first.conversation_id);
    let mut alice_messages = harness.client(TENANT, "alice");
    let send = |text: &str, request_id: &str| pb::SendMessageRequest {
        request_id: request_id.to_owned(),
        ..text_message(&first.conversation_id, text)
    };
    let sent = alice_messages
        .send_message(send("hello", "send-1"))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("message");
    let resent = alice_messages
        .send_message(send("hello", "send-1"))
        .await
        .expect("retry")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(resent.message_id, sent.message_id);
    // The same key with another payload: ALREADY_EXISTS on both.
    assert_eq!(
        code(
            alice
                .create_conversation(create("Other plans", "create-1"))
                .await
        ),
        Code::AlreadyExists
    );
    assert_eq!(
        code(alice_messages.send_message(send("goodbye", "send-1")).await),
        Code::AlreadyExists
    );
    // One format on both: visible ASCII, at most 128.
    for bad in ["with space", "ünïcode", &"x".repeat(129)] {
        let status = alice
            .create_conversation(create("Plans", bad))
            .await
            .expect_err("bad request_id");
        assert_eq!(
            messaging_e2e::violated_fields(&status),
            vec!["request_id".to_owned()]
        );
        let status = alice_messages
            .send_message(send("hello", bad))
            .await
            .expect_err("bad request_id");
        assert_eq!(
            messaging_e2e::violated_fields(&status),
            vec!["request_id".to_owned()]
        );
    }
}

async fn control_characters_are_refused_in_every_text_field(backend: Backend) {
    let harness = harness(backend).await;
    let mut alice = harness.conversations.client(TENANT, "alice");
    let group = create_group(&mut alice, "Texts", &[]).await;
    let mut messages = harness.client(TENANT, "alice");
    let sent = messages
        .send_message(text_message(&group, "line one\nline\ttwo\r\n"))
        .await
        .expect("line breaks and tabs are fine")
        .into_inner()
        .message
        .expect("message");
    for bad in [
        "nul \u{0} byte",
        "escape \u{1b}[31m",
        "bell \u{7}",
        "c1 \u{85} control",
    ] {
        let status = messages
            .send_message(text_message(&group, bad))
            .await
            .expect_err("control characters in text");
        assert_eq!(messaging_e2e::violated_fields(&status), ["text"], "{bad:?}");
        let mut with_metadata = text_message(&group, "fine");
        with_metadata
            .metadata
            .insert("note".to_owned(), bad.to_owned());
        let status = messages
            .send_message(with_metadata)
            .await
            .expect_err("control characters in metadata");
        assert_eq!(
            messaging_e2e::violated_fields(&status),
            ["metadata[note]"],
            "{bad:?}"
        );
        let status = messages
            .update_message(pb::UpdateMessageRequest {
                conversation_id: group.clone(),
                message_id: sent.message_id.clone(),
                content: Some(pb::update_message_request::Content::Text(bad.to_owned())),
                ..Default::default()
            })
            .await
            .expect_err("control characters in an edit");
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        let status = alice
            .create_conversation(conversation::CreateConversationRequest {
                r#type: ConversationType::Group.into(),
                title: "Fine".to_owned(),
                description: bad.to_owned(),
                ..Default::default()
            })
            .await
            .expect_err("control characters in a description");
        assert_eq!(
            messaging_e2e::violated_fields(&status),
            ["description"],
            "{bad:?}"
        );
    }
}
