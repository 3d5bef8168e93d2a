//! What the ConversationService test files share: the tenant, a group request, creating, the
//! team of four roles, and status codes of results.

#![allow(dead_code)]

use messaging_e2e::{ConversationClient, ConversationHarness};
use messaging_proto::conversation::v1::{self as pb, ConversationType, Role};
use tonic::Code;

pub const TENANT: &str = "acme";

pub fn group(title: &str, members: &[(&str, Role)]) -> pb::CreateConversationRequest {
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

pub async fn create(
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
pub async fn team(harness: &ConversationHarness) -> String {
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

pub fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}
