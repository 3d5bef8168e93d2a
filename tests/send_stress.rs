//! Concurrent senders, not timed: 64 senders at once into 1 and into 64 conversations, with
//! retries of the same request id (sent twice at the same moment, and again afterwards) and
//! invalid messages mixed in, on both backends. Whatever the write path does to go fast, these
//! must hold: each conversation's sequences are dense (1..n), each request id is exactly one
//! message (every retry answers that message), every message is exactly one `message.created`
//! event, and each invalid message is refused with its own INVALID_ARGUMENT while the others
//! commit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use messaging_e2e::{Backend, MessagingHarness, backend_tests, create_group, text_message};
use messaging_proto::conversation::v1::Role;
use messaging_proto::message::v1 as pb;
use tonic::Code;

const TENANT: &str = "acme";
const SENDERS: usize = 64;
/// Requests per sender.
const REQUESTS: usize = 6;

backend_tests!(
    sixty_four_senders_into_one_conversation,
    sixty_four_senders_into_sixty_four_conversations,
);

async fn sixty_four_senders_into_one_conversation(backend: Backend) {
    stress(backend, 1).await;
}

async fn sixty_four_senders_into_sixty_four_conversations(backend: Backend) {
    stress(backend, 64).await;
}

fn sender(index: usize) -> String {
    format!("sender-{index:02}")
}

/// What one request was: valid (sent once, or twice at once, or again later), invalid (refused
/// before the store, or by it: a reply to no message), or its request id reused at once for a
/// different message (one of the two is stored, the other refused).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Once,
    TwiceAtOnce,
    RetriedLater,
    Invalid,
    UnknownParent,
    ReusedAtOnce,
}

fn kind(sender: usize, request: usize) -> Kind {
    match ((sender + request) % 6, sender % 4) {
        (0, _) => Kind::TwiceAtOnce,
        (1, _) => Kind::RetriedLater,
        (2, 0) => Kind::Invalid,
        (2, 1) => Kind::UnknownParent,
        (3, 2) => Kind::ReusedAtOnce,
        _ => Kind::Once,
    }
}

async fn stress(backend: Backend, conversations: usize) {
    let harness = MessagingHarness::start(backend).await;
    let members: Vec<String> = (0..SENDERS).map(sender).collect();
    let roles: Vec<(&str, Role)> = members
        .iter()
        .map(|member| (member.as_str(), Role::Member))
        .chain([("watcher", Role::Viewer)])
        .collect();
    let mut owner = harness.conversations.client(TENANT, "owner");
    let mut ids = Vec::new();
    for index in 0..conversations {
        ids.push(create_group(&mut owner, &format!("Stress {index}"), &roles).await);
    }
    // Every message.created event, from a stream opened before anything is sent, once
    // message-service has taken in every participant (the creations make thousands of events;
    // until they are copied, calls answer UNAVAILABLE).
    let mut watcher = harness.client(TENANT, "watcher");
    let request = pb::GetUnreadCountsRequest {
        conversation_ids: ids.clone(),
    };
    let wanted_counts = ids.len();
    messaging_e2e::eventually(
        Duration::from_secs(60),
        "message-service knows the watcher in every conversation",
        || {
            let mut watcher = watcher.clone();
            let request = request.clone();
            async move {
                watcher
                    .get_unread_counts(request)
                    .await
                    .is_ok_and(|counts| counts.into_inner().counts.len() == wanted_counts)
            }
        },
    )
    .await;
    let mut events = messaging_e2e::subscribe(&mut watcher, "").await;

    let mut tasks = Vec::new();
    for index in 0..SENDERS {
        let mut client = harness.client(TENANT, &sender(index));
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for request in 0..REQUESTS {
                let conversation = ids[(index + request) % ids.len()].clone();
                let request_id = format!("{}-{request}", sender(index));
                let kind = kind(index, request);
                let mut message = text_message(&conversation, &format!("{request_id} says hi"));
                message.request_id = request_id.clone();
                if kind == Kind::Invalid {
                    message.content = Some(pb::send_message_request::Content::Text(String::new()));
                }
                if kind == Kind::UnknownParent {
                    message.parent_id = uuid::Uuid::new_v4().to_string();
                }
                let answers = if matches!(kind, Kind::TwiceAtOnce | Kind::ReusedAtOnce) {
                    let mut again = client.clone();
                    let mut other = message.clone();
                    if kind == Kind::ReusedAtOnce {
                        other.content = Some(pb::send_message_request::Content::Text(format!(
                            "{request_id} says something else"
                        )));
                    }
                    let (first, second) = tokio::join!(
                        client.send_message(message.clone()),
                        again.send_message(other)
                    );
                    vec![first, second]
                } else {
                    vec![client.send_message(message.clone()).await]
                };
                outcomes.push((conversation, request_id, kind, message, answers));
            }
            // Retries after the fact answer the stored message.
            for (_, _, kind, message, answers) in &mut outcomes {
                if *kind == Kind::RetriedLater {
                    answers.push(client.send_message(message.clone()).await);
                }
            }
            outcomes
        }));
    }

    // conversation -> request id -> message id
    let mut expected: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for task in tasks {
        for (conversation, request_id, kind, _, answers) in task.await.expect("sender") {
            if matches!(kind, Kind::Invalid | Kind::UnknownParent) {
                for answer in answers {
                    let status = answer.expect_err("an invalid message is refused");
                    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                }
                continue;
            }
            let answers: Vec<_> = if kind == Kind::ReusedAtOnce {
                let (stored, refused): (Vec<_>, Vec<_>) =
                    answers.into_iter().partition(Result::is_ok);
                assert_eq!(
                    (stored.len(), refused.len()),
                    (1, 1),
                    "{request_id}: one of two messages under one request id is stored"
                );
                for answer in refused {
                    let status = answer.expect_err("refused");
                    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                }
                stored
            } else {
                answers
            };
            let ids: BTreeSet<String> = answers
                .into_iter()
                .map(|answer| {
                    answer
                        .expect("a valid message is committed")
                        .into_inner()
                        .message
                        .expect("message")
                        .message_id
                })
                .collect();
            assert_eq!(
                ids.len(),
                1,
                "{request_id}: every answer is the one message"
            );
            expected
                .entry(conversation)
                .or_default()
                .insert(request_id, ids.into_iter().next().unwrap_or_default());
        }
    }
    let total: usize = expected.values().map(BTreeMap::len).sum();
    assert!(
        total > SENDERS * REQUESTS * 3 / 4,
        "most requests are valid: {total}"
    );

    // Stored: dense sequences, one message per request id, the ids the senders were given.
    let mut reader = harness.client(TENANT, "watcher");
    for (conversation, requests) in &expected {
        let mut stored = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = reader
                .list_messages(pb::ListMessagesRequest {
                    conversation_id: conversation.clone(),
                    page_size: 100,
                    direction: pb::ListDirection::Forward.into(),
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner();
            stored.extend(page.messages);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let sequences: Vec<i64> = stored.iter().map(|message| message.sequence).collect();
        let dense: Vec<i64> = (1..=i64::try_from(requests.len()).unwrap_or_default()).collect();
        assert_eq!(sequences, dense, "dense sequences in {conversation}");
        let by_request: BTreeMap<String, String> = stored
            .iter()
            .map(|message| (message.request_id.clone(), message.message_id.clone()))
            .collect();
        assert_eq!(&by_request, requests, "one message per request id");
    }

    // Events: exactly one message.created per message.
    let wanted: BTreeSet<String> = expected
        .values()
        .flat_map(|requests| requests.values().cloned())
        .collect();
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while created.len() < wanted.len() {
            let response = events
                .message()
                .await
                .expect("the stream stays up")
                .expect("the stream does not end");
            match response.item {
                Some(pb::subscribe_response::Item::Event(event)) => {
                    if let Some(pb::event::Payload::MessageCreated(payload)) = event.payload {
                        let id = payload.message.unwrap_or_default().message_id;
                        *created.entry(id).or_default() += 1;
                    }
                }
                Some(pb::subscribe_response::Item::ResyncRequired(resync)) => {
                    panic!("the stream lost events: {resync:?}")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("every event within 60 s");
    let seen: BTreeSet<String> = created.keys().cloned().collect();
    assert_eq!(
        seen, wanted,
        "an event for every message, none for anything else"
    );
    assert!(
        created.values().all(|count| *count == 1),
        "one event per message"
    );
}
