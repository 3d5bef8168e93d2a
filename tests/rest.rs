//! The REST edge over real HTTP (a plain HTTP client, not the gRPC stubs), in front of both
//! services, on both backends: every route, compared with the gRPC answer for the same data
//! where there is one to compare; page tokens, update masks, custom verbs, conditional
//! requests; errors (400 with field violations, 401, 403, 404 across tenants, 405, 409, 412,
//! 413); streams as NDJSON and Server-Sent Events, with resume.

#[path = "messages/common.rs"]
mod common;

use std::time::Duration;

use common::TENANT;
use futures::StreamExt;
use http::{Method, StatusCode};
use messaging_e2e::{Backend, MessagingHarness, backend_tests, issuer};
use messaging_proto::conversation::v1 as conversation;
use messaging_proto::message::v1 as pb;
use serde_json::{Value, json};

/// Both services and the edge in front of them.
struct Rest {
    harness: MessagingHarness,
    base: String,
    http: reqwest::Client,
    _edge: tokio::sync::oneshot::Sender<()>,
}

/// An HTTP answer: status, headers and the JSON body (`Null` when empty).
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

fn token(tenant: &str, user: &str, roles: &[&str]) -> String {
    issuer()
        .issue(tenant, user, roles, Duration::from_secs(600))
        .expect("token")
}

impl Rest {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    async fn start_with(
        backend: Backend,
        adjust: impl FnOnce(&mut rest_edge::EdgeSettings),
    ) -> Self {
        let harness = MessagingHarness::start(backend).await;
        let mut settings = rest_edge::EdgeSettings {
            conversation_service_url: harness.conversations.server.url(),
            message_service_url: harness.messages.url(),
            ..Default::default()
        };
        adjust(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(rest_edge::run(settings, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            harness,
            base,
            http: reqwest::Client::new(),
            _edge: stop,
        }
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("HTTP request");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                panic!("not JSON ({error}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        let mut request = self.request(method, path, Some(token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// Like `call`, asserting 200 and returning the body.
    async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let answer = self.call(method.clone(), path, token, body).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{method} {path}: {}",
            answer.body
        );
        answer.body
    }

    /// The lines of a newline-delimited JSON answer, read until `count` arrived.
    async fn lines(&self, path: &str, token: &str, count: usize) -> Vec<Value> {
        let response = self
            .request(Method::GET, path, Some(token))
            .send()
            .await
            .expect("HTTP request");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/x-ndjson",
            "GET {path}"
        );
        read_lines(response, count).await
    }
}

/// Reads newline-delimited JSON until `count` lines or the end (within 20 s).
async fn read_lines(response: reqwest::Response, count: usize) -> Vec<Value> {
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut lines = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while lines.len() < count {
            let Some(chunk) = stream.next().await else {
                break;
            };
            buffer.extend_from_slice(&chunk.expect("chunk"));
            while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                lines.push(serde_json::from_slice(&line).expect("a JSON line"));
            }
        }
    })
    .await
    .expect("the lines within 20 s");
    lines
}

/// The canonical JSON of a gRPC answer, to compare with the REST one.
fn json_of<M: prost::Message + prost::Name>(message: &M) -> Value {
    messaging_proto::json::to_value(message).expect("JSON")
}

/// The field violations of an error body.
fn violations(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .flat_map(|detail| {
            detail["fieldViolations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|violation| violation["field"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn id_of(body: &Value) -> String {
    body["conversation"]["conversationId"]
        .as_str()
        .expect("conversationId")
        .to_owned()
}

async fn conversations_over_rest_match_grpc(backend: Backend) {
    let rest = Rest::start(backend).await;
    let alice = token(TENANT, "alice", &[]);
    let mut grpc = rest.harness.conversations.client(TENANT, "alice");

    // Create (body "*"), then get: the same as over gRPC.
    let launch = json!({
        "type": "CONVERSATION_TYPE_GROUP",
        "title": "Launch",
        "participants": [{"userId": "bob"}],
        "requestId": "launch-1",
    });
    let created = rest
        .ok(
            Method::POST,
            "/v1/conversations",
            &alice,
            Some(launch.clone()),
        )
        .await;
    assert_eq!(created["created"], true);
    let id = id_of(&created);
    let path = format!("/v1/conversations/{id}");
    let got = rest.call(Method::GET, &path, &alice, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["etag"], "\"1\"", "the etag as a header");
    let over_grpc = grpc
        .get_conversation(conversation::GetConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.body, json_of(&over_grpc));
    assert_eq!(created["conversation"], got.body["conversation"]);

    // A retry with the same request id returns it; another payload with it is 409.
    let retried = rest
        .ok(Method::POST, "/v1/conversations", &alice, Some(launch))
        .await;
    assert_eq!(id_of(&retried), id);
    let conflict = rest
        .call(
            Method::POST,
            "/v1/conversations",
            &alice,
            Some(json!({"type": "CONVERSATION_TYPE_GROUP", "title": "Other", "requestId": "launch-1"})),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.body);
    assert_eq!(conflict.body["code"], 6);

    // List with page tokens, page by page the same as over gRPC.
    for title in ["Second", "Third"] {
        rest.ok(
            Method::POST,
            "/v1/conversations",
            &alice,
            Some(json!({"type": "CONVERSATION_TYPE_GROUP", "title": title})),
        )
        .await;
    }
    let mut token_seen = String::new();
    let mut listed = Vec::new();
    loop {
        let page = rest
            .ok(
                Method::GET,
                &format!("/v1/conversations?pageSize=2&pageToken={token_seen}"),
                &alice,
                None,
            )
            .await;
        let over_grpc = grpc
            .list_conversations(conversation::ListConversationsRequest {
                page_size: 2,
                page_token: token_seen.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(page, json_of(&over_grpc));
        listed.extend(
            page["conversations"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        match page["nextPageToken"].as_str() {
            Some(next) if !next.is_empty() => token_seen = next.to_owned(),
            _ => break,
        }
    }
    assert_eq!(listed.len(), 3);
    let groups = rest
        .ok(
            Method::GET,
            "/v1/conversations?types=CONVERSATION_TYPE_CHANNEL&types=CONVERSATION_TYPE_DIRECT",
            &alice,
            None,
        )
        .await;
    assert_eq!(
        groups,
        json!({}),
        "a repeated enum filter from the query: none match"
    );

    // Update with update_mask (body "conversation", the id from the path), and with If-Match.
    let updated = rest
        .call(
            Method::PATCH,
            &format!("{path}?updateMask=title"),
            &alice,
            Some(json!({"title": "Launch day", "description": "ignored: not in the mask"})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["conversation"]["title"], "Launch day");
    assert!(updated.body["conversation"].get("description").is_none());
    assert_eq!(updated.headers["etag"], "\"2\"");
    let stale = rest
        .send(
            rest.request(
                Method::PATCH,
                &format!("{path}?updateMask=title"),
                Some(&alice),
            )
            .header("if-match", "\"1\"")
            .json(&json!({"title": "Stale"})),
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(stale.body["code"], 10, "ABORTED underneath");
    let fresh = rest
        .send(
            rest.request(
                Method::PATCH,
                &format!("{path}?updateMask=title"),
                Some(&alice),
            )
            .header("if-match", "\"2\"")
            .json(&json!({"title": "Fresh"})),
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);

    // Custom verbs.
    let archived = rest
        .ok(Method::POST, &format!("{path}:archive"), &alice, None)
        .await;
    assert!(archived["conversation"]["archiveTime"].is_string());
    let unarchived = rest
        .ok(
            Method::POST,
            &format!("{path}:unarchive"),
            &alice,
            Some(json!({})),
        )
        .await;
    assert!(unarchived["conversation"].get("archiveTime").is_none());

    // Participants.
    let added = rest
        .ok(
            Method::POST,
            &format!("{path}/participants:batchAdd"),
            &alice,
            Some(json!({"participants": [{"userId": "carol", "role": "ROLE_VIEWER"}]})),
        )
        .await;
    assert_eq!(added["participants"][0]["userId"], "carol");
    let promoted = rest
        .ok(
            Method::PATCH,
            &format!("{path}/participants/carol"),
            &alice,
            Some(json!({"role": "ROLE_MEMBER"})),
        )
        .await;
    assert_eq!(promoted["participant"]["role"], "ROLE_MEMBER");
    let participants = rest
        .ok(
            Method::GET,
            &format!("{path}/participants?pageSize=10"),
            &alice,
            None,
        )
        .await;
    let over_grpc = grpc
        .list_participants(conversation::ListParticipantsRequest {
            conversation_id: id.clone(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("participants")
        .into_inner();
    assert_eq!(participants, json_of(&over_grpc));
    let members = rest
        .ok(
            Method::GET,
            &format!("{path}/participants?roles=ROLE_MEMBER"),
            &alice,
            None,
        )
        .await;
    let names: Vec<&str> = members["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|participant| participant["userId"].as_str())
        .collect();
    assert_eq!(names, ["bob", "carol"]);
    let permission = rest
        .ok(
            Method::POST,
            &format!("{path}:checkPermission"),
            &alice,
            Some(json!({"userId": "alice", "action": "ACTION_POST"})),
        )
        .await;
    assert_eq!(permission["allowed"], true, "{permission}");
    rest.ok(
        Method::DELETE,
        &format!("{path}/participants/carol"),
        &alice,
        None,
    )
    .await;
    let bob = token(TENANT, "bob", &[]);
    let forbidden = rest
        .call(
            Method::PATCH,
            &format!("{path}?updateMask=title"),
            &bob,
            Some(json!({"title": "Bob's"})),
        )
        .await;
    assert_eq!(
        forbidden.status,
        StatusCode::FORBIDDEN,
        "{}",
        forbidden.body
    );
    let transferred = rest
        .ok(
            Method::POST,
            &format!("{path}:transferOwnership"),
            &alice,
            Some(json!({"newOwnerId": "bob"})),
        )
        .await;
    assert!(transferred.is_object());
    rest.ok(Method::POST, &format!("{path}:leave"), &alice, None)
        .await;

    // A channel to join.
    let channel = rest
        .ok(
            Method::POST,
            "/v1/conversations",
            &alice,
            Some(json!({"type": "CONVERSATION_TYPE_CHANNEL", "title": "News"})),
        )
        .await;
    let channel = format!("/v1/conversations/{}", id_of(&channel));
    let dave = token(TENANT, "dave", &[]);
    let joined = rest
        .ok(Method::POST, &format!("{channel}:join"), &dave, None)
        .await;
    assert_eq!(joined["participant"]["role"], "ROLE_MEMBER", "{joined}");

    // Delete and undelete.
    let deleted = rest.ok(Method::DELETE, &channel, &alice, None).await;
    assert!(
        deleted["conversation"]["deleteTime"].is_string(),
        "{deleted}"
    );
    rest.ok(Method::POST, &format!("{channel}:undelete"), &alice, None)
        .await;

    // Errors.
    let invalid = rest
        .call(
            Method::POST,
            "/v1/conversations",
            &alice,
            Some(json!({"type": "CONVERSATION_TYPE_GROUP"})),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(violations(&invalid.body), ["title"]);
    let unknown = rest
        .call(
            Method::POST,
            "/v1/conversations",
            &alice,
            Some(json!({"type": "CONVERSATION_TYPE_GROUP", "title": "x", "colour": "red"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{}",
        unknown.body
    );
    let unknown_query = rest
        .call(Method::GET, "/v1/conversations?colour=red", &alice, None)
        .await;
    assert_eq!(unknown_query.status, StatusCode::BAD_REQUEST);
    assert_eq!(violations(&unknown_query.body), ["colour"]);
    let anonymous = rest
        .send(rest.request(Method::GET, "/v1/conversations", None))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
    assert_eq!(anonymous.body["code"], 16);
    let stranger = token("globex", "alice", &[]);
    let elsewhere = rest.call(Method::GET, &path, &stranger, None).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND, "another tenant");
    let missing = rest
        .call(
            Method::GET,
            &format!("/v1/conversations/{}", uuid::Uuid::now_v7()),
            &alice,
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(elsewhere.body["code"], missing.body["code"]);
    let wrong_method = rest.call(Method::PUT, &path, &alice, None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers["allow"], "GET, PATCH, DELETE");
    let nowhere = rest.call(Method::GET, "/v2/nothing", &alice, None).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);

    // Administrators and services.
    let root = token(TENANT, "root", &["admin"]);
    let erased = rest
        .ok(
            Method::POST,
            "/v1/users/dave:eraseParticipations",
            &root,
            None,
        )
        .await;
    assert_eq!(erased["removed"], 1, "{erased}");
    let service = token(TENANT, "indexer", &["service"]);
    let head = rest
        .ok(Method::GET, "/v1/conversationEvents:head", &service, None)
        .await;
    let position: i64 = head["position"]
        .as_str()
        .expect("a position")
        .parse()
        .expect("a number");
    let watched = rest
        .lines(
            &format!(
                "/v1/conversationEvents:watch?afterPosition={}",
                position - 1
            ),
            &service,
            1,
        )
        .await;
    assert_eq!(
        watched[0]["result"]["event"]["position"],
        position.to_string(),
        "{watched:?}"
    );
}

async fn messages_over_rest_match_grpc(backend: Backend) {
    let rest = Rest::start(backend).await;
    let team = common::team(&rest.harness).await;
    let alice = token(TENANT, "alice", &[]);
    let bob = token(TENANT, "bob", &[]);
    let mut grpc = rest.harness.client(TENANT, "alice");
    let messages = format!("/v1/conversations/{team}/messages");

    // A subscriber from now, before anything is sent.
    let subscribed = rest
        .request(
            Method::GET,
            &format!("/v1/events:subscribe?conversationIds={team}"),
            Some(&bob),
        )
        .send()
        .await
        .expect("subscribe");
    assert_eq!(subscribed.status(), StatusCode::OK);

    let sent = rest
        .ok(
            Method::POST,
            &messages,
            &alice,
            Some(json!({
                "text": "Hello @bob 👋",
                "mentionIds": ["bob"],
                "metadata": {"kind": "greeting"},
                "requestId": "hello-1",
            })),
        )
        .await;
    let first = sent["message"]["messageId"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(sent["message"]["sequence"], "1", "int64 as a string");
    for text in ["second", "third"] {
        rest.ok(Method::POST, &messages, &bob, Some(json!({"text": text})))
            .await;
    }
    let message = format!("{messages}/{first}");
    let got = rest.ok(Method::GET, &message, &alice, None).await;
    let over_grpc = grpc
        .get_message(pb::GetMessageRequest {
            conversation_id: team.clone(),
            message_id: first.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, json_of(&over_grpc));

    // Pages, forwards from the oldest, the same as over gRPC.
    let mut page_token = String::new();
    let mut texts = Vec::new();
    loop {
        let page = rest
            .ok(
                Method::GET,
                &format!(
                    "{messages}?pageSize=2&direction=LIST_DIRECTION_FORWARD&pageToken={page_token}"
                ),
                &alice,
                None,
            )
            .await;
        let over_grpc = grpc
            .list_messages(pb::ListMessagesRequest {
                conversation_id: team.clone(),
                page_size: 2,
                direction: pb::ListDirection::Forward as i32,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(page, json_of(&over_grpc));
        for listed in page["messages"].as_array().into_iter().flatten() {
            texts.push(listed["text"].as_str().unwrap_or_default().to_owned());
        }
        match page["nextPageToken"].as_str() {
            Some(next) if !next.is_empty() => page_token = next.to_owned(),
            _ => break,
        }
    }
    assert_eq!(texts, ["Hello @bob 👋", "second", "third"]);
    let from_bob = rest
        .ok(
            Method::GET,
            &format!("{messages}?senderId=bob"),
            &alice,
            None,
        )
        .await;
    assert_eq!(from_bob["messages"].as_array().map(Vec::len), Some(2));

    // Edit (update_mask in the body: body "*"), revisions.
    let edited = rest
        .ok(
            Method::PATCH,
            &message,
            &alice,
            Some(json!({"text": "Hello again @bob", "updateMask": "content"})),
        )
        .await;
    assert_eq!(edited["message"]["text"], "Hello again @bob");
    let revisions = rest
        .ok(Method::GET, &format!("{message}/revisions"), &alice, None)
        .await;
    assert_eq!(revisions["revisions"][0]["text"], "Hello @bob 👋");

    // Reactions, the emoji in the path percent-encoded.
    let reacted = rest
        .ok(
            Method::POST,
            &format!("{message}/reactions"),
            &bob,
            Some(json!({"emoji": "👍"})),
        )
        .await;
    assert_eq!(reacted["reactions"][0]["emoji"], "👍");
    let reactions = rest
        .ok(Method::GET, &format!("{message}/reactions"), &alice, None)
        .await;
    let over_grpc = grpc
        .list_reactions(pb::ListReactionsRequest {
            conversation_id: team.clone(),
            message_id: first.clone(),
            ..Default::default()
        })
        .await
        .expect("reactions")
        .into_inner();
    assert_eq!(reactions, json_of(&over_grpc));
    rest.ok(
        Method::DELETE,
        &format!("{message}/reactions/%F0%9F%91%8D"),
        &bob,
        None,
    )
    .await;
    let reactions = rest
        .ok(Method::GET, &format!("{message}/reactions"), &alice, None)
        .await;
    assert_eq!(reactions, json!({}), "removed");

    // Read state and unread counts.
    let vic = token(TENANT, "vic", &[]);
    let counts = rest.ok(Method::GET, "/v1/unreadCounts", &vic, None).await;
    assert_eq!(counts["counts"][0]["unreadCount"], "3", "{counts}");
    rest.ok(
        Method::POST,
        &format!("/v1/conversations/{team}:markRead"),
        &vic,
        Some(json!({"upToSequence": "2"})),
    )
    .await;
    let counts = rest
        .ok(
            Method::GET,
            &format!("/v1/unreadCounts?conversationIds={team}"),
            &vic,
            None,
        )
        .await;
    let over_grpc = rest
        .harness
        .client(TENANT, "vic")
        .get_unread_counts(pb::GetUnreadCountsRequest {
            conversation_ids: vec![team.clone()],
        })
        .await
        .expect("counts")
        .into_inner();
    assert_eq!(counts, json_of(&over_grpc));
    let read = rest
        .ok(
            Method::GET,
            &format!("/v1/conversations/{team}/readState"),
            &alice,
            None,
        )
        .await;
    assert!(
        read["readStates"]
            .as_array()
            .expect("read states")
            .iter()
            .any(|state| state["userId"] == "vic" && state["lastReadSequence"] == "2"),
        "{read}"
    );

    // Search, typing.
    let found = rest
        .ok(Method::GET, "/v1/messages:search?query=AGAIN", &bob, None)
        .await;
    assert_eq!(found["hits"][0]["message"]["messageId"], first.as_str());
    rest.ok(
        Method::POST,
        &format!("/v1/conversations/{team}:typing"),
        &bob,
        None,
    )
    .await;

    // Attachments: metadata, then the bytes (base64 in the stream), whole and a range.
    // Uploads have no REST form (a client stream): over gRPC.
    let bytes = b"launch checklist";
    let metadata = messaging_e2e::attachment_metadata(&team, "notes.txt", "text/plain", bytes);
    let file = messaging_e2e::upload_attachment(&mut grpc, metadata, bytes)
        .await
        .expect("upload")
        .attachment_id;
    let mut carrying = messaging_e2e::text_message(&team, "the checklist");
    carrying.attachment_ids = vec![file.clone()];
    messaging_e2e::send(&mut grpc, carrying).await;
    let attachment = format!("/v1/conversations/{team}/attachments/{file}");
    let metadata = rest.ok(Method::GET, &attachment, &bob, None).await;
    let over_grpc = grpc
        .get_attachment(pb::GetAttachmentRequest {
            conversation_id: team.clone(),
            attachment_id: file.clone(),
        })
        .await
        .expect("attachment")
        .into_inner();
    assert_eq!(metadata, json_of(&over_grpc));
    let chunks = rest
        .lines(&format!("{attachment}:download"), &bob, usize::MAX)
        .await;
    let downloaded: Vec<u8> = chunks
        .iter()
        .flat_map(|line| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(line["result"]["chunk"].as_str().expect("a chunk"))
                .expect("base64")
        })
        .collect();
    assert_eq!(downloaded, b"launch checklist");
    let range = rest
        .lines(
            &format!("{attachment}:download?offset=7&length=5"),
            &bob,
            usize::MAX,
        )
        .await;
    assert_eq!(
        range,
        [json!({"result": {"chunk": "Y2hlY2s="}})],
        "\"check\""
    );

    // The stream saw every change, in order; resuming after the first gives the rest.
    let seen = read_lines(subscribed, 4).await;
    let created: Vec<&Value> = seen
        .iter()
        .map(|line| &line["result"]["event"])
        .filter(|event| event.get("messageCreated").is_some())
        .collect();
    assert!(created.len() >= 3, "{seen:?}");
    let after_first = created[0]["position"].as_str().expect("position");
    let resumed = rest
        .lines(
            &format!("/v1/events:subscribe?conversationIds={team}&resumePosition={after_first}"),
            &bob,
            1,
        )
        .await;
    assert_eq!(resumed[0]["result"]["event"], *created[1]);
    let events = rest
        .request(
            Method::GET,
            &format!("/v1/events:subscribe?conversationIds={team}&resumePosition={after_first}"),
            Some(&bob),
        )
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("subscribe");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut body = events.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !text.contains("\n\n") {
            let chunk = body.next().await.expect("an event").expect("bytes");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("an event within 20 s");
    let data = text
        .lines()
        .find_map(|line| line.strip_prefix("data:"))
        .expect("a data line");
    let event: Value = serde_json::from_str(data.trim()).expect("JSON");
    assert_eq!(event["event"], *created[1]);

    // Delete: a tombstone.
    let deleted = rest.ok(Method::DELETE, &message, &alice, None).await;
    assert!(deleted["message"]["deleteTime"].is_string(), "{deleted}");

    // Errors: roles, tenants, bodies.
    let refused = rest
        .call(
            Method::POST,
            &messages,
            &vic,
            Some(json!({"text": "viewer"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let stranger = token("globex", "alice", &[]);
    for path in [
        messages.clone(),
        format!("{messages}/{first}"),
        attachment.clone(),
        format!("/v1/conversations/{team}/readState"),
    ] {
        let elsewhere = rest.call(Method::GET, &path, &stranger, None).await;
        assert_eq!(
            elsewhere.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            elsewhere.body
        );
    }
    let nothing = rest
        .ok(
            Method::GET,
            "/v1/messages:search?query=again",
            &stranger,
            None,
        )
        .await;
    assert_eq!(nothing, json!({}), "search across tenants finds nothing");
    let empty = rest
        .call(Method::POST, &messages, &alice, Some(json!({})))
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(!violations(&empty.body).is_empty(), "{}", empty.body);
    let not_json = rest
        .send(
            rest.request(Method::POST, &messages, Some(&alice))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    let huge = rest
        .call(
            Method::POST,
            &messages,
            &alice,
            Some(json!({"text": "x".repeat(2 * 1024 * 1024)})),
        )
        .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge.body["code"], 8);
    let too_long = rest
        .call(
            Method::POST,
            &messages,
            &alice,
            Some(json!({"text": "x".repeat(20_000)})),
        )
        .await;
    assert_eq!(
        too_long.status,
        StatusCode::BAD_REQUEST,
        "the service's own limit"
    );
    assert_eq!(violations(&too_long.body), ["text"]);
}

async fn compliance_over_rest_matches_grpc(backend: Backend) {
    let rest = Rest::start(backend).await;
    let team = common::team(&rest.harness).await;
    let mut bob = rest.harness.client(TENANT, "bob");
    messaging_e2e::send(&mut bob, messaging_e2e::text_message(&team, "bob's words")).await;
    let root = token(TENANT, "root", &["admin"]);
    let mut admin = pb::compliance_service_client::ComplianceServiceClient::with_interceptor(
        rest.harness.messages.channel().await,
        messaging_e2e::Headers::bearer(&root),
    );

    let lines = rest.lines("/v1/users/bob:export", &root, usize::MAX).await;
    let mut over_grpc = Vec::new();
    let mut stream = admin
        .export_user_data(pb::ExportUserDataRequest {
            user_id: "bob".to_owned(),
            cursor: String::new(),
        })
        .await
        .expect("export")
        .into_inner();
    while let Some(item) = stream.message().await.expect("item") {
        over_grpc.push(json!({ "result": json_of(&item) }));
    }
    assert_eq!(lines, over_grpc);
    assert_eq!(lines.len(), 3, "membership, message and read state");
    let resumed = rest
        .lines(
            &format!(
                "/v1/users/bob:export?cursor={}",
                lines[0]["result"]["cursor"].as_str().expect("cursor")
            ),
            &root,
            usize::MAX,
        )
        .await;
    assert_eq!(resumed, lines[1..]);
    let member = token(TENANT, "bob", &[]);
    let denied = rest
        .call(Method::GET, "/v1/users/bob:export", &member, None)
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);

    let policy = rest
        .ok(
            Method::PUT,
            "/v1/retentionPolicy",
            &root,
            Some(json!({"messageRetentionDays": 30})),
        )
        .await;
    assert_eq!(policy["policy"]["messageRetentionDays"], 30);
    let read = rest
        .ok(Method::GET, "/v1/retentionPolicy", &root, None)
        .await;
    assert_eq!(read["policy"]["messageRetentionDays"], 30);
    let overridden = rest
        .ok(
            Method::PUT,
            &format!("/v1/retentionPolicy?conversationId={team}"),
            &root,
            Some(json!({"messageRetentionDays": 7})),
        )
        .await;
    assert_eq!(overridden["policy"]["messageRetentionDays"], 7);
    let negative = rest
        .call(
            Method::PUT,
            "/v1/retentionPolicy",
            &root,
            Some(json!({"messageRetentionDays": -1})),
        )
        .await;
    assert_eq!(negative.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        violations(&negative.body),
        ["policy.message_retention_days"]
    );

    let erased = rest
        .ok(Method::POST, "/v1/users/bob:erase", &root, None)
        .await;
    assert_eq!(erased["messagesErased"], "1", "{erased}");
    let job = rest
        .ok(Method::GET, "/v1/users/bob/erasure", &root, None)
        .await;
    assert_eq!(job["erasure"]["done"], true);
    let never = rest
        .call(Method::GET, "/v1/users/zed/erasure", &root, None)
        .await;
    assert_eq!(never.status, StatusCode::NOT_FOUND);

    let records = rest
        .ok(Method::GET, "/v1/auditRecords?pageSize=50", &root, None)
        .await;
    let over_grpc = admin
        .list_audit_records(pb::ListAuditRecordsRequest {
            page_size: 50,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner();
    assert_eq!(records, json_of(&over_grpc));
    let elsewhere = token("globex", "root", &["admin"]);
    let theirs = rest
        .ok(Method::GET, "/v1/auditRecords", &elsewhere, None)
        .await;
    assert_eq!(theirs, json!({}), "another tenant's log is empty");
}

/// Browsers: the allowed origin gets CORS headers (preflight included), another does not.
async fn cors_follows_the_configured_origins(backend: Backend) {
    let rest = Rest::start_with(backend, |settings| {
        settings.cors_allowed_origins = vec!["https://app.example.com".to_owned()];
    })
    .await;
    let preflight = rest
        .http
        .request(Method::OPTIONS, format!("{}/v1/conversations", rest.base))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = rest
        .send(
            rest.request(
                Method::GET,
                "/v1/conversations",
                Some(&token(TENANT, "alice", &[])),
            )
            .header("origin", "https://evil.example.com"),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(other.headers.get("access-control-allow-origin").is_none());
    let document = rest
        .send(rest.request(Method::GET, "/openapi.json", None))
        .await;
    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(document.body["openapi"], "3.0.3");
    assert!(
        document.body["paths"]["/v1/conversations/{conversation_id}:archive"]["post"].is_object()
    );
}

backend_tests!(
    conversations_over_rest_match_grpc,
    messages_over_rest_match_grpc,
    compliance_over_rest_matches_grpc,
    cors_follows_the_configured_origins,
);
