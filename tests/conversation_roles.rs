//! ConversationService over real gRPC, on SQLite and on PostgreSQL: who may do what. The role
//! matrix as a table, CheckPermission against it, channels and joining, ownership transfer and
//! leaving.

use std::time::Duration;

use messaging_e2e::{
    Backend, ConversationClient, ConversationHarness, Headers, backend_tests, issuer,
};
use messaging_proto::conversation::v1::{self as pb, Action, ConversationType, DenialReason, Role};
use tonic::Code;

#[path = "conversations/common.rs"]
mod common;
use common::*;

backend_tests!(
    role_matrix_over_grpc,
    check_permission_matches_the_matrix,
    channels_can_be_discovered_and_joined,
    ownership_transfer_and_leaving,
);

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
