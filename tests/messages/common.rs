//! What the MessageService test files share: the tenant, the team of five roles, and small
//! readers of responses.

#![allow(dead_code)]

use messaging_e2e::{MessageClient, MessagingHarness, create_group};
use messaging_proto::conversation::v1::Role;
use messaging_proto::message::v1 as pb;
use tonic::Code;

pub const TENANT: &str = "acme";

/// A group owned by alice with admin ada, members bob and mia, viewer vic.
pub async fn team(harness: &MessagingHarness) -> String {
    let mut alice = harness.conversations.client(TENANT, "alice");
    let members = [
        ("ada", Role::Admin),
        ("bob", Role::Member),
        ("mia", Role::Member),
        ("vic", Role::Viewer),
    ];
    create_group(&mut alice, "Team", &members).await
}

pub fn body(message: &pb::Message) -> &str {
    match &message.content {
        Some(pb::message::Content::Text(text)) => text,
        _ => "",
    }
}

pub fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.map_or_else(|status| status.code(), |_| Code::Ok)
}

pub async fn list(
    client: &mut MessageClient,
    request: pb::ListMessagesRequest,
) -> pb::ListMessagesResponse {
    client
        .list_messages(request)
        .await
        .expect("list")
        .into_inner()
}

pub fn sequences(messages: &[pb::Message]) -> Vec<i64> {
    messages.iter().map(|message| message.sequence).collect()
}
