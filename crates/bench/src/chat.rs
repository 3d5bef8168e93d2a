//! The other writes that are hot under chat load: reactions and read receipts, from 64 users of
//! one conversation, each on a connection of its own. Every call changes something (and so
//! records an event): reactions alternate between adding and removing, and each MarkRead moves
//! its user's watermark one message further.

use std::time::Duration;

use futures::StreamExt as _;
use messaging_proto::message::v1 as pb;
use tonic::transport::Channel;

use crate::report::Report;
use crate::setup::Deployment;

/// Messages the conversation is seeded with: enough for every MarkRead of a full-profile phase
/// to move a watermark.
const MESSAGES: usize = 2_000;

/// Runs the `react` and `markread` scenarios that `wants`, adding their lines to `report`.
pub async fn chat(
    deployment: &Deployment,
    report: &mut Report,
    channels: &[Channel],
    phase: Duration,
    wants: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let users: Vec<String> = (0..channels.len())
        .map(|index| format!("chatter-{index}"))
        .collect();
    let members: Vec<&str> = users.iter().map(String::as_str).collect();
    let conversation = deployment
        .create_groups("chat-owner", &members, 1)
        .await?
        .remove(0);
    deployment
        .warm_up("chat-owner", std::slice::from_ref(&conversation))
        .await?;
    let owner = deployment.message_client_on(channels[0].clone(), "chat-owner");
    let sends = (0..MESSAGES).map(|index| {
        let mut owner = owner.clone();
        let conversation_id = conversation.clone();
        async move {
            owner
                .send_message(pb::SendMessageRequest {
                    conversation_id,
                    content: Some(pb::send_message_request::Content::Text(format!(
                        "chat message {index}"
                    ))),
                    ..Default::default()
                })
                .await
                .map(|response| response.into_inner().message.unwrap_or_default().message_id)
        }
    });
    let messages: Vec<String> = futures::stream::iter(sends)
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    deployment.analyze().await?;
    let clients: Vec<_> = channels
        .iter()
        .zip(&users)
        .map(|(channel, user)| deployment.message_client_on(channel.clone(), user))
        .collect();
    let count = clients.len() as u64;

    if wants("react") {
        let (clients, conversation) = (clients.clone(), conversation.clone());
        // The first 64 messages, each user reacting to each: a round of count² calls adds
        // every reaction, the next removes them.
        let targets: Vec<String> = messages.iter().take(clients.len()).cloned().collect();
        report.push(
            crate::load(
                "react (add/remove, 1 conversation)",
                clients.len(),
                phase,
                move |index| {
                    let mut client = clients[crate::pick(index, clients.len())].clone();
                    let message_id =
                        targets[usize::try_from((index / count) % count).unwrap_or(0)].clone();
                    let conversation_id = conversation.clone();
                    async move {
                        if (index / (count * count)).is_multiple_of(2) {
                            client
                                .add_reaction(pb::AddReactionRequest {
                                    conversation_id,
                                    message_id,
                                    emoji: "👍".to_owned(),
                                })
                                .await
                                .is_ok()
                        } else {
                            client
                                .remove_reaction(pb::RemoveReactionRequest {
                                    conversation_id,
                                    message_id,
                                    emoji: "👍".to_owned(),
                                })
                                .await
                                .is_ok()
                        }
                    }
                },
            )
            .await,
        );
    }

    if wants("markread") {
        let (clients, conversation) = (clients.clone(), conversation.clone());
        report.push(
            crate::load(
                "mark read (1 conversation)",
                clients.len(),
                phase,
                move |index| {
                    let mut client = clients[crate::pick(index, clients.len())].clone();
                    let conversation_id = conversation.clone();
                    async move {
                        client
                            .mark_read(pb::MarkReadRequest {
                                conversation_id,
                                up_to_sequence: i64::try_from(index / count + 1)
                                    .unwrap_or(i64::MAX),
                            })
                            .await
                            .is_ok()
                    }
                },
            )
            .await,
        );
    }
    Ok(())
}
