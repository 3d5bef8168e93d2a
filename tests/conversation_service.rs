//! ConversationService over real gRPC, on SQLite and on PostgreSQL: every RPC, the role matrix,
//! DIRECT de-duplication, channels, archive, delete and undelete, ownership, tenant isolation,
//! authentication and bad input.

use std::collections::HashSet;
use std::time::Duration;

use messaging_e2e::{
    Backend, ConversationClient, ConversationHarness, Headers, backend_tests, issuer,
    violated_fields,
};
use messaging_proto::conversation::v1::{self as pb, Action, ConversationType, DenialReason, Role};
use tonic::Code;

backend_tests!(
    create_get_and_list_with_pagination,
    direct_conversations_are_deduplicated,
    create_is_idempotent_with_request_id,
    role_matrix_over_grpc,
    check_permission_matches_the_matrix,
    channels_can_be_discovered_and_joined,
    archived_conversations_are_read_only,
    delete_and_undelete_within_the_window,
    undelete_window_expiry_and_purge,
    ownership_transfer_and_leaving,
    other_tenants_get_not_found_everywhere,
    authentication_is_required_and_checked,
    bad_input_names_the_fields,
    updates_honour_the_etag,
    watch_events_serves_services_with_resume_and_tenant_scope,
);

const TENANT: &str = "acme";

fn group(title: &str, members: &[(&str, Role)]) -> pb::CreateConversationRequest {
    pb::CreateConversationRequest {
        r#type: ConversationType::Group.into(),
        title: title.to_owned(),
        participants: members
            .iter()
            .map(|(user, role)| pb::ParticipantSpec {
                user_id: (*user).to_owned(),
                role: (*role).into(),
            })
            .collect(),
        ..Default::default()
    }
}

async fn create(
    client: &mut ConversationClient,
    request: pb::CreateConversationRequest,
) -> pb::Conversation {
    client
        .create_conversation(request)
        .await
        .expect("create")
        .into_inner()
        .conversation
        .expect("conversation")
}

/// A group owned by alice with admin ada, member mia and viewer vic.
async fn team(harness: &ConversationHarness) -> String {
    let mut alice = harness.client(TENANT, "alice");
    create(
        &mut alice,
        group(
            "Team",
            &[
                ("ada", Role::Admin),
                ("mia", Role::Member),
                ("vic", Role::Viewer),
            ],
        ),
    )
    .await
    .conversation_id
}

fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

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

/// One call of the role matrix.
#[derive(Debug, Clone, Copy)]
enum Call {
    Update,
    Get,
    ListParticipants,
    Add(&'static str, Role),
    SetRole(&'static str, Role),
    Remove(&'static str),
    Archive,
    Unarchive,
    Transfer(&'static str),
    Delete,
    Undelete,
}

/// Makes `call` on conversation `id` as `client`; the status code it ends with.
async fn make(client: &mut ConversationClient, id: &str, call: Call) -> Code {
    let id = id.to_owned();
    match call {
        Call::Update => code(
            client
                .update_conversation(pb::UpdateConversationRequest {
                    conversation: Some(pb::Conversation {
                        conversation_id: id,
                        title: "Renamed".to_owned(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["title".to_owned()],
                    }),
                    etag: String::new(),
                })
                .await,
        ),
        Call::Get => code(
            client
                .get_conversation(pb::GetConversationRequest {
                    conversation_id: id,
                })
                .await,
        ),
        Call::ListParticipants => code(
            client
                .list_participants(pb::ListParticipantsRequest {
                    conversation_id: id,
                    ..Default::default()
                })
                .await,
        ),
        Call::Add(user, role) => code(
            client
                .add_participants(pb::AddParticipantsRequest {
                    conversation_id: id,
                    participants: vec![pb::ParticipantSpec {
                        user_id: user.to_owned(),
                        role: role.into(),
                    }],
                })
                .await,
        ),
        Call::SetRole(user, role) => code(
            client
                .update_participant_role(pb::UpdateParticipantRoleRequest {
                    conversation_id: id,
                    user_id: user.to_owned(),
                    role: role.into(),
                })
                .await,
        ),
        Call::Remove(user) => code(
            client
                .remove_participant(pb::RemoveParticipantRequest {
                    conversation_id: id,
                    user_id: user.to_owned(),
                })
                .await,
        ),
        Call::Archive => code(
            client
                .archive_conversation(pb::ArchiveConversationRequest {
                    conversation_id: id,
                })
                .await,
        ),
        Call::Unarchive => code(
            client
                .unarchive_conversation(pb::UnarchiveConversationRequest {
                    conversation_id: id,
                })
                .await,
        ),
        Call::Transfer(user) => code(
            client
                .transfer_ownership(pb::TransferOwnershipRequest {
                    conversation_id: id,
                    new_owner_id: user.to_owned(),
                })
                .await,
        ),
        Call::Delete => code(
            client
                .delete_conversation(pb::DeleteConversationRequest {
                    conversation_id: id,
                })
                .await,
        ),
        Call::Undelete => code(
            client
                .undelete_conversation(pb::UndeleteConversationRequest {
                    conversation_id: id,
                })
                .await,
        ),
    }
}

/// The role matrix over gRPC, as a table: who makes which call, in this order, and the code
/// each gets. The team is alice (OWNER), ada (ADMIN), mia (MEMBER), vic (VIEWER); olga is not
/// in it, and root is a tenant administrator.
const MATRIX: &[(&str, Call, Code)] = &[
    // Update: OWNER and ADMIN; MEMBER and VIEWER denied; outsiders cannot see it.
    ("alice", Call::Update, Code::Ok),
    ("ada", Call::Update, Code::Ok),
    ("mia", Call::Update, Code::PermissionDenied),
    ("vic", Call::Update, Code::PermissionDenied),
    ("olga", Call::Update, Code::NotFound),
    // Reading: every participant; outsiders get NOT_FOUND.
    ("alice", Call::Get, Code::Ok),
    ("ada", Call::Get, Code::Ok),
    ("mia", Call::Get, Code::Ok),
    ("vic", Call::Get, Code::Ok),
    ("alice", Call::ListParticipants, Code::Ok),
    ("ada", Call::ListParticipants, Code::Ok),
    ("mia", Call::ListParticipants, Code::Ok),
    ("vic", Call::ListParticipants, Code::Ok),
    ("olga", Call::Get, Code::NotFound),
    ("olga", Call::ListParticipants, Code::NotFound),
    // Adding: ADMIN adds MEMBER and VIEWER but not ADMIN; OWNER adds ADMIN; others cannot.
    ("ada", Call::Add("m1", Role::Member), Code::Ok),
    ("ada", Call::Add("v1", Role::Viewer), Code::Ok),
    ("ada", Call::Add("a1", Role::Admin), Code::PermissionDenied),
    ("alice", Call::Add("a1", Role::Admin), Code::Ok),
    ("mia", Call::Add("m2", Role::Member), Code::PermissionDenied),
    ("vic", Call::Add("m2", Role::Member), Code::PermissionDenied),
    // Roles: ADMIN moves MEMBER <-> VIEWER only; OWNER promotes; nobody re-roles the owner.
    ("ada", Call::SetRole("m1", Role::Viewer), Code::Ok),
    (
        "ada",
        Call::SetRole("m1", Role::Admin),
        Code::PermissionDenied,
    ),
    (
        "ada",
        Call::SetRole("a1", Role::Member),
        Code::PermissionDenied,
    ),
    (
        "mia",
        Call::SetRole("v1", Role::Member),
        Code::PermissionDenied,
    ),
    ("alice", Call::SetRole("m1", Role::Admin), Code::Ok),
    (
        "alice",
        Call::SetRole("alice", Role::Member),
        Code::PermissionDenied,
    ),
    (
        "alice",
        Call::SetRole("nobody", Role::Member),
        Code::NotFound,
    ),
    // Removing: ADMIN removes MEMBER/VIEWER, not ADMIN; OWNER removes ADMIN; MEMBER cannot.
    ("mia", Call::Remove("v1"), Code::PermissionDenied),
    ("ada", Call::Remove("v1"), Code::Ok),
    ("ada", Call::Remove("a1"), Code::PermissionDenied),
    ("alice", Call::Remove("a1"), Code::Ok),
    ("ada", Call::Remove("alice"), Code::PermissionDenied),
    ("alice", Call::Remove("v1"), Code::NotFound),
    // Archive: ADMIN and OWNER. Delete and transfer: OWNER only.
    ("mia", Call::Archive, Code::PermissionDenied),
    ("ada", Call::Archive, Code::Ok),
    ("ada", Call::Unarchive, Code::Ok),
    ("ada", Call::Transfer("mia"), Code::PermissionDenied),
    ("ada", Call::Delete, Code::PermissionDenied),
    ("mia", Call::Delete, Code::PermissionDenied),
    // A tenant administrator acts as an owner anywhere in its tenant.
    ("root", Call::Update, Code::Ok),
    ("alice", Call::Delete, Code::Ok),
    ("root", Call::Undelete, Code::Ok),
];

async fn role_matrix_over_grpc(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let id = team(&harness).await;
    for (step, (user, call, expected)) in MATRIX.iter().enumerate() {
        let mut client = if *user == "root" {
            harness.client_with_roles(TENANT, user, &["admin"])
        } else {
            harness.client(TENANT, user)
        };
        let got = make(&mut client, &id, *call).await;
        assert_eq!(got, *expected, "step {step}: {user} {call:?}");
    }
    let mut owner = harness.client(TENANT, "alice");
    // Adding someone already present leaves them as they are.
    let again = owner
        .add_participants(pb::AddParticipantsRequest {
            conversation_id: id.clone(),
            participants: vec![pb::ParticipantSpec {
                user_id: "m1".to_owned(),
                role: Role::Viewer.into(),
            }],
        })
        .await
        .expect("add")
        .into_inner();
    assert_eq!(again.participants[0].role, Role::Admin as i32);
    // The audit trail is on the resource: who changed it last, and how many are left.
    let seen = owner
        .get_conversation(pb::GetConversationRequest {
            conversation_id: id,
        })
        .await
        .expect("get")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(seen.updater_id, "root");
    assert_eq!(seen.participant_count, 5, "alice ada mia vic m1");
}

async fn check_permission_matches_the_matrix(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let id = team(&harness).await;
    let actions = [
        Action::Read,
        Action::Post,
        Action::React,
        Action::Moderate,
        Action::ManageParticipants,
        Action::Update,
        Action::Archive,
        Action::Delete,
        Action::TransferOwnership,
    ];
    let expected: [(&str, Role, usize); 4] = [
        ("alice", Role::Owner, 9),
        ("ada", Role::Admin, 7),
        ("mia", Role::Member, 3),
        ("vic", Role::Viewer, 1),
    ];
    for (user, role, allowed_count) in expected {
        let mut client = harness.client(TENANT, user);
        for (index, action) in actions.iter().enumerate() {
            let answer = client
                .check_permission(pb::CheckPermissionRequest {
                    conversation_id: id.clone(),
                    user_id: String::new(),
                    action: (*action).into(),
                    ..Default::default()
                })
                .await
                .expect("check")
                .into_inner();
            assert_eq!(answer.role, role as i32);
            assert_eq!(answer.allowed, index < allowed_count, "{user} {action:?}");
            let reason = if answer.allowed {
                DenialReason::Unspecified
            } else {
                DenialReason::RoleInsufficient
            };
            assert_eq!(answer.denial_reason, reason as i32, "{user} {action:?}");
            assert_eq!(answer.conversation_type, ConversationType::Group as i32);
        }
    }
    // Asking about someone else needs the service role.
    let mut mia = harness.client(TENANT, "mia");
    let about_alice = pb::CheckPermissionRequest {
        conversation_id: id.clone(),
        user_id: "alice".to_owned(),
        action: Action::Read.into(),
        ..Default::default()
    };
    assert_eq!(
        code(mia.check_permission(about_alice.clone()).await),
        Code::PermissionDenied
    );
    let mut service = harness.client_with_roles(TENANT, "message-service", &["service"]);
    let answer = service
        .check_permission(about_alice)
        .await
        .expect("check")
        .into_inner();
    assert!(answer.allowed);
    // A service learns that an outsider is not a participant; the outsider just gets NOT_FOUND.
    let about_olga = pb::CheckPermissionRequest {
        conversation_id: id.clone(),
        user_id: "olga".to_owned(),
        action: Action::Read.into(),
        ..Default::default()
    };
    let answer = service
        .check_permission(about_olga)
        .await
        .expect("check")
        .into_inner();
    assert!(!answer.allowed);
    assert_eq!(answer.denial_reason, DenialReason::NotParticipant as i32);
    let mut olga = harness.client(TENANT, "olga");
    let own = pb::CheckPermissionRequest {
        conversation_id: id.clone(),
        user_id: String::new(),
        action: Action::Read.into(),
        ..Default::default()
    };
    assert_eq!(code(olga.check_permission(own).await), Code::NotFound);
    // A service token for every tenant names the tenant and user in headers.
    let token = issuer()
        .issue(
            "*",
            "message-service",
            &["service"],
            Duration::from_secs(60),
        )
        .expect("token");
    let mut multi = harness.client_with_headers(
        Headers::bearer(&token)
            .with("x-messaging-tenant-id", TENANT)
            .with("x-messaging-user-id", "vic"),
    );
    let answer = multi
        .check_permission(pb::CheckPermissionRequest {
            conversation_id: id.clone(),
            user_id: String::new(),
            action: Action::Post.into(),
            ..Default::default()
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!((answer.allowed, answer.role), (false, Role::Viewer as i32));
}

async fn channels_can_be_discovered_and_joined(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let mut alice = harness.client(TENANT, "alice");
    let channel = create(
        &mut alice,
        pb::CreateConversationRequest {
            r#type: ConversationType::Channel.into(),
            title: "general".to_owned(),
            ..Default::default()
        },
    )
    .await;
    let private = create(&mut alice, group("private", &[])).await;
    let mut bob = harness.client(TENANT, "bob");

    // Visible and listable before joining, but not readable.
    let seen = bob
        .get_conversation(pb::GetConversationRequest {
            conversation_id: channel.conversation_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        seen.conversation.expect("c").caller_role,
        Role::Unspecified as i32
    );
    let joinable = bob
        .list_conversations(pb::ListConversationsRequest {
            membership_filter: pb::MembershipFilter::Joinable.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        joinable
            .conversations
            .iter()
            .map(|c| c.conversation_id.clone())
            .collect::<Vec<_>>(),
        vec![channel.conversation_id.clone()]
    );
    let joined = bob
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(joined.conversations.is_empty());
    let read = bob
        .check_permission(pb::CheckPermissionRequest {
            conversation_id: channel.conversation_id.clone(),
            user_id: String::new(),
            action: Action::Read.into(),
            ..Default::default()
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(
        (read.allowed, read.denial_reason),
        (false, DenialReason::NotParticipant as i32)
    );
    assert_eq!(
        code(
            bob.list_participants(pb::ListParticipantsRequest {
                conversation_id: channel.conversation_id.clone(),
                ..Default::default()
            })
            .await
        ),
        Code::Ok
    );
    // Visible but not a participant: changes are denied, not hidden.
    let update = pb::UpdateConversationRequest {
        conversation: Some(pb::Conversation {
            conversation_id: channel.conversation_id.clone(),
            title: "mine".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        code(bob.update_conversation(update).await),
        Code::PermissionDenied
    );

    // Joining makes a MEMBER; joining twice changes nothing.
    let participant = bob
        .join_conversation(pb::JoinConversationRequest {
            conversation_id: channel.conversation_id.clone(),
        })
        .await
        .expect("join")
        .into_inner();
    assert_eq!(
        participant.participant.expect("p").role,
        Role::Member as i32
    );
    let again = bob
        .join_conversation(pb::JoinConversationRequest {
            conversation_id: channel.conversation_id.clone(),
        })
        .await
        .expect("join")
        .into_inner();
    assert_eq!(again.participant.expect("p").role, Role::Member as i32);
    let all = bob
        .list_conversations(pb::ListConversationsRequest {
            membership_filter: pb::MembershipFilter::All.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(all.conversations.len(), 1);
    assert_eq!(all.conversations[0].participant_count, 2);
    // Groups cannot be joined or even seen.
    assert_eq!(
        code(
            bob.join_conversation(pb::JoinConversationRequest {
                conversation_id: private.conversation_id.clone()
            })
            .await
        ),
        Code::NotFound
    );
    // Leaving works for members; the channel stays visible.
    bob.leave_conversation(pb::LeaveConversationRequest {
        conversation_id: channel.conversation_id.clone(),
    })
    .await
    .expect("leave");
    let after = bob
        .get_conversation(pb::GetConversationRequest {
            conversation_id: channel.conversation_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(after.conversation.expect("c").participant_count, 1);
    assert_eq!(
        code(
            bob.leave_conversation(pb::LeaveConversationRequest {
                conversation_id: channel.conversation_id
            })
            .await
        ),
        Code::NotFound
    );
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
        messaging_platform::outbox::EventBus::new(16),
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

async fn ownership_transfer_and_leaving(backend: Backend) {
    let harness = ConversationHarness::start_with(backend, |settings| {
        settings.conversation_service.max_participants = 5;
    })
    .await;
    let id = team(&harness).await;
    let mut alice = harness.client(TENANT, "alice");
    // The owner cannot leave.
    let leave = alice
        .leave_conversation(pb::LeaveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect_err("owner leave");
    assert_eq!(leave.code(), Code::FailedPrecondition);
    let transfer = |user: &str| pb::TransferOwnershipRequest {
        conversation_id: id.clone(),
        new_owner_id: user.to_owned(),
    };
    assert_eq!(
        code(alice.transfer_ownership(transfer("stranger")).await),
        Code::FailedPrecondition
    );
    let moved = alice
        .transfer_ownership(transfer("mia"))
        .await
        .expect("transfer")
        .into_inner()
        .conversation
        .expect("c");
    assert_eq!(
        moved.caller_role,
        Role::Admin as i32,
        "the old owner becomes an admin"
    );
    let owners = alice
        .list_participants(pb::ListParticipantsRequest {
            conversation_id: id.clone(),
            roles: vec![Role::Owner.into()],
            ..Default::default()
        })
        .await
        .expect("participants")
        .into_inner();
    assert_eq!(
        owners
            .participants
            .iter()
            .map(|p| p.user_id.as_str())
            .collect::<Vec<_>>(),
        vec!["mia"]
    );
    // The old owner lost owner rights and may now leave; the new owner has them.
    assert_eq!(
        code(
            alice
                .delete_conversation(pb::DeleteConversationRequest {
                    conversation_id: id.clone()
                })
                .await
        ),
        Code::PermissionDenied
    );
    // Removing oneself is leaving: it answers with the conversation as it is now.
    let after = alice
        .remove_participant(pb::RemoveParticipantRequest {
            conversation_id: id.clone(),
            user_id: "alice".to_owned(),
        })
        .await
        .expect("leave by removing oneself")
        .into_inner()
        .conversation
        .expect("c");
    assert_eq!(
        (after.participant_count, after.caller_role),
        (3, Role::Unspecified as i32)
    );
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
    let mut mia = harness.client(TENANT, "mia");
    assert_eq!(
        code(
            mia.leave_conversation(pb::LeaveConversationRequest {
                conversation_id: id.clone()
            })
            .await
        ),
        Code::FailedPrecondition
    );
    // Participant limit: 3 now, max 5.
    let add = |users: &[&str]| pb::AddParticipantsRequest {
        conversation_id: id.clone(),
        participants: users
            .iter()
            .map(|user| pb::ParticipantSpec {
                user_id: (*user).to_owned(),
                role: 0,
            })
            .collect(),
    };
    assert_eq!(
        code(mia.add_participants(add(&["p1", "p2", "p3"])).await),
        Code::ResourceExhausted
    );
    assert_eq!(
        code(mia.add_participants(add(&["p1", "p2"])).await),
        Code::Ok
    );
    assert_eq!(
        code(
            mia.delete_conversation(pb::DeleteConversationRequest {
                conversation_id: id
            })
            .await
        ),
        Code::Ok
    );
}

async fn other_tenants_get_not_found_everywhere(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let id = team(&harness).await;
    let mut alice = harness.client(TENANT, "alice");
    let channel = create(
        &mut alice,
        pb::CreateConversationRequest {
            r#type: ConversationType::Channel.into(),
            title: "public".to_owned(),
            ..Default::default()
        },
    )
    .await
    .conversation_id;
    // Same user id, another tenant; and that tenant's administrator.
    for mut other in [
        harness.client("globex", "alice"),
        harness.client_with_roles("globex", "root", &["admin", "service"]),
    ] {
        for conversation_id in [id.clone(), channel.clone()] {
            let c = || conversation_id.clone();
            assert_eq!(
                code(
                    other
                        .get_conversation(pb::GetConversationRequest {
                            conversation_id: c()
                        })
                        .await
                ),
                Code::NotFound
            );
            let update = pb::UpdateConversationRequest {
                conversation: Some(pb::Conversation {
                    conversation_id: c(),
                    title: "x".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            assert_eq!(
                code(other.update_conversation(update).await),
                Code::NotFound
            );
            assert_eq!(
                code(
                    other
                        .archive_conversation(pb::ArchiveConversationRequest {
                            conversation_id: c()
                        })
                        .await
                ),
                Code::NotFound
            );
            assert_eq!(
                code(
                    other
                        .unarchive_conversation(pb::UnarchiveConversationRequest {
                            conversation_id: c()
                        })
                        .await
                ),
                Code::NotFound
            );
            assert_eq!(
                code(
                    other
                        .delete_conversation(pb::DeleteConversationRequest {
                            conversation_id: c()
                        })
                        .await
                ),
                Code::NotFound
            );
            assert_eq!(
                code(
                    other
                        .undelete_conversation(pb::UndeleteConversationRequest {
                            conversation_id: c()
                        })
                        .await
                ),
                Code::NotFound
            );
            let add = pb::AddParticipantsRequest {
                conversation_id: c(),
                participants: vec![pb::ParticipantSpec {
                    user_id: "x".to_owned(),
                    role: 0,
                }],
            };
            assert_eq!(code(other.add_participants(add).await), Code::NotFound);
            assert_eq!(
                code(
                    other
                        .remove_participant(pb::RemoveParticipantRequest {
                            conversation_id: c(),
                            user_id: "mia".to_owned()
                        })
                        .await
                ),
                Code::NotFound
            );
            let role = pb::UpdateParticipantRoleRequest {
                conversation_id: c(),
                user_id: "mia".to_owned(),
                role: Role::Viewer.into(),
            };
            assert_eq!(
                code(other.update_participant_role(role).await),
                Code::NotFound
            );
            assert_eq!(
                code(
                    other
                        .list_participants(pb::ListParticipantsRequest {
                            conversation_id: c(),
                            ..Default::default()
                        })
                        .await
                ),
                Code::NotFound
            );
            assert_eq!(
                code(
                    other
                        .join_conversation(pb::JoinConversationRequest {
                            conversation_id: c()
                        })
                        .await
                ),
                Code::NotFound
            );
            assert_eq!(
                code(
                    other
                        .leave_conversation(pb::LeaveConversationRequest {
                            conversation_id: c()
                        })
                        .await
                ),
                Code::NotFound
            );
            let transfer = pb::TransferOwnershipRequest {
                conversation_id: c(),
                new_owner_id: "mia".to_owned(),
            };
            assert_eq!(
                code(other.transfer_ownership(transfer).await),
                Code::NotFound
            );
            let check = pb::CheckPermissionRequest {
                conversation_id: c(),
                user_id: "alice".to_owned(),
                action: Action::Read.into(),
                ..Default::default()
            };
            assert_eq!(code(other.check_permission(check).await), Code::NotFound);
        }
        for membership in [
            pb::MembershipFilter::Joined,
            pb::MembershipFilter::Joinable,
            pb::MembershipFilter::All,
        ] {
            let listed = other
                .list_conversations(pb::ListConversationsRequest {
                    membership_filter: membership.into(),
                    archive_filter: pb::ArchiveFilter::All.into(),
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner();
            assert!(listed.conversations.is_empty(), "{membership:?}");
        }
        // The same DIRECT pair in another tenant is another conversation.
        let direct = pb::CreateConversationRequest {
            r#type: ConversationType::Direct.into(),
            participants: vec![pb::ParticipantSpec {
                user_id: "mia".to_owned(),
                role: 0,
            }],
            ..Default::default()
        };
        let mine = alice
            .create_conversation(direct.clone())
            .await
            .expect("create")
            .into_inner()
            .conversation
            .expect("c");
        let theirs = other
            .create_conversation(direct)
            .await
            .expect("create")
            .into_inner()
            .conversation
            .expect("c");
        assert_ne!(mine.conversation_id, theirs.conversation_id);
    }
    // Nothing changed for the owner.
    let seen = alice
        .get_conversation(pb::GetConversationRequest {
            conversation_id: id,
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(seen.conversation.expect("c").participant_count, 4);
}

async fn authentication_is_required_and_checked(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let request = || pb::ListConversationsRequest::default();
    let mut anonymous = harness.client_with_headers(Headers::none());
    assert_eq!(
        code(anonymous.list_conversations(request()).await),
        Code::Unauthenticated
    );
    let mut garbage = harness.client_with_headers(Headers::bearer("not-a-jwt"));
    assert_eq!(
        code(garbage.list_conversations(request()).await),
        Code::Unauthenticated
    );
    let other_secret = messaging_platform::auth::TokenIssuer::from_settings(
        &messaging_platform::auth::AuthSettings {
            hs256_secret: Some(messaging_platform::config::Secret::new(
                "another-secret-of-enough-length-xxxxxxxx",
            )),
            ..Default::default()
        },
    )
    .expect("issuer");
    let forged = other_secret
        .issue(TENANT, "alice", &[], Duration::from_secs(60))
        .expect("token");
    let mut forged = harness.client_with_headers(Headers::bearer(&forged));
    assert_eq!(
        code(forged.list_conversations(request()).await),
        Code::Unauthenticated
    );
    // Expired beyond the 30 s leeway.
    let expired = expired_token();
    let mut expired = harness.client_with_headers(Headers::bearer(&expired));
    let status = expired
        .list_conversations(request())
        .await
        .expect_err("expired");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
    // Not valid yet beyond the leeway, and valid forever: refused; within the limits: fine.
    let now = unix_now();
    for (token, expected) in [
        (
            token_with(now + 600, Some(now + 120)),
            Code::Unauthenticated,
        ),
        (token_with(u64::MAX, None), Code::Unauthenticated),
        (
            token_with(now + 31 * 24 * 3600, None),
            Code::Unauthenticated,
        ),
        (token_with(now + 600, Some(now + 10)), Code::Ok),
        (token_with(now + 29 * 24 * 3600, None), Code::Ok),
    ] {
        let mut client = harness.client_with_headers(Headers::bearer(&token));
        assert_eq!(code(client.list_conversations(request()).await), expected);
    }
    // A service token for every tenant must name one.
    let service = issuer()
        .issue("*", "svc", &["service"], Duration::from_secs(60))
        .expect("token");
    let mut service = harness.client_with_headers(Headers::bearer(&service));
    assert_eq!(
        code(service.list_conversations(request()).await),
        Code::Unauthenticated
    );
    // A service token bound to a tenant cannot act in another.
    let bound = issuer()
        .issue(TENANT, "svc", &["service"], Duration::from_secs(60))
        .expect("token");
    let mut bound = harness
        .client_with_headers(Headers::bearer(&bound).with("x-messaging-tenant-id", "globex"));
    assert_eq!(
        code(bound.list_conversations(request()).await),
        Code::PermissionDenied
    );
}

fn expired_token() -> String {
    let now = unix_now();
    token_with(now - 120, None)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// alice's token with `exp` and `nbf` as given.
fn token_with(exp: u64, nbf: Option<u64>) -> String {
    let claims = messaging_platform::auth::Claims {
        sub: "alice".to_owned(),
        tenant_id: TENANT.to_owned(),
        exp,
        iat: Some(unix_now() - 3600),
        nbf,
        roles: Vec::new(),
        iss: None,
        aud: None,
    };
    issuer().sign(&claims).expect("token")
}

async fn bad_input_names_the_fields(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let mut alice = harness.client(TENANT, "alice");
    let fields = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        violated_fields(&status)
    };
    // Every bad field of a request at once.
    let status = alice
        .create_conversation(pb::CreateConversationRequest {
            r#type: ConversationType::Group.into(),
            title: "   ".to_owned(),
            description: "d".repeat(2_001),
            participants: vec![
                pb::ParticipantSpec {
                    user_id: "u".repeat(129),
                    role: 0,
                },
                pb::ParticipantSpec {
                    user_id: "bob".to_owned(),
                    role: Role::Owner.into(),
                },
                pb::ParticipantSpec {
                    user_id: "carl".to_owned(),
                    role: 0,
                },
                pb::ParticipantSpec {
                    user_id: "carl".to_owned(),
                    role: 0,
                },
                pb::ParticipantSpec {
                    user_id: "alice".to_owned(),
                    role: 0,
                },
            ],
            request_id: String::new(),
        })
        .await
        .expect_err("bad create");
    assert_eq!(
        fields(status),
        vec![
            "title",
            "description",
            "participants[0].user_id",
            "participants[1].role",
            "participants[3].user_id",
            "participants[4].user_id",
        ]
    );
    let oversized = alice
        .create_conversation(group(&"t".repeat(201), &[]))
        .await
        .expect_err("long title");
    assert_eq!(fields(oversized), vec!["title"]);
    let no_type = alice
        .create_conversation(pb::CreateConversationRequest {
            title: "x".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("type");
    assert_eq!(fields(no_type), vec!["type"]);
    let unknown_type = alice
        .create_conversation(pb::CreateConversationRequest {
            r#type: 99,
            title: "x".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("type");
    assert_eq!(fields(unknown_type), vec!["type"]);
    let two = alice
        .create_conversation(pb::CreateConversationRequest {
            r#type: ConversationType::Direct.into(),
            participants: vec![
                pb::ParticipantSpec {
                    user_id: "b".to_owned(),
                    role: 0,
                },
                pb::ParticipantSpec {
                    user_id: "c".to_owned(),
                    role: 0,
                },
            ],
            ..Default::default()
        })
        .await
        .expect_err("direct with three");
    assert_eq!(fields(two), vec!["participants"]);
    let too_many = alice
        .create_conversation(group(
            "big",
            &(0..101).map(|_| ("x", Role::Member)).collect::<Vec<_>>(),
        ))
        .await
        .expect_err("too many");
    assert_eq!(fields(too_many), vec!["participants"]);

    // Ids, page sizes, page tokens, enums.
    let bad_id = alice
        .get_conversation(pb::GetConversationRequest {
            conversation_id: "nope".to_owned(),
        })
        .await
        .expect_err("id");
    assert_eq!(fields(bad_id), vec!["conversation_id"]);
    let empty_id = alice
        .get_conversation(pb::GetConversationRequest::default())
        .await
        .expect_err("id");
    assert_eq!(fields(empty_id), vec!["conversation_id"]);
    for page_size in [-1, 201] {
        let status = alice
            .list_conversations(pb::ListConversationsRequest {
                page_size,
                ..Default::default()
            })
            .await
            .expect_err("size");
        assert_eq!(fields(status), vec!["page_size"]);
    }
    for token in ["%%%", "bm90IGEgdG9rZW4"] {
        let status = alice
            .list_conversations(pb::ListConversationsRequest {
                page_token: token.to_owned(),
                ..Default::default()
            })
            .await
            .expect_err("token");
        assert_eq!(fields(status), vec!["page_token"]);
    }
    let status = alice
        .list_conversations(pb::ListConversationsRequest {
            membership_filter: 42,
            archive_filter: 42,
            ..Default::default()
        })
        .await
        .expect_err("enums");
    assert_eq!(fields(status), vec!["archive_filter", "membership_filter"]);
    let id = create(&mut alice, group("ok", &[("bob", Role::Member)]))
        .await
        .conversation_id;
    let status = alice
        .list_participants(pb::ListParticipantsRequest {
            conversation_id: id.clone(),
            page_size: 501,
            ..Default::default()
        })
        .await
        .expect_err("size");
    assert_eq!(fields(status), vec!["page_size"]);
    let status = alice
        .update_participant_role(pb::UpdateParticipantRoleRequest {
            conversation_id: id.clone(),
            user_id: "bob".to_owned(),
            role: Role::Owner.into(),
        })
        .await
        .expect_err("owner");
    assert_eq!(fields(status), vec!["role"]);
    let status = alice
        .update_conversation(pb::UpdateConversationRequest {
            conversation: Some(pb::Conversation {
                conversation_id: id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["type".to_owned()],
            }),
            ..Default::default()
        })
        .await
        .expect_err("mask");
    assert_eq!(fields(status), vec!["update_mask"]);
    let status = alice
        .update_conversation(pb::UpdateConversationRequest {
            conversation: Some(pb::Conversation {
                conversation_id: id.clone(),
                title: String::new(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".to_owned()],
            }),
            ..Default::default()
        })
        .await
        .expect_err("empty title");
    assert_eq!(fields(status), vec!["conversation.title"]);
    let status = alice
        .check_permission(pb::CheckPermissionRequest {
            conversation_id: id.clone(),
            user_id: String::new(),
            action: 0,
            ..Default::default()
        })
        .await
        .expect_err("action");
    assert_eq!(fields(status), vec!["action"]);
    let status = alice
        .add_participants(pb::AddParticipantsRequest {
            conversation_id: id.clone(),
            participants: Vec::new(),
        })
        .await
        .expect_err("empty");
    assert_eq!(fields(status), vec!["participants"]);
    let status = alice
        .transfer_ownership(pb::TransferOwnershipRequest {
            conversation_id: id,
            new_owner_id: "a\u{7}b".to_owned(),
        })
        .await
        .expect_err("control");
    assert_eq!(fields(status), vec!["new_owner_id"]);
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

type Watch = tonic::codec::Streaming<pb::WatchEventsResponse>;

async fn watch(client: &mut ConversationClient, after: &str) -> Watch {
    client
        .watch_events(pb::WatchEventsRequest {
            after_position: after.to_owned(),
        })
        .await
        .expect("watch")
        .into_inner()
}

/// The next event, skipping heartbeats, within 15 s.
async fn next_watched(stream: &mut Watch) -> messaging_proto::message::v1::Event {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .expect("an item within the deadline")
            .expect("stream ok")
            .expect("stream open")
            .item;
        match item {
            Some(pb::watch_events_response::Item::Event(event)) => return event,
            Some(pb::watch_events_response::Item::Heartbeat(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// "<tenant> <kind> <subject>" of an event, for comparing sequences.
fn describe(event: &messaging_proto::message::v1::Event) -> String {
    use messaging_proto::message::v1::event::Payload;
    let what = match event.payload.as_ref().expect("payload") {
        Payload::ConversationCreated(changed) => format!("created {}", changed.title),
        Payload::ConversationUpdated(changed) => format!("updated {}", changed.title),
        Payload::ParticipantAdded(added) => format!("added {} {}", added.user_id, added.role),
        other => format!("{other:?}"),
    };
    format!("{} {what}", event.tenant_id)
}

async fn watch_events_serves_services_with_resume_and_tenant_scope(backend: Backend) {
    let harness = ConversationHarness::start(backend).await;
    let mut alice = harness.client(TENANT, "alice");
    // Users may not watch, whatever their role.
    let denied = alice
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect_err("a user");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut admin = harness.client_with_roles(TENANT, "root", &["admin"]);
    assert_eq!(
        code(admin.watch_events(pb::WatchEventsRequest::default()).await),
        Code::PermissionDenied
    );
    // Every tenant: a service token for every tenant with the tenant header "*".
    let every = issuer()
        .issue("*", "indexer", &["service"], Duration::from_secs(60))
        .expect("token");
    let mut every =
        harness.client_with_headers(Headers::bearer(&every).with("x-messaging-tenant-id", "*"));
    let mut all = watch(&mut every, "").await;
    // One tenant: a service token bound to it.
    let mut acme_service = harness.client_with_roles(TENANT, "indexer", &["service"]);
    let mut acme_only = watch(&mut acme_service, "").await;

    let acme_id = create(&mut alice, group("Ops", &[("bob", Role::Viewer)]))
        .await
        .conversation_id;
    create(&mut harness.client("globex", "gina"), group("Sales", &[])).await;
    alice
        .update_conversation(pb::UpdateConversationRequest {
            conversation: Some(pb::Conversation {
                conversation_id: acme_id.clone(),
                title: "Ops, renamed".to_owned(),
                ..Default::default()
            }),
            update_mask: None,
            etag: String::new(),
        })
        .await
        .expect("rename");

    let mut everything = Vec::new();
    let mut positions = Vec::new();
    for _ in 0..6 {
        let event = next_watched(&mut all).await;
        positions.push(event.position.parse::<i64>().expect("position"));
        everything.push(describe(&event));
    }
    assert_eq!(
        everything,
        vec![
            "acme created Ops",
            "acme added alice ROLE_OWNER",
            "acme added bob ROLE_VIEWER",
            "globex created Sales",
            "globex added gina ROLE_OWNER",
            "acme updated Ops, renamed",
        ]
    );
    assert!(positions.windows(2).all(|pair| pair[1] == pair[0] + 1));
    let mut acme = Vec::new();
    for _ in 0..4 {
        acme.push(describe(&next_watched(&mut acme_only).await));
    }
    assert_eq!(
        acme,
        vec![
            "acme created Ops",
            "acme added alice ROLE_OWNER",
            "acme added bob ROLE_VIEWER",
            "acme updated Ops, renamed",
        ],
        "another tenant's events never reach a tenant-bound watcher"
    );

    // Resuming from a position gives exactly what came after it, in order.
    let mut resumed = watch(&mut every, &positions[2].to_string()).await;
    for expected in &everything[3..] {
        assert_eq!(&describe(&next_watched(&mut resumed).await), expected);
    }

    // Bad positions name the field; a tenant-bound token cannot widen itself to every tenant;
    // a watcher for every tenant cannot call tenant RPCs.
    let status = every
        .watch_events(pb::WatchEventsRequest {
            after_position: "soon".to_owned(),
        })
        .await
        .expect_err("bad position");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), vec!["after_position"]);
    let bound = issuer()
        .issue(TENANT, "indexer", &["service"], Duration::from_secs(60))
        .expect("token");
    let mut widened =
        harness.client_with_headers(Headers::bearer(&bound).with("x-messaging-tenant-id", "*"));
    assert_eq!(
        code(
            widened
                .watch_events(pb::WatchEventsRequest::default())
                .await
        ),
        Code::PermissionDenied
    );
    let status = every
        .get_conversation(pb::GetConversationRequest {
            conversation_id: acme_id,
        })
        .await
        .expect_err("no tenant");
    assert_eq!(status.code(), Code::Unauthenticated);
}
