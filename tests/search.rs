//! SearchMessages and encryption at rest over real gRPC, on SQLite and on PostgreSQL: content
//! never reaches the database in plaintext (files and `pg_dump` checked for canary words), yet
//! search finds it by words, stems, case and accents; filters, ranking, pagination, edits,
//! deletes, membership, tenants, tampered ciphertext, key rotation and start-up key checks.

use std::collections::HashSet;
use std::time::Duration;

use messaging_e2e::{
    Backend, ConversationHarness, MessageClient, MessagingHarness, TEST_MASTER_KEY, backend_tests,
    create_group, eventually, message_settings, remove_participant, send, start_message_service,
    text_message as text, violated_fields, workspace_binary,
};
use messaging_platform::config::{Mode, Secret};
use messaging_proto::conversation::v1::{self as conversation, Role};
use messaging_proto::message::v1 as pb;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;

use message_service::store::entity::{message as message_row, revision as revision_row};

backend_tests!(
    canary_words_are_nowhere_at_rest_yet_found,
    words_stems_case_accents_and_ranking,
    every_filter_and_pagination,
    edits_deletes_and_membership_change_what_is_found,
    end_to_end_payloads_are_found_by_client_tokens,
    other_tenants_find_nothing,
    bad_search_input_names_the_fields,
    tampered_ciphertext_is_data_loss_never_text,
    key_rotation_keeps_old_and_new_readable_then_reencrypts,
    start_up_refuses_wrong_missing_or_switched_off_keys,
    messagingctl_rotates_under_live_traffic,
    switching_encryption_on_seals_rows_written_in_plaintext,
    conversation_lists_follow_membership_events,
    the_cost_of_a_search_is_bounded_by_its_input,
);

const TENANT: &str = "acme";

async fn edit(client: &mut MessageClient, message: &pb::Message, body: &str) -> pb::Message {
    client
        .update_message(pb::UpdateMessageRequest {
            conversation_id: message.conversation_id.clone(),
            message_id: message.message_id.clone(),
            content: Some(pb::update_message_request::Content::Text(body.to_owned())),
            ..Default::default()
        })
        .await
        .expect("edit")
        .into_inner()
        .message
        .expect("message")
}

async fn get(client: &mut MessageClient, message: &pb::Message) -> pb::Message {
    client
        .get_message(pb::GetMessageRequest {
            conversation_id: message.conversation_id.clone(),
            message_id: message.message_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .message
        .expect("message")
}

/// The text of a message's first revision.
async fn first_revision(client: &mut MessageClient, message: &pb::Message) -> String {
    let revisions = client
        .list_message_revisions(pb::ListMessageRevisionsRequest {
            conversation_id: message.conversation_id.clone(),
            message_id: message.message_id.clone(),
            ..Default::default()
        })
        .await
        .expect("revisions")
        .into_inner()
        .revisions;
    match &revisions.first().expect("a revision").content {
        Some(pb::message_revision::Content::Text(text)) => text.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn query(words: &str) -> pb::SearchMessagesRequest {
    pb::SearchMessagesRequest {
        query: words.to_owned(),
        ..Default::default()
    }
}

async fn search(
    client: &mut MessageClient,
    request: pb::SearchMessagesRequest,
) -> Vec<pb::SearchHit> {
    client
        .search_messages(request)
        .await
        .expect("search")
        .into_inner()
        .hits
}

async fn found(client: &mut MessageClient, request: pb::SearchMessagesRequest) -> Vec<String> {
    search(client, request)
        .await
        .into_iter()
        .map(|hit| hit.message.expect("message").message_id)
        .collect()
}

fn body(message: &pb::Message) -> &str {
    match &message.content {
        Some(pb::message::Content::Text(text)) => text,
        _ => "",
    }
}

/// A group of alice (owner) and bob (member).
async fn pair(harness: &MessagingHarness, title: &str) -> String {
    let mut alice = harness.conversations.client(TENANT, "alice");
    create_group(&mut alice, title, &[("bob", Role::Member)]).await
}

fn one(id: &str) -> Vec<String> {
    vec![id.to_owned()]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn canary_words_are_nowhere_at_rest_yet_found(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    // Titles reach message-service through conversation-service's events: sealed there too.
    let id = pair(&harness, "Okapiglacier plans").await;
    let mut conversations = harness.conversations.client(TENANT, "alice");
    conversations
        .archive_conversation(conversation::ArchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("archive");
    conversations
        .unarchive_conversation(conversation::UnarchiveConversationRequest {
            conversation_id: id.clone(),
        })
        .await
        .expect("unarchive");
    let mut alice = harness.client(TENANT, "alice");
    let mut request = text(
        &id,
        "The first draft mentions Xylophonequartz twice: xylophonequartz!",
    );
    request
        .metadata
        .insert("note".to_owned(), "Quokkazebra lives here".to_owned());
    let message = send(&mut alice, request).await;
    let edited = edit(&mut alice, &message, "Now it is about Pangolinfjord").await;
    assert_eq!(body(&edited), "Now it is about Pangolinfjord");
    assert_eq!(edited.metadata["note"], "Quokkazebra lives here");

    let hits = search(&mut alice, query("pangolinfjord")).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].message.as_ref().expect("m").message_id,
        message.message_id
    );
    assert_eq!(hits[0].snippet, "Now it is about \u{2}Pangolinfjord\u{3}");
    // The old words stopped matching; the revision still reads back.
    assert!(found(&mut alice, query("Xylophonequartz")).await.is_empty());
    assert_eq!(
        first_revision(&mut alice, &message).await,
        "The first draft mentions Xylophonequartz twice: xylophonequartz!"
    );
    let got = get(&mut alice, &message).await;
    assert_eq!(got.metadata["note"], "Quokkazebra lives here");

    let stored = harness.message_database.at_rest();
    assert!(
        stored.len() > 1_000,
        "read the database: {} bytes",
        stored.len()
    );
    for canary in [
        "Okapiglacier",
        "Xylophonequartz",
        "xylophonequartz",
        "Quokkazebra",
        "Pangolinfjord",
        "pangolinfjord",
    ] {
        assert!(
            !contains(&stored, canary.as_bytes()),
            "{canary} is stored in plaintext"
        );
        // pg_dump prints bytea as hex.
        assert!(
            !contains(&stored, hex(canary.as_bytes()).as_bytes()),
            "{canary} is stored in plaintext (hex)"
        );
    }
    // The check is able to fail: the user ids and conversation id are stored as they are.
    assert!(contains(&stored, b"alice"));
    assert!(
        contains(&stored, id.as_bytes())
            || contains(
                &stored,
                hex(uuid::Uuid::parse_str(&id).expect("uuid").as_bytes()).as_bytes()
            )
    );
}

async fn words_stems_case_accents_and_ranking(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = pair(&harness, "Ops").await;
    let mut alice = harness.client(TENANT, "alice");
    let mut sent = Vec::new();
    for body in [
        "deploy the release",
        "deploy deploy deploy now",
        "we deployed it yesterday and it went well for everyone involved in the project team today",
        "Café au lait for the RUNNING team",
        "ship it",
        "ship it",
    ] {
        sent.push(send(&mut alice, text(&id, body)).await.message_id);
    }
    // Term frequency and length decide; equal scores go newest first.
    assert_eq!(
        found(&mut alice, query("deploy")).await,
        [sent[1].clone(), sent[0].clone(), sent[2].clone()]
    );
    assert_eq!(
        found(&mut alice, query("ship")).await,
        [sent[5].clone(), sent[4].clone()]
    );
    let scores: Vec<f64> = search(&mut alice, query("deploy"))
        .await
        .iter()
        .map(|hit| hit.score)
        .collect();
    assert!(scores[0] > scores[1] && scores[1] > scores[2], "{scores:?}");
    // Every word must match, in any order and case; stems match their forms.
    assert_eq!(
        found(&mut alice, query("RELEASE Deployed")).await,
        one(&sent[0])
    );
    assert!(
        found(&mut alice, query("release yesterday"))
            .await
            .is_empty()
    );
    for words in ["cafe", "CAFÉ", "runs", "run team", "Running"] {
        assert_eq!(
            found(&mut alice, query(words)).await,
            one(&sent[3]),
            "{words}"
        );
    }
    let hit = &search(&mut alice, query("cafe running")).await[0];
    assert_eq!(
        hit.snippet,
        "\u{2}Café\u{3} au lait for the \u{2}RUNNING\u{3} team"
    );
    // The stemmer does not know irregular forms: documented.
    assert!(found(&mut alice, query("ran")).await.is_empty());
}

async fn every_filter_and_pagination(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let a = pair(&harness, "A").await;
    let b = create_group(&mut harness.conversations.client(TENANT, "alice"), "B", &[]).await;
    let mut alice = harness.client(TENANT, "alice");
    let mut bob = harness.client(TENANT, "bob");
    let a1 = send(&mut alice, text(&a, "budget draft")).await;
    let a2 = send(&mut bob, text(&a, "budget numbers")).await;
    let a3 = send(
        &mut alice,
        pb::SendMessageRequest {
            parent_id: a1.message_id.clone(),
            ..text(&a, "budget reply")
        },
    )
    .await;
    let b1 = send(&mut alice, text(&b, "budget elsewhere")).await;
    let all: HashSet<String> = [&a1, &a2, &a3, &b1]
        .iter()
        .map(|m| m.message_id.clone())
        .collect();
    let set = |ids: Vec<String>| ids.into_iter().collect::<HashSet<_>>();
    let ids = |messages: &[&pb::Message]| {
        messages
            .iter()
            .map(|m| m.message_id.clone())
            .collect::<HashSet<_>>()
    };

    assert_eq!(set(found(&mut alice, query("budget")).await), all);
    // bob is not in B.
    assert_eq!(
        set(found(&mut bob, query("budget")).await),
        ids(&[&a1, &a2, &a3])
    );
    let filtered = |change: &dyn Fn(&mut pb::SearchMessagesRequest)| {
        let mut request = query("budget");
        change(&mut request);
        request
    };
    assert_eq!(
        set(found(
            &mut alice,
            filtered(&|r| r.conversation_ids = vec![b.clone()])
        )
        .await),
        ids(&[&b1])
    );
    assert_eq!(
        set(found(&mut alice, filtered(&|r| r.sender_id = "bob".to_owned())).await),
        ids(&[&a2])
    );
    assert_eq!(
        set(found(
            &mut alice,
            filtered(&|r| r.thread_id = a1.message_id.clone())
        )
        .await),
        ids(&[&a3])
    );
    assert!(
        found(&mut alice, filtered(&|r| r.has_attachments = true))
            .await
            .is_empty()
    );
    let at = a2.create_time;
    assert_eq!(
        set(found(&mut alice, filtered(&|r| r.start_time = at)).await),
        ids(&[&a2, &a3, &b1])
    );
    assert_eq!(
        set(found(&mut alice, filtered(&|r| r.end_time = at)).await),
        ids(&[&a1])
    );

    // Pages of one: the same order as one big page, nothing twice, and then the end.
    let whole = found(&mut alice, query("budget")).await;
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let response = alice
            .search_messages(pb::SearchMessagesRequest {
                page_size: 1,
                page_token: token.clone(),
                ..query("budget")
            })
            .await
            .expect("page")
            .into_inner();
        assert!(response.hits.len() <= 1);
        paged.extend(
            response
                .hits
                .into_iter()
                .map(|hit| hit.message.expect("m").message_id),
        );
        if response.next_page_token.is_empty() {
            break;
        }
        token = response.next_page_token;
        assert!(paged.len() <= 4, "pagination does not end");
    }
    assert_eq!(paged, whole);
    // A token belongs to its query.
    let first = alice
        .search_messages(pb::SearchMessagesRequest {
            page_size: 1,
            ..query("budget")
        })
        .await
        .expect("page")
        .into_inner();
    let status = alice
        .search_messages(pb::SearchMessagesRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..query("draft")
        })
        .await
        .expect_err("token of another query");
    assert_eq!(violated_fields(&status), ["page_token"]);
}

async fn edits_deletes_and_membership_change_what_is_found(backend: Backend) {
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.permission_cache_ttl = Duration::from_millis(300);
    })
    .await;
    let id = pair(&harness, "Edits").await;
    let other = pair(&harness, "Other").await;
    let mut alice = harness.client(TENANT, "alice");
    let mut bob = harness.client(TENANT, "bob");
    let message = send(&mut alice, text(&id, "alpha beta")).await;
    edit(&mut alice, &message, "gamma beta").await;
    assert!(found(&mut alice, query("alpha")).await.is_empty());
    assert_eq!(
        found(&mut alice, query("gamma")).await,
        one(&message.message_id)
    );
    assert_eq!(
        found(&mut bob, query("beta")).await,
        one(&message.message_id)
    );
    alice
        .delete_message(pb::DeleteMessageRequest {
            conversation_id: id.clone(),
            message_id: message.message_id.clone(),
        })
        .await
        .expect("delete");
    assert!(found(&mut alice, query("beta")).await.is_empty());

    // A removed participant stops finding the conversation's messages.
    let kept = send(&mut alice, text(&id, "omega news")).await;
    assert_eq!(found(&mut bob, query("omega")).await, one(&kept.message_id));
    let mut owner = harness.conversations.client(TENANT, "alice");
    remove_participant(&mut owner, &id, "bob").await;
    // Within the permission cache's bound (conversation-service's event usually ends it in
    // milliseconds), with and without naming the conversation.
    let explicit = || pb::SearchMessagesRequest {
        conversation_ids: vec![id.clone()],
        ..query("omega")
    };
    eventually(Duration::from_secs(5), "bob no longer finding it", || {
        let mut bob = bob.clone();
        let explicit = explicit();
        async move {
            found(&mut bob, explicit).await.is_empty()
                && found(&mut bob, query("omega")).await.is_empty()
        }
    })
    .await;
    // A deleted conversation's messages never appear.
    let elsewhere = send(&mut alice, text(&other, "omega elsewhere")).await;
    assert_eq!(
        found(&mut alice, query("omega")).await.len(),
        2,
        "both conversations before the delete"
    );
    owner
        .delete_conversation(conversation::DeleteConversationRequest {
            conversation_id: other.clone(),
        })
        .await
        .expect("delete conversation");
    eventually(
        Duration::from_secs(5),
        "the deleted conversation leaving the search",
        || {
            let mut alice = alice.clone();
            let (kept, elsewhere) = (kept.message_id.clone(), elsewhere.message_id.clone());
            async move {
                let ids = found(&mut alice, query("omega")).await;
                assert!(ids == one(&kept) || ids.contains(&elsewhere), "{ids:?}");
                ids == one(&kept)
            }
        },
    )
    .await;
}

async fn end_to_end_payloads_are_found_by_client_tokens(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = pair(&harness, "E2E").await;
    let mut alice = harness.client(TENANT, "alice");
    let payload = |tokens: Vec<Vec<u8>>| pb::SendMessageRequest {
        conversation_id: id.clone(),
        content: Some(pb::send_message_request::Content::Encrypted(
            pb::EncryptedPayload {
                ciphertext: vec![7; 32],
                algorithm: "mls.v1".to_owned(),
                key_id: "k1".to_owned(),
                search_tokens: tokens,
            },
        )),
        ..Default::default()
    };
    let both = send(
        &mut alice,
        payload(vec![b"t-one".to_vec(), b"t-two".to_vec()]),
    )
    .await;
    let single = send(&mut alice, payload(vec![b"t-one".to_vec()])).await;
    let by_tokens = |tokens: Vec<&[u8]>| pb::SearchMessagesRequest {
        search_tokens: tokens.into_iter().map(<[u8]>::to_vec).collect(),
        ..Default::default()
    };
    assert_eq!(
        found(&mut alice, by_tokens(vec![b"t-two"])).await,
        one(&both.message_id)
    );
    assert_eq!(
        found(&mut alice, by_tokens(vec![b"t-one"])).await,
        [single.message_id.clone(), both.message_id.clone()]
    );
    let hits = search(&mut alice, by_tokens(vec![b"t-one", b"t-two"])).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].snippet, "", "the server cannot read the payload");
    // Words never match client tokens.
    assert!(found(&mut alice, query("t-one")).await.is_empty());
}

async fn other_tenants_find_nothing(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = pair(&harness, "Secret").await;
    let mut alice = harness.client(TENANT, "alice");
    send(&mut alice, text(&id, "merger talks")).await;
    // The same user in another tenant, even naming the conversation.
    let mut other = harness.client("globex", "alice");
    assert!(found(&mut other, query("merger")).await.is_empty());
    let response = other
        .search_messages(pb::SearchMessagesRequest {
            conversation_ids: vec![id.clone()],
            ..query("merger")
        })
        .await
        .expect("search")
        .into_inner();
    assert!(response.hits.is_empty());
    assert!(response.next_page_token.is_empty());
    // Its own messages with the same words are its own.
    let theirs = create_group(
        &mut harness.conversations.client("globex", "alice"),
        "G",
        &[],
    )
    .await;
    let own = send(&mut other, text(&theirs, "merger talks")).await;
    assert_eq!(found(&mut other, query("merger")).await, [own.message_id]);
    assert_eq!(found(&mut alice, query("merger")).await.len(), 1);
}

async fn bad_search_input_names_the_fields(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let mut alice = harness.client(TENANT, "alice");
    let cases: Vec<(pb::SearchMessagesRequest, Vec<&str>)> = vec![
        (query(""), vec!["query"]),
        (query("!!! ---"), vec!["query"]),
        (query(&"word ".repeat(103)), vec!["query"]),
        (
            pb::SearchMessagesRequest {
                page_size: 101,
                ..query("x")
            },
            vec!["page_size"],
        ),
        (
            pb::SearchMessagesRequest {
                conversation_ids: vec!["nope".to_owned()],
                thread_id: "nope".to_owned(),
                ..query("x")
            },
            vec!["conversation_ids[0]", "thread_id"],
        ),
        (
            pb::SearchMessagesRequest {
                search_tokens: vec![Vec::new(), vec![1; 129]],
                ..query("x")
            },
            vec!["search_tokens[0]", "search_tokens[1]"],
        ),
        (
            pb::SearchMessagesRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: 20,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: 10,
                    nanos: 0,
                }),
                ..query("x")
            },
            vec!["end_time"],
        ),
        (
            pb::SearchMessagesRequest {
                page_token: "garbage".to_owned(),
                ..query("x")
            },
            vec!["page_token"],
        ),
    ];
    for (request, fields) in cases {
        let status = alice
            .search_messages(request.clone())
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(violated_fields(&status), fields, "{request:?}");
    }
}

async fn tampered_ciphertext_is_data_loss_never_text(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = pair(&harness, "Tamper").await;
    let mut alice = harness.client(TENANT, "alice");
    let first = send(&mut alice, text(&id, "first secret")).await;
    let second = send(&mut alice, text(&id, "second secret")).await;
    let third = send(&mut alice, text(&id, "third secret")).await;
    let db = message_service::store::connect(&harness.message_database.settings)
        .await
        .expect("db");
    let sealed = |message: &pb::Message| {
        let id = uuid::Uuid::parse_str(&message.message_id).expect("uuid");
        let db = db.clone();
        async move {
            message_row::Entity::find_by_id(id)
                .one(&db)
                .await
                .expect("row")
                .expect("exists")
                .sealed
                .expect("sealed")
        }
    };
    let write = |message: &pb::Message, value: Vec<u8>| {
        let id = uuid::Uuid::parse_str(&message.message_id).expect("uuid");
        let db = db.clone();
        async move {
            message_row::Entity::update_many()
                .col_expr(
                    message_row::Column::Sealed,
                    sea_orm::sea_query::Expr::value(value),
                )
                .filter(message_row::Column::Id.eq(id))
                .exec(&db)
                .await
                .expect("tamper");
        }
    };
    // Copy the first message's ciphertext into the second; flip a bit of the third.
    write(&second, sealed(&first).await).await;
    let mut flipped = sealed(&third).await;
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    write(&third, flipped).await;

    let get = |message: &pb::Message| pb::GetMessageRequest {
        conversation_id: id.clone(),
        message_id: message.message_id.clone(),
    };
    assert_eq!(
        body(
            &alice
                .get_message(get(&first))
                .await
                .expect("intact")
                .into_inner()
                .message
                .expect("m")
        ),
        "first secret"
    );
    for tampered in [&second, &third] {
        let status = alice
            .get_message(get(tampered))
            .await
            .expect_err("tampered");
        assert_eq!(status.code(), Code::DataLoss);
        assert!(!status.message().contains("secret"), "{}", status.message());
    }
    let status = alice
        .list_messages(pb::ListMessagesRequest {
            conversation_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a page with tampered rows");
    assert_eq!(status.code(), Code::DataLoss);
    let status = alice
        .search_messages(query("third"))
        .await
        .expect_err("a hit with a tampered row");
    assert_eq!(status.code(), Code::DataLoss);
}

async fn key_rotation_keeps_old_and_new_readable_then_reencrypts(backend: Backend) {
    use message_service::store::keys::Keyring;
    use message_service::store::rotation;
    let harness = MessagingHarness::start(backend).await;
    let id = pair(&harness, "Rotation").await;
    let mut alice = harness.client(TENANT, "alice");
    let mut old = Vec::new();
    for index in 0..5 {
        old.push(send(&mut alice, text(&id, &format!("old words {index}"))).await);
    }
    edit(&mut alice, &old[0], "old words edited").await;
    let db = message_service::store::connect(&harness.message_database.settings)
        .await
        .expect("db");
    let keys = Keyring::open(&db, &messaging_e2e::test_encryption(), Mode::Production)
        .await
        .expect("keys");
    let versions = |db: sea_orm::DatabaseConnection| async move {
        let mut versions: Vec<Option<i32>> = message_row::Entity::find()
            .filter(message_row::Column::TenantId.eq(TENANT))
            .all(&db)
            .await
            .expect("rows")
            .into_iter()
            .map(|row| row.key_version)
            .chain(
                revision_row::Entity::find()
                    .all(&db)
                    .await
                    .expect("revisions")
                    .into_iter()
                    .map(|row| row.key_version),
            )
            .collect();
        versions.sort();
        versions.dedup();
        versions
    };
    assert_eq!(versions(db.clone()).await, [Some(1)]);
    assert_eq!(keys.rotate(&db, TENANT).await.expect("rotate"), 2);
    // New writes use the new version at once; old and new both read back.
    let new = send(&mut alice, text(&id, "new words")).await;
    assert_eq!(versions(db.clone()).await, [Some(1), Some(2)]);
    let stale = rotation::stale(&db, &keys, TENANT).await.expect("stale");
    assert_eq!((stale.messages, stale.revisions), (5, 1));
    let page = alice
        .list_messages(pb::ListMessagesRequest {
            conversation_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .messages;
    assert_eq!(page.len(), 6);
    assert_eq!(body(&page[0]), "new words");
    assert_eq!(body(&page[5]), "old words edited");
    // Re-encrypt in batches of 2, with traffic in between.
    let mut batches = 0;
    loop {
        let rewritten = rotation::reencrypt_batch(&db, &keys, TENANT, 2)
            .await
            .expect("batch");
        if rewritten == 0 {
            break;
        }
        batches += 1;
        send(&mut alice, text(&id, "during re-encryption")).await;
    }
    assert!(batches >= 3, "{batches} batches");
    // The stored content events (5 sends, the edit, and the copied conversation_created with
    // its title) move to the new key too, and replay.
    assert_eq!(
        rotation::reseal_events(&db, &keys, TENANT, 4)
            .await
            .expect("events"),
        7
    );
    assert_eq!(
        rotation::reseal_events(&db, &keys, TENANT, 4)
            .await
            .expect("events"),
        0
    );
    let first_text = |event: &pb::Event| {
        matches!(&event.payload, Some(pb::event::Payload::MessageCreated(created))
            if created.message.as_ref().is_some_and(|m| body(m) == "old words 0"))
    };
    messaging_e2e::wait_for_event(&mut alice, first_text).await;
    assert_eq!(
        rotation::stale(&db, &keys, TENANT)
            .await
            .expect("stale")
            .total(),
        0
    );
    assert_eq!(versions(db.clone()).await, [Some(2)]);
    // Everything still reads and is still found.
    let ids = found(&mut alice, query("words")).await;
    assert_eq!(ids.len(), 6);
    assert!(ids.contains(&new.message_id) && ids.contains(&old[4].message_id));
    assert_eq!(first_revision(&mut alice, &old[0]).await, "old words 0");
}

async fn start_up_refuses_wrong_missing_or_switched_off_keys(backend: Backend) {
    let conversations = ConversationHarness::start(backend).await;
    let database = messaging_e2e::TestDatabase::new(backend);
    let settings = message_settings(&database, &conversations.server.url());
    start_message_service(settings.clone())
        .await
        .stop()
        .await
        .expect("first start");
    let refused = |change: &dyn Fn(&mut message_service::config::Settings)| {
        let mut settings = settings.clone();
        change(&mut settings);
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let result = tokio::time::timeout(
                Duration::from_secs(30),
                message_service::run(settings, listener, std::future::pending()),
            )
            .await
            .expect("refuses at once");
            format!("{:#}", result.expect_err("refused"))
        }
    };
    let error = refused(&|s| {
        s.message_service.encryption.master_key =
            Some(Secret::new("b3RoZXItbWFzdGVyLWtleS1vZi0zMi1ieXRlcy4uLi4="));
    })
    .await;
    assert!(error.contains("not the one"), "{error}");
    let error = refused(&|s| s.message_service.encryption.master_key = None).await;
    assert!(error.contains("no master key"), "{error}");
    let error = refused(&|s| {
        s.message_service.encryption.master_key = Some(Secret::new("c2hvcnQ="));
    })
    .await;
    assert!(error.contains("master key"), "{error}");
    let error = refused(&|s| s.message_service.encryption.enabled = Some(false)).await;
    assert!(error.contains("holds encrypted data"), "{error}");
    // Development mode defaults to off, and is refused the same way over encrypted data.
    let error = refused(&|s| {
        s.mode = Mode::Development;
        s.message_service.encryption = Default::default();
    })
    .await;
    assert!(error.contains("holds encrypted data"), "{error}");
    // The right key still starts.
    assert_eq!(
        settings.message_service.encryption.master_key,
        Some(Secret::new(TEST_MASTER_KEY))
    );
    start_message_service(settings)
        .await
        .stop()
        .await
        .expect("restart");
}

async fn messagingctl_rotates_under_live_traffic(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = pair(&harness, "Live").await;
    let mut alice = harness.client(TENANT, "alice");
    let mut old = Vec::new();
    for index in 0..120 {
        old.push(send(&mut alice, text(&id, &format!("before rotation {index}"))).await);
    }
    let folder = tempfile::tempdir().expect("folder");
    let config = folder.path().join("messaging.toml");
    let database = &harness.message_database.settings;
    let schema = database
        .schema
        .as_ref()
        .map(|schema| format!(", schema = \"{schema}\""))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "mode = \"production\"\n[message_service]\ndatabase = {{ url = \"{}\"{schema} }}\n\
             [message_service.encryption]\nmaster_key = \"{TEST_MASTER_KEY}\"\n",
            database.url.expose()
        ),
    )
    .expect("config");

    // Live traffic: a sender that keeps going until told to stop, counting failures.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let mut sender = harness.client(TENANT, "bob");
    let live_id = id.clone();
    let traffic = tokio::spawn(async move {
        let (mut sent, mut failed) = (0_u32, Vec::new());
        loop {
            if stopped.try_recv().is_ok() {
                return (sent, failed);
            }
            match sender.send_message(text(&live_id, "during rotation")).await {
                Ok(_) => sent += 1,
                Err(status) => failed.push(status),
            }
        }
    });
    let output = tokio::process::Command::new(workspace_binary("messagingctl"))
        .arg("--config")
        .arg(&config)
        .args(["keys", "rotate", "--batch", "25"])
        .output()
        .await
        .expect("messagingctl runs");
    stop.send(()).expect("stop traffic");
    let (sent, failed) = traffic.await.expect("traffic");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "messagingctl failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        failed.is_empty(),
        "sends failed during rotation: {failed:?}"
    );
    assert!(sent > 0, "no traffic ran");
    assert!(
        stdout.contains(&format!("{TENANT}: new writes now use key version 2")),
        "{stdout}"
    );
    // Progress, batch by batch (no terminal here, so as lines), then the summary.
    let progress = stdout
        .lines()
        .filter(|line| line.contains("rows re-encrypted"))
        .count();
    assert!(progress >= 4, "{stdout}");
    assert!(stdout.contains("0 left on older versions"), "{stdout}");

    let status = tokio::process::Command::new(workspace_binary("messagingctl"))
        .arg("--config")
        .arg(&config)
        .args(["keys", "status"])
        .output()
        .await
        .expect("status runs");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).trim(),
        format!("{TENANT}: key version 2; 0 messages and 0 revisions on older versions")
    );
    for message in [&old[0], &old[119]] {
        assert_eq!(body(&get(&mut alice, message).await), body(message));
    }
}

async fn switching_encryption_on_seals_rows_written_in_plaintext(backend: Backend) {
    use message_service::store::keys::Keyring;
    use message_service::store::rotation;
    let conversations = ConversationHarness::start(backend).await;
    let database = messaging_e2e::TestDatabase::new(backend);
    let encrypted = message_settings(&database, &conversations.server.url());
    let mut plain = encrypted.clone();
    plain.message_service.encryption.enabled = Some(false);
    let id = create_group(&mut conversations.client(TENANT, "alice"), "Before", &[]).await;

    let server = start_message_service(plain).await;
    let mut alice = messaging_e2e::message_client(&server, TENANT, "alice").await;
    let message = send(&mut alice, text(&id, "written plainly")).await;
    assert_eq!(
        found(&mut alice, query("plainly")).await,
        one(&message.message_id)
    );
    server.stop().await.expect("stop");

    // Switched on: old rows still read, but their words were keyed with the development key.
    let server = start_message_service(encrypted).await;
    let mut alice = messaging_e2e::message_client(&server, TENANT, "alice").await;
    let get = pb::GetMessageRequest {
        conversation_id: id.clone(),
        message_id: message.message_id.clone(),
    };
    let got = alice
        .get_message(get.clone())
        .await
        .expect("readable")
        .into_inner();
    assert_eq!(body(&got.message.expect("m")), "written plainly");
    assert!(found(&mut alice, query("plainly")).await.is_empty());

    let db = message_service::store::connect(&database.settings)
        .await
        .expect("db");
    let keys = Keyring::open(&db, &messaging_e2e::test_encryption(), Mode::Production)
        .await
        .expect("keys");
    assert_eq!(keys.tenants().await.expect("tenants"), [TENANT]);
    assert_eq!(
        rotation::stale(&db, &keys, TENANT)
            .await
            .expect("stale")
            .messages,
        1
    );
    while rotation::reencrypt_batch(&db, &keys, TENANT, 10)
        .await
        .expect("batch")
        > 0
    {}
    // The message's event and the copied conversation_created, both stored in plaintext.
    assert_eq!(
        rotation::reseal_events(&db, &keys, TENANT, 10)
            .await
            .expect("events"),
        2
    );
    let row =
        message_row::Entity::find_by_id(uuid::Uuid::parse_str(&message.message_id).expect("id"))
            .one(&db)
            .await
            .expect("row")
            .expect("exists");
    assert_eq!((row.key_version, row.text.as_deref()), (Some(1), None));
    assert!(row.sealed.is_some());
    assert_eq!(
        found(&mut alice, query("plainly")).await,
        one(&message.message_id)
    );
    let got = alice.get_message(get).await.expect("readable").into_inner();
    assert_eq!(body(&got.message.expect("m")), "written plainly");
    server.stop().await.expect("stop");
}

/// The same data gives the same hits, order, scores and snippets on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_give_the_same_results() {
    if !messaging_e2e::postgres_or_skip().await {
        return;
    }
    let corpus = [
        "Deploying the new search service tonight",
        "deploy deploy deploy",
        "The café on the corner serves the best espresso",
        "Search results should rank short messages higher when words repeat: search search",
        "Running late, start the deploy without me",
        "nothing relevant here",
        "Naïve résumé parsing broke the deploy pipeline again and again today",
    ];
    let queries = [
        "deploy",
        "search",
        "CAFE espresso",
        "run",
        "resume",
        "deploy again",
        "zzz",
    ];
    let mut results = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let harness = MessagingHarness::start(backend).await;
        let id = pair(&harness, "Same").await;
        let mut alice = harness.client(TENANT, "alice");
        let mut position = std::collections::HashMap::new();
        for (index, body) in corpus.iter().enumerate() {
            position.insert(send(&mut alice, text(&id, body)).await.message_id, index);
        }
        let mut answers = Vec::new();
        for words in queries {
            let hits: Vec<(usize, String, String)> = search(&mut alice, query(words))
                .await
                .into_iter()
                .map(|hit| {
                    let message = hit.message.expect("message");
                    (
                        position[&message.message_id],
                        format!("{:.3}", hit.score),
                        hit.snippet,
                    )
                })
                .collect();
            answers.push((words, hits));
        }
        results.push(answers);
    }
    assert!(!results[0].iter().all(|(_, hits)| hits.is_empty()));
    assert_eq!(results[0], results[1]);
}

/// Unread counts and search without conversation ids use the caller's conversation list, which
/// is cached like permissions: with a TTL of 10 minutes, only conversation-service's events can
/// make a join, a removal and a deletion show.
async fn conversation_lists_follow_membership_events(backend: Backend) {
    let harness = MessagingHarness::start_with(backend, |settings| {
        settings.message_service.permission_cache_ttl = Duration::from_secs(600);
    })
    .await;
    let first = pair(&harness, "First").await;
    let mut alice = harness.client(TENANT, "alice");
    let bob = harness.client(TENANT, "bob");
    send(&mut alice, text(&first, "lists first")).await;
    let listed = |client: &MessageClient| {
        let mut client = client.clone();
        async move {
            let mut ids: Vec<String> = client
                .get_unread_counts(pb::GetUnreadCountsRequest::default())
                .await
                .expect("counts")
                .into_inner()
                .counts
                .into_iter()
                .map(|count| count.conversation_id)
                .collect();
            ids.sort();
            ids
        }
    };
    let eventually =
        |client: &MessageClient, want: Vec<String>, words: &'static str, hits: usize| {
            let client = client.clone();
            async move {
                let mut want = want;
                want.sort();
                eventually(
                    Duration::from_secs(10),
                    "lists following the events",
                    || {
                        let (client, want) = (client.clone(), want.clone());
                        async move {
                            let mut searcher = client.clone();
                            listed(&client).await == want
                                && found(&mut searcher, query(words)).await.len() == hits
                        }
                    },
                )
                .await;
            }
        };
    eventually(&bob, vec![first.clone()], "lists", 1).await;
    // Added to a second group: it appears.
    let mut owner = harness.conversations.client(TENANT, "alice");
    let second = create_group(&mut owner, "Second", &[]).await;
    send(&mut alice, text(&second, "lists second")).await;
    owner
        .add_participants(conversation::AddParticipantsRequest {
            conversation_id: second.clone(),
            participants: vec![conversation::ParticipantSpec {
                user_id: "bob".to_owned(),
                role: Role::Member.into(),
            }],
        })
        .await
        .expect("add");
    eventually(&bob, vec![first.clone(), second.clone()], "lists", 2).await;
    // Removed from the first: it goes.
    remove_participant(&mut owner, &first, "bob").await;
    eventually(&bob, vec![second.clone()], "lists", 1).await;
    // The second deleted: nothing is left.
    owner
        .delete_conversation(conversation::DeleteConversationRequest {
            conversation_id: second.clone(),
        })
        .await
        .expect("delete");
    eventually(&bob, Vec::new(), "lists", 0).await;
}

async fn the_cost_of_a_search_is_bounded_by_its_input(backend: Backend) {
    let harness = MessagingHarness::start(backend).await;
    let id = pair(&harness, "Bounds").await;
    let mut alice = harness.client(TENANT, "alice");
    let words: Vec<String> = (0..65).map(|index| format!("word{index}")).collect();
    send(&mut alice, text(&id, &words[..8].join(" "))).await;
    // Eight distinct words and tokens together are the most: found.
    assert_eq!(
        found(&mut alice, query(&words[..8].join(" "))).await.len(),
        1
    );
    // Repeating a word does not count twice.
    assert_eq!(
        found(
            &mut alice,
            query(&format!("{} word0 word0", words[..8].join(" ")))
        )
        .await
        .len(),
        1
    );
    let refused = |request: pb::SearchMessagesRequest| {
        let mut client = alice.clone();
        async move {
            let status = client
                .search_messages(request)
                .await
                .expect_err("too many terms");
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            violated_fields(&status)
        }
    };
    // Nine words, 65 words (more tables than SQLite joins), and the 256 tokens a message may
    // carry: each refused at once, the same on both backends.
    assert_eq!(refused(query(&words[..9].join(" "))).await, ["query"]);
    assert_eq!(refused(query(&words.join(" "))).await, ["query"]);
    let tokens = |count: usize| -> Vec<Vec<u8>> {
        (0..count)
            .map(|index| vec![u8::try_from(index % 256).unwrap_or(0); 16])
            .collect()
    };
    assert_eq!(
        refused(pb::SearchMessagesRequest {
            search_tokens: tokens(256),
            ..Default::default()
        })
        .await,
        ["search_tokens"]
    );
    assert_eq!(
        refused(pb::SearchMessagesRequest {
            query: words[..5].join(" "),
            search_tokens: tokens(4),
            ..Default::default()
        })
        .await,
        ["search_tokens"]
    );
    // Control characters (U+0000 included) are refused in every text field, here the query.
    assert_eq!(refused(query("nul\u{0}byte")).await, ["query"]);
}
