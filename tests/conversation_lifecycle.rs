//! ConversationService over real gRPC, on SQLite and on PostgreSQL: a conversation's life.
//! Create, get and list with pagination, DIRECT de-duplication, idempotent creates, archive,
//! delete and undelete within the window, purge, and etags.

use std::collections::HashSet;
use std::time::Duration;

use messaging_e2e::{Backend, ConversationHarness, backend_tests, violated_fields};
use messaging_proto::conversation::v1::{self as pb, Action, ConversationType, DenialReason, Role};
use tonic::Code;

#[path = "conversations/common.rs"]
mod common;
use common::*;

backend_tests!(
    create_get_and_list_with_pagination,
    direct_conversations_are_deduplicated,
    create_is_idempotent_with_request_id,
    archived_conversations_are_read_only,
    delete_and_undelete_within_the_window,
    undelete_window_expiry_and_purge,
    updates_honour_the_etag,
);

async fn create_get_and_list_with_pagination(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let mut alice = harness.client(TENANT, "alice");
    let created = alice
        .create_conversation(group("  Launch  ", &[("bob", Role::Unspecified)]))
        .await
        .expect("create")
        .into_inner();
    assert!(created.created);
    let conversation = created.conversation.expect("conversation");
    assert_eq!(conversation.title, "Launch", "titles are trimmed");
    assert_eq!(conversation.participant_count, 2);
    assert_eq!(conversation.caller_role, Role::Owner as i32);
    assert_eq!(conversation.tenant_id, TENANT);
    assert_eq!(conversation.creator_id, "alice");

    let mut bob = harness.client(TENANT, "bob");
    let seen = bob
        .get_conversation(pb::GetConversationRequest {
            conversation_id: conversation.conversation_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(seen.caller_role, Role::Member as i32);
    assert_eq!(seen.create_time, conversation.create_time);

    // Five more; the newest activity comes first and pages follow on without overlap.
    let mut ids = vec![conversation.conversation_id.clone()];
    for index in 0..5 {
        ids.push(
            create(&mut alice, group(&format!("g{index}"), &[]))
                .await
                .conversation_id,
        );
    }
    ids.reverse();
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = alice
            .list_conversations(pb::ListConversationsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.conversations.len() <= 2);
        listed.extend(page.conversations.into_iter().map(|c| c.conversation_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, ids);

    // Activity moves a conversation to the front.
    let update = pb::UpdateConversationRequest {
        conversation: Some(pb::Conversation {
            conversation_id: ids[5].clone(),
            title: "renamed".to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["title".to_owned()],
        }),
        etag: String::new(),
    };
    let updated = alice
        .update_conversation(update)
        .await
        .expect("update")
        .into_inner()
        .conversation
        .expect("c");
    assert_eq!(updated.title, "renamed");
    assert_eq!(updated.updater_id, "alice");
    let first = alice
        .list_conversations(pb::ListConversationsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(first.conversations[0].conversation_id, ids[5]);

    // Bob sees only the one he is in; type filters apply.
    let bobs = bob
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(bobs.conversations.len(), 1);
    let channels = alice
        .list_conversations(pb::ListConversationsRequest {
            types: vec![ConversationType::Channel.into()],
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(channels.conversations.is_empty());

    // A page token is bound to its filters.
    let page = alice
        .list_conversations(pb::ListConversationsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let status = alice
        .list_conversations(pb::ListConversationsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            types: vec![ConversationType::Group.into()],
            ..Default::default()
        })
        .await
        .expect_err("changed filters");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), vec!["page_token"]);

    // Participants list in join order, paginated.
    let mut participants = Vec::new();
    let mut token = String::new();
    loop {
        let page = alice
            .list_participants(pb::ListParticipantsRequest {
                conversation_id: conversation.conversation_id.clone(),
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("participants")
            .into_inner();
        participants.extend(page.participants.into_iter().map(|p| (p.user_id, p.role)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected = vec![
        ("alice".to_owned(), Role::Owner as i32),
        ("bob".to_owned(), Role::Member as i32),
    ];
    expected.sort();
    participants.sort();
    assert_eq!(participants, expected);
}

async fn direct_conversations_are_deduplicated(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let direct = |other: &str| pb::CreateConversationRequest {
        r#type: ConversationType::Direct.into(),
        participants: vec![pb::ParticipantSpec {
            user_id: other.to_owned(),
            role: 0,
        }],
        ..Default::default()
    };
    let mut alice = harness.client(TENANT, "alice");
    let mut bob = harness.client(TENANT, "bob");
    let first = alice
        .create_conversation(direct("bob"))
        .await
        .expect("create")
        .into_inner();
    assert!(first.created);
    let first = first.conversation.expect("conversation");
    assert_eq!(
        first.caller_role,
        Role::Member as i32,
        "direct participants are members"
    );
    let again = bob
        .create_conversation(direct("alice"))
        .await
        .expect("create")
        .into_inner();
    assert!(!again.created);
    assert_eq!(
        again.conversation.expect("c").conversation_id,
        first.conversation_id
    );

    // Concurrent creations of a new pair converge on one conversation.
    let mut tasks = Vec::new();
    for index in 0..8 {
        let mut client = if index % 2 == 0 {
            harness.client(TENANT, "carol")
        } else {
            harness.client(TENANT, "dave")
        };
        let other = if index % 2 == 0 { "dave" } else { "carol" };
        let request = direct(other);
        tasks.push(tokio::spawn(async move {
            client
                .create_conversation(request)
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let response = task.await.expect("join").expect("create");
        created += usize::from(response.created);
        ids.insert(response.conversation.expect("c").conversation_id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);

    // Direct conversations keep exactly two participants.
    let id = first.conversation_id.clone();
    let add = alice
        .add_participants(pb::AddParticipantsRequest {
            conversation_id: id.clone(),
            participants: vec![pb::ParticipantSpec {
                user_id: "eve".to_owned(),
                role: 0,
            }],
        })
        .await
        .expect_err("add to direct");
    assert_eq!(add.code(), Code::FailedPrecondition);
    let leave = alice
        .leave_conversation(pb::LeaveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect_err("leave");
    assert_eq!(leave.code(), Code::FailedPrecondition);
    let transfer = alice
        .transfer_ownership(pb::TransferOwnershipRequest {
            conversation_id: id.clone(),
            new_owner_id: "bob".to_owned(),
        })
        .await
        .expect_err("transfer");
    assert_eq!(transfer.code(), Code::FailedPrecondition);
    let mut eve = harness.client(TENANT, "eve");
    assert_eq!(
        code(
            eve.get_conversation(pb::GetConversationRequest {
                conversation_id: id.clone()
            })
            .await
        ),
        Code::NotFound
    );

    // Deleting frees the pair; the deleted one cannot then be restored over the new one.
    alice
        .delete_conversation(pb::DeleteConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("delete");
    let fresh = alice
        .create_conversation(direct("bob"))
        .await
        .expect("create")
        .into_inner();
    assert!(fresh.created);
    assert_ne!(fresh.conversation.expect("c").conversation_id, id);
    let undelete = bob
        .undelete_conversation(pb::UndeleteConversationRequest {
            conversation_id: id,
        })
        .await
        .expect_err("undelete");
    assert_eq!(undelete.code(), Code::FailedPrecondition);
}

async fn create_is_idempotent_with_request_id(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let request = pb::CreateConversationRequest {
        request_id: request_id.clone(),
        ..group("Once", &[("bob", Role::Member)])
    };
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let mut client = harness.client(TENANT, "alice");
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_conversation(request)
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let response = task.await.expect("join").expect("create");
        created += usize::from(response.created);
        ids.insert(response.conversation.expect("c").conversation_id);
    }
    assert_eq!((ids.len(), created), (1, 1));
    let mut alice = harness.client(TENANT, "alice");
    let listed = alice
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.conversations.len(), 1);
    // The same key from another user is another request.
    let mut bob = harness.client(TENANT, "bob");
    let other = bob
        .create_conversation(pb::CreateConversationRequest {
            request_id,
            ..group("Bob's", &[])
        })
        .await
        .expect("create")
        .into_inner();
    assert!(other.created);
}

async fn archived_conversations_are_read_only(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let id = team(&harness).await;
    let mut alice = harness.client(TENANT, "alice");
    let archived = alice
        .archive_conversation(pb::ArchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("archive")
        .into_inner();
    let archived = archived.conversation.expect("c");
    assert!(archived.archived);
    assert_eq!(archived.archiver_id, "alice");
    assert!(archived.archive_time.is_some());
    // Archiving again is a no-op.
    let again = alice
        .archive_conversation(pb::ArchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("archive")
        .into_inner();
    assert_eq!(again.conversation.expect("c").etag, archived.etag);

    let post = alice
        .check_permission(pb::CheckPermissionRequest {
            conversation_id: id.clone(),
            user_id: String::new(),
            action: Action::Post.into(),
            ..Default::default()
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(
        (post.allowed, post.denial_reason, post.archived),
        (false, DenialReason::Archived as i32, true)
    );
    let read = alice
        .check_permission(pb::CheckPermissionRequest {
            conversation_id: id.clone(),
            user_id: String::new(),
            action: Action::Read.into(),
            ..Default::default()
        })
        .await
        .expect("check")
        .into_inner();
    assert!(read.allowed);
    let update = pb::UpdateConversationRequest {
        conversation: Some(pb::Conversation {
            conversation_id: id.clone(),
            title: "x".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        code(alice.update_conversation(update.clone()).await),
        Code::FailedPrecondition
    );
    let add = pb::AddParticipantsRequest {
        conversation_id: id.clone(),
        participants: vec![pb::ParticipantSpec {
            user_id: "z".to_owned(),
            role: 0,
        }],
    };
    assert_eq!(
        code(alice.add_participants(add).await),
        Code::FailedPrecondition
    );

    // Listing: hidden by default, shown by the filter.
    let active = alice
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(active.conversations.is_empty());
    let only_archived = alice
        .list_conversations(pb::ListConversationsRequest {
            archive_filter: pb::ArchiveFilter::Archived.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(only_archived.conversations.len(), 1);

    let unarchived = alice
        .unarchive_conversation(pb::UnarchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("unarchive")
        .into_inner();
    assert!(!unarchived.conversation.expect("c").archived);
    assert_eq!(code(alice.update_conversation(update).await), Code::Ok);
}

async fn delete_and_undelete_within_the_window(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let id = team(&harness).await;
    let mut alice = harness.client(TENANT, "alice");
    let deleted = alice
        .delete_conversation(pb::DeleteConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("delete")
        .into_inner();
    let deleted = deleted.conversation.expect("c");
    let (delete_time, purge_time) = (
        deleted.delete_time.expect("delete_time"),
        deleted.purge_time.expect("purge_time"),
    );
    assert_eq!(purge_time.seconds - delete_time.seconds, 30 * 24 * 3600);

    // Invisible to every RPC but Undelete.
    assert_eq!(
        code(
            alice
                .get_conversation(pb::GetConversationRequest {
                    conversation_id: id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            alice
                .delete_conversation(pb::DeleteConversationRequest {
                    conversation_id: id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    let listed = alice
        .list_conversations(pb::ListConversationsRequest {
            archive_filter: pb::ArchiveFilter::All.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(listed.conversations.is_empty());
    let check = pb::CheckPermissionRequest {
        conversation_id: id.clone(),
        user_id: String::new(),
        action: Action::Read.into(),
        ..Default::default()
    };
    assert_eq!(code(alice.check_permission(check).await), Code::NotFound);

    // Only the owner restores it; outsiders do not learn it exists.
    let mut ada = harness.client(TENANT, "ada");
    assert_eq!(
        code(
            ada.undelete_conversation(pb::UndeleteConversationRequest {
                conversation_id: id.clone()
            })
            .await
        ),
        Code::PermissionDenied
    );
    let mut olga = harness.client(TENANT, "olga");
    assert_eq!(
        code(
            olga.undelete_conversation(pb::UndeleteConversationRequest {
                conversation_id: id.clone()
            })
            .await
        ),
        Code::NotFound
    );
    let restored = alice
        .undelete_conversation(pb::UndeleteConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("undelete")
        .into_inner();
    let restored = restored.conversation.expect("c");
    assert!(restored.delete_time.is_none());
    assert_eq!(restored.participant_count, 4);
    assert_eq!(
        code(
            alice
                .undelete_conversation(pb::UndeleteConversationRequest {
                    conversation_id: id.clone()
                })
                .await
        ),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(
            ada.get_conversation(pb::GetConversationRequest {
                conversation_id: id
            })
            .await
        ),
        Code::Ok
    );
}

async fn undelete_window_expiry_and_purge(backend: Backend) {
    let harness = ConversationHarness::start_with(backend, |settings| {
        settings.conversation_service.undelete_window = Duration::ZERO;
    })
    .await;
    let id = team(&harness).await;
    let mut alice = harness.client(TENANT, "alice");
    alice
        .delete_conversation(pb::DeleteConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("delete");
    // The window has passed at once: gone for good.
    assert_eq!(
        code(
            alice
                .undelete_conversation(pb::UndeleteConversationRequest {
                    conversation_id: id.clone()
                })
                .await
        ),
        Code::NotFound
    );

    // The purge removes the row and its participants.
    let db = conversation_service::store::connect(&harness.database.settings)
        .await
        .expect("connect");
    let app = conversation_service::app::Conversations::new(
        std::sync::Arc::new(conversation_service::store::SqlStore::new(db.clone())),
        conversation_service::app::Policy {
            undelete_window: Duration::ZERO,
            max_participants: 10,
        },
        messaging_outbox::EventBus::new(16),
    );
    let purged = app.purge_expired().await.expect("purge");
    assert_eq!(purged, 1);
    let uuid = uuid::Uuid::parse_str(&id).expect("uuid");
    let row = conversation_service::store::queries::find_conversation(&db, TENANT, uuid, false)
        .await
        .expect("find");
    assert!(row.is_none());
    let participants = conversation_service::store::queries::participant_ids(&db, TENANT, uuid)
        .await
        .expect("participants");
    assert!(participants.is_empty());
    assert_eq!(app.purge_expired().await.expect("purge"), 0);
}

async fn updates_honour_the_etag(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let mut alice = harness.client(TENANT, "alice");
    let conversation = create(&mut alice, group("v1", &[])).await;
    let update = |title: &str, etag: &str| pb::UpdateConversationRequest {
        conversation: Some(pb::Conversation {
            conversation_id: conversation.conversation_id.clone(),
            title: title.to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["title".to_owned()],
        }),
        etag: etag.to_owned(),
    };
    let second = alice
        .update_conversation(update("v2", &conversation.etag))
        .await
        .expect("update")
        .into_inner()
        .conversation
        .expect("c");
    assert_ne!(second.etag, conversation.etag);
    assert_eq!(
        code(
            alice
                .update_conversation(update("stale", &conversation.etag))
                .await
        ),
        Code::Aborted
    );
    let third = alice
        .update_conversation(update("v3", &second.etag))
        .await
        .expect("update")
        .into_inner()
        .conversation
        .expect("c");
    assert_eq!(third.title, "v3");
    // Only the masked field changes.
    let description_only = pb::UpdateConversationRequest {
        conversation: Some(pb::Conversation {
            conversation_id: conversation.conversation_id.clone(),
            description: "about".to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["description".to_owned()],
        }),
        etag: String::new(),
    };
    let fourth = alice
        .update_conversation(description_only)
        .await
        .expect("update")
        .into_inner()
        .conversation
        .expect("c");
    assert_eq!(
        (fourth.title.as_str(), fourth.description.as_str()),
        ("v3", "about")
    );
}
