//! ConversationService over real gRPC, on SQLite and on PostgreSQL: its edges. Tenant
//! isolation on every RPC, authentication, bad input naming the fields, and WatchEvents for
//! services (resume and tenant scope).

use std::time::Duration;

use messaging_e2e::{
    Backend, ConversationClient, ConversationHarness, Headers, backend_tests, issuer,
    violated_fields,
};
use messaging_proto::conversation::v1::{self as pb, Action, ConversationType, Role};
use tonic::Code;

#[path = "conversations/common.rs"]
mod common;
use common::*;

backend_tests!(
    other_tenants_get_not_found_everywhere,
    authentication_is_required_and_checked,
    bad_input_names_the_fields,
    watch_events_serves_services_with_resume_and_tenant_scope,
);

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
