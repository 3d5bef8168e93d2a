//! ComplianceService over real gRPC, on SQLite with local files and on PostgreSQL with a real
//! S3-compatible server: erasure proven by looking at every byte at rest (SQLite files, a
//! `pg_dump` of both schemas, the object store, the stored events), erasure interrupted and
//! resumed after a restart, export contents and resumption, retention under live traffic,
//! administrators only, and tenants kept apart.

#[path = "messages/common.rs"]
mod common;

use std::time::Duration;

use common::{TENANT, code};
use futures::StreamExt;
use message_service::blobs::{Blobs, StoreSettings};
use messaging_e2e::{
    Backend, ConversationHarness, Headers, MessageClient, RunningServer, TestDatabase,
    backend_tests, eventually, issuer, message_client, message_settings, s3_or_skip,
    start_message_service, text_message,
};
use messaging_proto::message::v1 as pb;
use object_store::{ObjectStore, ObjectStoreExt};
use pb::compliance_service_client::ComplianceServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type ComplianceClient = ComplianceServiceClient<InterceptedService<Channel, Headers>>;

/// Both services with encryption at rest off (so that a canary left anywhere would show in
/// the bytes), the compliance job every 100 ms, and attachments on local files (SQLite) or
/// the test S3 server (PostgreSQL).
struct Deployment {
    conversations: ConversationHarness,
    database: TestDatabase,
    store: StoreSettings,
    messages: Option<RunningServer>,
    conversation: String,
}

impl Deployment {
    async fn start(
        backend: Backend,
        adjust: impl Fn(&mut message_service::config::Settings) + Clone,
    ) -> Option<Self> {
        Self::start_with(backend, |_| {}, adjust).await
    }

    async fn start_with(
        backend: Backend,
        adjust_conversations: impl FnOnce(&mut conversation_service::config::Settings),
        adjust: impl Fn(&mut message_service::config::Settings) + Clone,
    ) -> Option<Self> {
        let s3 = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(s3_or_skip().await?),
        };
        let conversations = ConversationHarness::start_with(backend, adjust_conversations).await;
        let database = TestDatabase::new(backend);
        let mut deployment = Self {
            store: s3.unwrap_or_else(|| StoreSettings {
                path: database.files.path().to_path_buf(),
                ..Default::default()
            }),
            conversations,
            database,
            messages: None,
            conversation: String::new(),
        };
        deployment.restart(adjust).await;
        let mut alice = deployment.conversations.client(TENANT, "alice");
        let members = [
            ("ada", messaging_proto::conversation::v1::Role::Admin),
            ("bob", messaging_proto::conversation::v1::Role::Member),
            ("mia", messaging_proto::conversation::v1::Role::Member),
        ];
        deployment.conversation = messaging_e2e::create_group(&mut alice, "Team", &members).await;
        Some(deployment)
    }

    /// Stops message-service (if running) and starts it again on the same database.
    async fn restart(&mut self, adjust: impl Fn(&mut message_service::config::Settings)) {
        if let Some(server) = self.messages.take() {
            server.stop().await.expect("clean shutdown");
        }
        let mut settings = message_settings(&self.database, &self.conversations.server.url());
        let service = &mut settings.message_service;
        service.encryption.enabled = Some(false);
        service.attachments.store = self.store.clone();
        service.attachments.sweep_interval = Duration::from_millis(200);
        service.compliance.interval = Duration::from_millis(100);
        adjust(&mut settings);
        self.messages = Some(start_message_service(settings).await);
    }

    fn server(&self) -> &RunningServer {
        self.messages.as_ref().expect("message-service runs")
    }

    async fn client(&self, tenant: &str, user: &str) -> MessageClient {
        message_client(self.server(), tenant, user).await
    }

    async fn compliance(&self, tenant: &str, user: &str, roles: &[&str]) -> ComplianceClient {
        let token = issuer()
            .issue(tenant, user, roles, Duration::from_secs(600))
            .expect("token");
        ComplianceServiceClient::with_interceptor(
            self.server().channel().await,
            Headers::bearer(&token),
        )
    }

    async fn admin(&self) -> ComplianceClient {
        self.compliance(TENANT, "root", &["admin"]).await
    }

    /// Every byte both services keep: their databases and the object store.
    async fn at_rest(&self) -> Vec<u8> {
        let mut bytes = self.database.at_rest();
        bytes.extend(self.conversations.database.at_rest());
        let blobs = Blobs::from_settings(&self.store).expect("object store");
        let objects = blobs.objects();
        let mut listing = objects.list(None);
        while let Some(object) = listing.next().await {
            let object = object.expect("listing");
            // The sweeper may remove an object between the listing and the read: gone is gone.
            match objects.get(&object.location).await {
                Ok(content) => bytes.extend(content.bytes().await.expect("object bytes")),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => panic!("object: {error:?}"),
            }
        }
        bytes
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `canary` is anywhere in `bytes`, as itself or hex-encoded (how `pg_dump` writes
/// bytea columns).
fn holds(bytes: &[u8], canary: &str) -> bool {
    contains(bytes, canary.as_bytes()) || contains(bytes, hex(canary.as_bytes()).as_bytes())
}

async fn upload(
    client: &mut MessageClient,
    conversation: &str,
    name: &str,
    bytes: &[u8],
) -> String {
    let metadata = messaging_e2e::attachment_metadata(conversation, name, "text/plain", bytes);
    messaging_e2e::upload_attachment(client, metadata, bytes)
        .await
        .expect("upload")
        .attachment_id
}

async fn send(client: &mut MessageClient, request: pb::SendMessageRequest) -> pb::Message {
    messaging_e2e::send(client, request).await
}

/// What bob stores in the team conversation, every piece carrying `canary`: messages, an
/// edit (the canary stays in the revision), metadata, a reaction to mia's message, a read
/// state, an attachment; mia mentions bob, and mia's own message must survive. Returns mia's
/// message id.
async fn bob_writes(deployment: &Deployment, canary: &str) -> String {
    let conversation = &deployment.conversation;
    let mut bob = deployment.client(TENANT, "bob").await;
    let mut mia = deployment.client(TENANT, "mia").await;
    let theirs = send(
        &mut mia,
        text_message(conversation, "mia keeps her marmalade recipe"),
    )
    .await;
    let first = send(
        &mut bob,
        text_message(conversation, &format!("first {canary}")),
    )
    .await;
    bob.update_message(pb::UpdateMessageRequest {
        conversation_id: conversation.clone(),
        message_id: first.message_id.clone(),
        content: Some(pb::update_message_request::Content::Text(
            "first, edited".to_owned(),
        )),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["content".to_owned()],
        }),
        ..Default::default()
    })
    .await
    .expect("edit");
    let mut with_metadata = text_message(conversation, "see metadata");
    with_metadata
        .metadata
        .insert("note".to_owned(), format!("metadata {canary}"));
    send(&mut bob, with_metadata).await;
    let file = format!("attachment {canary} content");
    let attachment = upload(
        &mut bob,
        conversation,
        &format!("{canary}.txt"),
        file.as_bytes(),
    )
    .await;
    let mut carrying = text_message(conversation, &format!("file {canary}"));
    carrying.attachment_ids = vec![attachment];
    send(&mut bob, carrying).await;
    let mut reply = text_message(conversation, &format!("reply {canary}"));
    reply.parent_id = theirs.message_id.clone();
    send(&mut bob, reply).await;
    bob.add_reaction(pb::AddReactionRequest {
        conversation_id: conversation.clone(),
        message_id: theirs.message_id.clone(),
        emoji: "👍".to_owned(),
    })
    .await
    .expect("react");
    let mut mention = text_message(conversation, "thanks @bob");
    mention.mention_ids = vec!["bob".to_owned()];
    send(&mut mia, mention).await;
    bob.mark_read(pb::MarkReadRequest {
        conversation_id: conversation.clone(),
        ..Default::default()
    })
    .await
    .expect("mark read");
    theirs.message_id
}

async fn erase(admin: &mut ComplianceClient, user: &str) -> pb::EraseUserDataResponse {
    admin
        .erase_user_data(pb::EraseUserDataRequest {
            user_id: user.to_owned(),
        })
        .await
        .expect("erase")
        .into_inner()
}

/// What must hold once bob is erased: the canary is nowhere at rest, bob's messages are
/// tombstones without a sender, his reaction and participation are gone, and mia's message is
/// untouched and still found by search.
async fn assert_erased(deployment: &Deployment, canary: &str, theirs: &str) {
    let at_rest = deployment.at_rest().await;
    assert!(
        !holds(&at_rest, canary),
        "the canary is still stored somewhere"
    );
    let mut mia = deployment.client(TENANT, "mia").await;
    let listed = mia
        .list_messages(pb::ListMessagesRequest {
            conversation_id: deployment.conversation.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .messages;
    let tombstones = listed.iter().filter(|m| m.delete_time.is_some()).count();
    assert_eq!(tombstones, 4, "bob's four messages remain as tombstones");
    for message in &listed {
        if message.delete_time.is_some() {
            assert_eq!(message.sender_id, "", "a tombstone keeps no sender");
            assert!(message.content.is_none() && message.metadata.is_empty());
        } else {
            assert_eq!(message.sender_id, "mia", "only mia's messages are left");
        }
    }
    let ours = listed
        .iter()
        .find(|message| message.message_id == theirs)
        .expect("mia's message");
    assert_eq!(common::body(ours), "mia keeps her marmalade recipe");
    assert!(ours.reactions.is_empty(), "bob's reaction is gone");
    let mentioning = listed
        .iter()
        .find(|message| common::body(message) == "thanks @bob")
        .expect("mia's mention");
    assert!(
        mentioning.mention_ids.is_empty(),
        "the mention of bob is gone"
    );
    let found = mia
        .search_messages(pb::SearchMessagesRequest {
            query: "marmalade".to_owned(),
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner();
    assert_eq!(found.hits.len(), 1, "mia's message is still searchable");
    let mut alice = deployment.conversations.client(TENANT, "alice");
    let participants = alice
        .list_participants(messaging_proto::conversation::v1::ListParticipantsRequest {
            conversation_id: deployment.conversation.clone(),
            ..Default::default()
        })
        .await
        .expect("participants")
        .into_inner()
        .participants;
    assert!(
        participants.iter().all(|p| p.user_id != "bob"),
        "bob no longer participates"
    );
}

async fn erasure_removes_a_users_content_from_everything_at_rest(backend: Backend) {
    let Some(deployment) = Deployment::start(backend, |_| {}).await else {
        return;
    };
    let canary = format!("zqcanary{}", uuid::Uuid::new_v4().simple());
    let theirs = bob_writes(&deployment, &canary).await;
    assert!(
        holds(&deployment.at_rest().await, &canary),
        "the check can fail: before erasure the canary is at rest"
    );
    let mut admin = deployment.admin().await;
    let erased = erase(&mut admin, "bob").await;
    let erasure = erased.erasure.expect("job");
    assert!(erasure.done && erasure.step == "done", "{erasure:?}");
    assert_eq!(erased.messages_erased, 4);
    assert_eq!(erased.reactions_erased, 1);
    assert_eq!(erasure.participations_erased, 1);
    assert!(erasure.events_erased >= 6, "bob's own events: {erasure:?}");
    assert_erased(&deployment, &canary, &theirs).await;

    // Idempotent: again, nothing is left to erase.
    let again = erase(&mut admin, "bob").await;
    assert_eq!((again.messages_erased, again.reactions_erased), (0, 0));

    // Audited, without content.
    let records = admin
        .list_audit_records(pb::ListAuditRecordsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .records;
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.erased",
            "user.erasure_requested",
            "user.erased",
            "user.erasure_requested"
        ]
    );
    assert!(
        records
            .iter()
            .all(|r| r.actor_id == "root" && r.subject_id == "bob")
    );
    assert_eq!(
        records[2].details.get("messages").map(String::as_str),
        Some("4")
    );
}

async fn erasure_of(admin: &mut ComplianceClient, user: &str) -> pb::UserErasure {
    admin
        .get_user_erasure(pb::GetUserErasureRequest {
            user_id: user.to_owned(),
        })
        .await
        .expect("progress")
        .into_inner()
        .erasure
        .expect("job")
}

async fn an_interrupted_erasure_resumes_after_a_restart(backend: Backend) {
    let halting = |settings: &mut message_service::config::Settings| {
        settings.message_service.compliance.batch_size = 1;
        settings.message_service.compliance.halt_after_batches = Some(4);
    };
    let Some(mut deployment) = Deployment::start(backend, halting).await else {
        return;
    };
    let canary = format!("zqcanary{}", uuid::Uuid::new_v4().simple());
    let theirs = bob_writes(&deployment, &canary).await;
    let mut admin = deployment.admin().await;
    let status = admin
        .erase_user_data(pb::EraseUserDataRequest {
            user_id: "bob".to_owned(),
        })
        .await
        .expect_err("the run halts mid-way");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let halted = erasure_of(&mut admin, "bob").await;
    assert!(!halted.done, "{halted:?}");
    assert_eq!(halted.step, "messages", "halted inside the messages step");

    deployment.restart(|_| {}).await;
    let mut admin = deployment.admin().await;
    eventually(
        Duration::from_secs(20),
        "the erasure resumes and finishes",
        || {
            let mut admin = admin.clone();
            async move {
                admin
                    .get_user_erasure(pb::GetUserErasureRequest {
                        user_id: "bob".to_owned(),
                    })
                    .await
                    .is_ok_and(|response| response.into_inner().erasure.is_some_and(|job| job.done))
            }
        },
    )
    .await;
    assert_erased(&deployment, &canary, &theirs).await;
    let job = erasure_of(&mut admin, "bob").await;
    assert_eq!(job.messages_erased, 4, "{job:?}");
}

async fn export(
    admin: &mut ComplianceClient,
    user: &str,
    cursor: &str,
) -> Vec<pb::ExportUserDataResponse> {
    let mut stream = admin
        .export_user_data(pb::ExportUserDataRequest {
            user_id: user.to_owned(),
            cursor: cursor.to_owned(),
        })
        .await
        .expect("export")
        .into_inner();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item.expect("item"));
    }
    items
}

async fn export_holds_every_item_of_the_user_and_nothing_else(backend: Backend) {
    let Some(deployment) = Deployment::start(backend, |_| {}).await else {
        return;
    };
    let canary = format!("zqcanary{}", uuid::Uuid::new_v4().simple());
    bob_writes(&deployment, &canary).await;
    // A bob of another tenant, who must not appear.
    let mut other_alice = deployment.conversations.client("globex", "alice");
    let other = messaging_e2e::create_group(
        &mut other_alice,
        "Elsewhere",
        &[("bob", messaging_proto::conversation::v1::Role::Member)],
    )
    .await;
    let mut other_bob = deployment.client("globex", "bob").await;
    send(&mut other_bob, text_message(&other, "globex secret")).await;

    let mut admin = deployment.admin().await;
    let items = export(&mut admin, "bob", "").await;
    use pb::export_user_data_response::Item;
    let kinds: Vec<&str> = items
        .iter()
        .map(|item| match item.item.as_ref().expect("item") {
            Item::Membership(_) => "membership",
            Item::Message(_) => "message",
            Item::Revision(_) => "revision",
            Item::Reaction(_) => "reaction",
            Item::ReadState(_) => "read_state",
            Item::Mention(_) => "mention",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "membership",
            "message",
            "message",
            "message",
            "message",
            "revision",
            "reaction",
            "read_state",
            "mention"
        ]
    );
    let texts: Vec<String> = items
        .iter()
        .filter_map(|item| match &item.item {
            Some(Item::Message(message)) => Some(common::body(message).to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        [
            "first, edited".to_owned(),
            "see metadata".to_owned(),
            format!("file {canary}"),
            format!("reply {canary}"),
        ],
        "decrypted, by id (send order)"
    );
    let Some(Item::Message(carrying)) = &items[3].item else {
        panic!("a message");
    };
    assert_eq!(carrying.attachments.len(), 1, "with attachment metadata");
    let Some(Item::Revision(revision)) = &items[5].item else {
        panic!("a revision");
    };
    assert_eq!(
        revision.content,
        Some(pb::message_revision::Content::Text(format!(
            "first {canary}"
        )))
    );
    let Some(Item::Membership(membership)) = &items[0].item else {
        panic!("a membership");
    };
    assert_eq!(
        (
            membership.conversation_id.as_str(),
            membership.role.as_str()
        ),
        (deployment.conversation.as_str(), "ROLE_MEMBER")
    );
    let everything = format!("{items:?}");
    assert!(!everything.contains("globex") && !everything.contains("marmalade"));

    // Resumed after the fourth item, the rest comes exactly once.
    let resumed = export(&mut admin, "bob", &items[3].cursor).await;
    assert_eq!(resumed, items[4..].to_vec());
    let status = admin
        .export_user_data(pb::ExportUserDataRequest {
            user_id: "bob".to_owned(),
            cursor: "not-a-cursor".to_owned(),
        })
        .await
        .expect_err("foreign cursor");
    assert_eq!(status.code(), Code::InvalidArgument);

    let records = admin
        .list_audit_records(pb::ListAuditRecordsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .records;
    assert_eq!(records.len(), 2, "both exports are audited: {records:?}");
    assert!(
        records
            .iter()
            .all(|r| r.action == "user.exported" && r.subject_id == "bob")
    );
}

/// Runs the real `messagingctl` with `args`, configured for this deployment (its secret and
/// message-service's database); returns standard output, after asserting success.
async fn messagingctl(deployment: &Deployment, args: &[&str]) -> String {
    let database = &deployment.database.settings;
    let mut command = tokio::process::Command::new(messaging_e2e::workspace_binary("messagingctl"));
    command
        .args(args)
        .env("MESSAGING__AUTH__HS256_SECRET", messaging_e2e::TEST_SECRET)
        .env(
            "MESSAGING__MESSAGE_SERVICE__DATABASE__URL",
            database.url.expose(),
        )
        .env("MESSAGING__MESSAGE_SERVICE__ENCRYPTION__ENABLED", "false");
    if let Some(schema) = &database.schema {
        command.env("MESSAGING__MESSAGE_SERVICE__DATABASE__SCHEMA", schema);
    }
    let output = command.output().await.expect("messagingctl runs");
    assert!(
        output.status.success(),
        "messagingctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// `messagingctl export` writes what ExportUserData streams, item for item in canonical JSON,
/// fetches the attachments' bytes beside it, and `--resume` completes a cut-off file to the
/// same bytes.
async fn messagingctl_exports_json_lines_with_the_attachments_bytes(backend: Backend) {
    let Some(deployment) = Deployment::start(backend, |_| {}).await else {
        return;
    };
    let canary = format!("zqcanary{}", uuid::Uuid::new_v4().simple());
    bob_writes(&deployment, &canary).await;
    let mut admin = deployment.admin().await;
    let items = export(&mut admin, "bob", "").await;

    let folder = tempfile::tempdir().expect("folder");
    let out = folder.path().join("bob.jsonl");
    let out_arg = out.to_str().expect("path");
    let url = deployment.server().url();
    let run = |resume: bool| {
        let mut args = vec![
            "export",
            "--tenant",
            TENANT,
            "--user",
            "bob",
            "--out",
            out_arg,
            "--endpoint",
            &url,
        ];
        if resume {
            args.push("--resume");
        }
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let deployment = &deployment;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            messagingctl(deployment, &args).await
        }
    };
    run(false).await;
    let written = std::fs::read_to_string(&out).expect("export file");
    let lines: Vec<serde_json::Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let expected: Vec<serde_json::Value> = items
        .iter()
        .map(|item| messaging_proto::json::to_value(item).expect("JSON"))
        .collect();
    assert_eq!(lines, expected, "the same items, in order");
    let first_message = &lines[1]["message"];
    assert_eq!(first_message["senderId"], "bob", "lowerCamelCase names");
    assert!(
        first_message["sequence"].is_string(),
        "64-bit integers as strings"
    );
    let attachment = lines
        .iter()
        .find_map(|line| line["message"]["attachments"][0].as_object())
        .expect("a message with its attachment");
    let id = attachment["attachmentId"].as_str().expect("id");
    let bytes = std::fs::read(folder.path().join("bob.jsonl.attachments").join(id))
        .expect("attachment bytes");
    assert_eq!(bytes, format!("attachment {canary} content").as_bytes());

    // Cut in the middle of the third line: --resume keeps two lines and completes the rest.
    let cut = written
        .lines()
        .take(2)
        .map(|line| line.len() + 1)
        .sum::<usize>()
        + 7;
    std::fs::write(&out, &written.as_bytes()[..cut]).expect("cut");
    run(true).await;
    assert_eq!(std::fs::read_to_string(&out).expect("file"), written);

    let records = admin
        .list_audit_records(pb::ListAuditRecordsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .records;
    assert!(
        records
            .iter()
            .filter(|record| record.action == "user.exported")
            .all(|record| record.subject_id == "bob"),
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.actor_id == "messagingctl")
            .count(),
        2,
        "both runs of the tool are audited under its name: {records:?}"
    );
}

/// `messagingctl retention status` counts what the next round would purge, per policy.
async fn messagingctl_shows_what_retention_has_due(backend: Backend) {
    // The job's first round runs at start-up, with no policy yet; the next is an hour away.
    let Some(deployment) = Deployment::start(backend, |settings| {
        settings.message_service.compliance.interval = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let mut alice = deployment.conversations.client(TENANT, "alice");
    let kept = messaging_e2e::create_group(&mut alice, "Archive", &[]).await;
    let mut alice_messages = deployment.client(TENANT, "alice").await;
    let mut old = Vec::new();
    for conversation in [&deployment.conversation, &deployment.conversation, &kept] {
        let sent = send(&mut alice_messages, text_message(conversation, "old news")).await;
        old.push(sent.message_id);
    }
    send(&mut alice_messages, text_message(&kept, "fresh")).await;
    back_date(&deployment.database, &old, 40).await;
    assert_eq!(
        messagingctl(&deployment, &["retention", "status"]).await,
        "no retention policy is set: every message is kept\n"
    );
    let mut admin = deployment.admin().await;
    for (conversation, days) in [(String::new(), 30), (kept.clone(), 7)] {
        admin
            .set_retention_policy(pb::SetRetentionPolicyRequest {
                conversation_id: conversation,
                policy: Some(pb::RetentionPolicy {
                    message_retention_days: days,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("policy");
    }
    let status = messagingctl(&deployment, &["retention", "status", "--tenant", TENANT]).await;
    assert_eq!(
        status,
        format!(
            "{TENANT} tenant policy: messages after 30 days, tombstones after never; due now: 2 messages, 0 tombstones\n\
             {TENANT} conversation {kept}: messages after 7 days, tombstones after never; due now: 1 messages, 0 tombstones\n"
        )
    );
    let elsewhere = messagingctl(&deployment, &["retention", "status", "--tenant", "globex"]).await;
    assert_eq!(
        elsewhere,
        "no retention policy is set: every message is kept\n"
    );
}

async fn retention_purges_exactly_the_expired_messages_under_live_traffic(backend: Backend) {
    let Some(deployment) = Deployment::start(backend, |_| {}).await else {
        return;
    };
    let conversation = deployment.conversation.clone();
    let mut alice = deployment.conversations.client(TENANT, "alice");
    let kept = messaging_e2e::create_group(&mut alice, "Archive", &[]).await;
    let mut mia = deployment.client(TENANT, "mia").await;
    let mut alice_messages = deployment.client(TENANT, "alice").await;
    let mut old = Vec::new();
    for index in 0..6 {
        old.push(
            send(
                &mut mia,
                text_message(&conversation, &format!("old {index}")),
            )
            .await,
        );
    }
    let archived = send(&mut alice_messages, text_message(&kept, "archived forever")).await;
    let recent = send(&mut mia, text_message(&conversation, "recent")).await;
    // Ninety-one days pass for the old ones and the archived one.
    let back_dated: Vec<String> = old
        .iter()
        .map(|message| message.message_id.clone())
        .chain([archived.message_id.clone()])
        .collect();
    back_date(&deployment.database, &back_dated, 91).await;

    // Live traffic throughout.
    let traffic = {
        let mut mia = deployment.client(TENANT, "mia").await;
        let conversation = conversation.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for index in 0..40 {
                sent.push(
                    send(
                        &mut mia,
                        text_message(&conversation, &format!("live {index}")),
                    )
                    .await,
                );
            }
            sent
        })
    };
    let mut admin = deployment.admin().await;
    admin
        .set_retention_policy(pb::SetRetentionPolicyRequest {
            conversation_id: kept.clone(),
            policy: Some(pb::RetentionPolicy::default()),
            ..Default::default()
        })
        .await
        .expect("keep the archive forever");
    let set = admin
        .set_retention_policy(pb::SetRetentionPolicyRequest {
            policy: Some(pb::RetentionPolicy {
                message_retention_days: 90,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("policy")
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(
        (set.message_retention_days, set.updater_id.as_str()),
        (90, "root")
    );
    let live = traffic.await.expect("traffic");
    eventually(
        Duration::from_secs(20),
        "the expired messages are purged",
        || {
            let mut mia = mia.clone();
            let conversation = conversation.clone();
            async move {
                let listed = common::list(
                    &mut mia,
                    pb::ListMessagesRequest {
                        conversation_id: conversation,
                        page_size: 100,
                        ..Default::default()
                    },
                )
                .await
                .messages;
                listed.iter().filter(|m| m.delete_time.is_some()).count() >= 6
            }
        },
    )
    .await;
    let listed = common::list(
        &mut mia,
        pb::ListMessagesRequest {
            conversation_id: conversation.clone(),
            page_size: 100,
            ..Default::default()
        },
    )
    .await
    .messages;
    let mut purged: Vec<&str> = listed
        .iter()
        .filter(|m| m.delete_time.is_some())
        .map(|m| m.message_id.as_str())
        .collect();
    purged.sort_unstable();
    let expected: Vec<&str> = old.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(purged, expected, "exactly the expired ones");
    let alive = listed.iter().filter(|m| m.delete_time.is_none()).count();
    assert_eq!(alive, 1 + live.len(), "the recent and the live ones stay");
    assert!(
        listed
            .iter()
            .any(|m| m.message_id == recent.message_id && m.delete_time.is_none())
    );
    let archive = common::list(
        &mut alice_messages,
        pb::ListMessagesRequest {
            conversation_id: kept.clone(),
            ..Default::default()
        },
    )
    .await
    .messages;
    assert!(archive[0].delete_time.is_none(), "the override keeps it");
    let got = admin
        .get_retention_policy(pb::GetRetentionPolicyRequest {
            conversation_id: kept,
        })
        .await
        .expect("get")
        .into_inner();
    assert!(got.is_override);
    assert_eq!(got.policy.expect("policy").message_retention_days, 0);
    let actions: Vec<String> = admin
        .list_audit_records(pb::ListAuditRecordsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .records
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["retention.changed", "retention.changed"]);
}

/// Moves the given messages' creation `days` into the past, as if that much time had passed.
async fn back_date(database: &TestDatabase, ids: &[String], days: i64) {
    use sea_orm::ConnectionTrait;
    let connection = message_service::store::connect(&database.settings)
        .await
        .expect("database");
    let at = chrono::Utc::now() - chrono::Duration::days(days);
    for id in ids {
        let id = uuid::Uuid::parse_str(id).expect("id");
        connection
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                connection.get_database_backend(),
                match connection.get_database_backend() {
                    sea_orm::DbBackend::Postgres => {
                        "UPDATE messages SET created_at = $1 WHERE id = $2"
                    }
                    _ => "UPDATE messages SET created_at = ? WHERE id = ?",
                },
                [at.into(), id.into()],
            ))
            .await
            .expect("back-date");
    }
    connection.close().await.expect("close");
}

async fn compliance_is_for_administrators_of_the_tenant_only(backend: Backend) {
    let Some(deployment) = Deployment::start(backend, |_| {}).await else {
        return;
    };
    let mut bob = deployment.client(TENANT, "bob").await;
    send(
        &mut bob,
        text_message(&deployment.conversation, "bob was here"),
    )
    .await;
    for roles in [&[][..], &["service"][..]] {
        let mut client = deployment.compliance(TENANT, "bob", roles).await;
        let user = || "bob".to_owned();
        let codes = [
            code(
                client
                    .erase_user_data(pb::EraseUserDataRequest { user_id: user() })
                    .await,
            ),
            code(
                client
                    .get_user_erasure(pb::GetUserErasureRequest { user_id: user() })
                    .await,
            ),
            match client
                .export_user_data(pb::ExportUserDataRequest {
                    user_id: user(),
                    cursor: String::new(),
                })
                .await
            {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            },
            code(
                client
                    .set_retention_policy(pb::SetRetentionPolicyRequest {
                        policy: Some(pb::RetentionPolicy::default()),
                        ..Default::default()
                    })
                    .await,
            ),
            code(
                client
                    .get_retention_policy(pb::GetRetentionPolicyRequest::default())
                    .await,
            ),
            code(
                client
                    .list_audit_records(pb::ListAuditRecordsRequest::default())
                    .await,
            ),
        ];
        assert_eq!(codes, [Code::PermissionDenied; 6], "roles {roles:?}");
    }

    // An administrator of another tenant: its bob is another user, with nothing stored.
    let mut stranger = deployment.compliance("globex", "root", &["admin"]).await;
    assert!(export(&mut stranger, "bob", "").await.is_empty());
    let status = stranger
        .get_user_erasure(pb::GetUserErasureRequest {
            user_id: "bob".to_owned(),
        })
        .await
        .expect_err("never erased there");
    assert_eq!(status.code(), Code::NotFound);
    for request in [
        pb::SetRetentionPolicyRequest {
            conversation_id: deployment.conversation.clone(),
            policy: Some(pb::RetentionPolicy::default()),
            ..Default::default()
        },
        pb::SetRetentionPolicyRequest {
            conversation_id: deployment.conversation.clone(),
            clear_override: true,
            ..Default::default()
        },
    ] {
        let status = stranger
            .set_retention_policy(request)
            .await
            .expect_err("another tenant's conversation");
        assert_eq!(status.code(), Code::NotFound);
    }
    let status = stranger
        .get_retention_policy(pb::GetRetentionPolicyRequest {
            conversation_id: deployment.conversation.clone(),
        })
        .await
        .expect_err("another tenant's conversation");
    assert_eq!(status.code(), Code::NotFound);
    let erased = erase(&mut stranger, "bob").await;
    assert_eq!(erased.messages_erased, 0);
    assert!(
        stranger
            .list_audit_records(pb::ListAuditRecordsRequest::default())
            .await
            .expect("audit")
            .into_inner()
            .records
            .iter()
            .all(|record| record.actor_id == "root"),
    );
    let mut admin = deployment.admin().await;
    assert!(
        admin
            .list_audit_records(pb::ListAuditRecordsRequest::default())
            .await
            .expect("audit")
            .into_inner()
            .records
            .is_empty(),
        "acme's log shows nothing of globex"
    );
    let listed = common::list(
        &mut bob,
        pb::ListMessagesRequest {
            conversation_id: deployment.conversation.clone(),
            ..Default::default()
        },
    )
    .await
    .messages;
    assert_eq!(
        common::body(&listed[0]),
        "bob was here",
        "acme's bob is untouched"
    );

    // Bad input.
    let status = admin
        .set_retention_policy(pb::SetRetentionPolicyRequest {
            policy: Some(pb::RetentionPolicy {
                message_retention_days: -1,
                tombstone_retention_days: 40_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("negative");
    assert_eq!(
        messaging_e2e::violated_fields(&status),
        [
            "policy.message_retention_days",
            "policy.tombstone_retention_days"
        ]
    );
    let status = admin
        .erase_user_data(pb::EraseUserDataRequest::default())
        .await
        .expect_err("no user");
    assert_eq!(messaging_e2e::violated_fields(&status), ["user_id"]);
}

/// A conversation deleted past its undelete window is purged by conversation-service, and its
/// `conversation.purged` event makes message-service delete everything it kept of it:
/// messages, revisions, reactions, read states, search entries, attachments (sent and unsent),
/// stored events. Another conversation of the same users is untouched.
async fn a_purged_conversation_leaves_nothing_in_either_service(backend: Backend) {
    let Some(deployment) = Deployment::start_with(
        backend,
        |settings| {
            let service = &mut settings.conversation_service;
            service.undelete_window = Duration::ZERO;
            service.purge_interval = Duration::from_secs(1);
        },
        |_| {},
    )
    .await
    else {
        return;
    };
    let canary = format!("zqcanary{}", uuid::Uuid::new_v4().simple());
    bob_writes(&deployment, &canary).await;
    let mut bob = deployment.client(TENANT, "bob").await;
    upload(
        &mut bob,
        &deployment.conversation,
        &format!("draft {canary}.txt"),
        format!("draft {canary}").as_bytes(),
    )
    .await;
    let mut alice = deployment.conversations.client(TENANT, "alice");
    let other = messaging_e2e::create_group(
        &mut alice,
        "Elsewhere",
        &[("bob", messaging_proto::conversation::v1::Role::Member)],
    )
    .await;
    send(&mut bob, text_message(&other, "quince jelly stays")).await;
    assert!(
        holds(&deployment.at_rest().await, &canary),
        "the check can fail: before the purge the canary is at rest"
    );

    alice
        .delete_conversation(
            messaging_proto::conversation::v1::DeleteConversationRequest {
                conversation_id: deployment.conversation.clone(),
            },
        )
        .await
        .expect("delete");
    eventually(
        Duration::from_secs(30),
        "the purge leaves no canary at rest",
        || async { !holds(&deployment.at_rest().await, &canary) },
    )
    .await;

    let status = bob
        .list_messages(pb::ListMessagesRequest {
            conversation_id: deployment.conversation.clone(),
            ..Default::default()
        })
        .await
        .expect_err("purged");
    assert_eq!(status.code(), Code::NotFound);
    let found = bob
        .search_messages(pb::SearchMessagesRequest {
            query: "quince".to_owned(),
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner();
    assert_eq!(found.hits.len(), 1, "the other conversation is untouched");
    let counts = bob
        .get_unread_counts(pb::GetUnreadCountsRequest::default())
        .await
        .expect("unread counts")
        .into_inner();
    assert!(
        counts
            .counts
            .iter()
            .all(|count| count.conversation_id != deployment.conversation),
        "no count of the purged conversation"
    );
}

backend_tests!(
    a_purged_conversation_leaves_nothing_in_either_service,
    messagingctl_exports_json_lines_with_the_attachments_bytes,
    messagingctl_shows_what_retention_has_due,
    erasure_removes_a_users_content_from_everything_at_rest,
    an_interrupted_erasure_resumes_after_a_restart,
    export_holds_every_item_of_the_user_and_nothing_else,
    retention_purges_exactly_the_expired_messages_under_live_traffic,
    compliance_is_for_administrators_of_the_tenant_only,
);
