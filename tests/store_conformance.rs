//! The store conformance suite: the same tests against SQLite and PostgreSQL, through
//! message-service's store traits only (`MessageStore`, `ReactionStore`, `ReadStateStore`,
//! `SearchStore`, `ParticipantStore`), with encryption at rest on. What a use case may rely
//! on from any store: numbering, idempotent retries, threads, edits with revisions, tombstones,
//! reactions, watermarks and unread counts, search, the participant projection, tenant
//! isolation, and one outbox event per change (sealed when it carries content).

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use message_service::domain::{Content, Edit, Message, MessageFilter, NewMessage, Reaction};
use message_service::store::keys::Keyring;
use message_service::store::{
    MessageStore, ParticipantStore, ReactionStore, ReadStateStore, SearchQuery, SearchStore, Sent,
    SequenceRange, SqlStore, StoreError,
};
use messaging_e2e::{Backend, TestDatabase, backend_tests, test_encryption};
use messaging_outbox::EventBus;
use messaging_outbox::entity::event;
use messaging_platform::config::Mode;
use messaging_platform::{ApiError, TenantId, UserId};
use messaging_proto::message::v1 as pb;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use uuid::Uuid;

backend_tests!(
    sends_are_numbered_and_retries_return_the_first,
    replies_count_on_their_root_and_unknown_parents_are_refused,
    edits_keep_revisions_and_rules_can_refuse,
    deletes_leave_tombstones_once,
    pages_walk_both_ways_with_filters,
    reactions_count_per_emoji_and_user,
    watermarks_move_forward_and_unread_counts_subtract,
    search_needs_every_term_in_the_given_conversations,
    participants_come_from_the_projection,
    every_change_records_one_event_sealed_when_it_carries_content,
    sends_of_two_replicas_around_a_rotation_stay_dense_and_sealed_with_the_newest_key,
    stamping_reads_only_the_unstamped_events_whatever_the_statistics_say,
    sent_values_come_back_exactly_sealed_or_in_plaintext,
    relays_of_two_replicas_each_hand_out_every_event_once_in_order,
);

static TENANT: LazyLock<TenantId> = LazyLock::new(|| TenantId::trusted("acme"));
static OTHER: LazyLock<TenantId> = LazyLock::new(|| TenantId::trusted("globex"));

fn user(name: &str) -> UserId {
    UserId::trusted(name)
}

struct Fixture {
    store: SqlStore,
    db: DatabaseConnection,
    /// Bind it for the whole test: dropping it removes the schema or file.
    _database: TestDatabase,
}

async fn fixture(backend: Backend) -> Fixture {
    let database = TestDatabase::new(backend);
    let db = message_service::store::connect(&database.settings)
        .await
        .expect("connect");
    let keys = Keyring::open(&db, &test_encryption(), Mode::Production)
        .await
        .expect("keyring");
    Fixture {
        store: SqlStore::new(db.clone(), keys, EventBus::new(64)),
        db,
        _database: database,
    }
}

fn text(conversation: Uuid, body: &str) -> NewMessage {
    NewMessage {
        conversation,
        content: Some(Content::Text(body.to_owned())),
        parent: None,
        mentions: Vec::new(),
        metadata: Default::default(),
        request_id: None,
        search_tokens: Vec::new(),
        attachments: Vec::new(),
    }
}

async fn send(store: &SqlStore, tenant: &TenantId, sender: &str, new: &NewMessage) -> Message {
    match store
        .send(tenant, &user(sender), new, &new.fingerprint())
        .await
        .expect("send")
    {
        Sent::New { message, rendered } => {
            // The rendering the event carried is the message sent.
            let wire = rendered.into_proto();
            assert_eq!(
                (wire.message_id, wire.sequence, wire.sender_id),
                (
                    message.id.to_string(),
                    message.sequence,
                    message.sender.clone()
                )
            );
            message
        }
        Sent::Retried { .. } => panic!("a new message was taken for a retry"),
    }
}

fn body(message: &Message) -> Option<&str> {
    message.content.as_ref().and_then(Content::text)
}

async fn sends_are_numbered_and_retries_return_the_first(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let mut sent = Vec::new();
    for index in 1..=3 {
        let mut new = text(conversation, &format!("hello {index}"));
        new.mentions = vec!["bob".to_owned()];
        new.metadata.insert("k".to_owned(), format!("v{index}"));
        sent.push(send(&store, &TENANT, "alice", &new).await);
    }
    assert_eq!(
        sent.iter()
            .map(|message| message.sequence)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let stored = store
        .message(&TENANT, conversation, sent[1].id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(stored, sent[1], "what send returns is what is stored");
    assert_eq!(body(&stored), Some("hello 2"));
    assert_eq!(stored.metadata.get("k").map(String::as_str), Some("v2"));
    assert_eq!(stored.mentions, ["bob"]);

    let mut first = text(conversation, "once");
    first.request_id = Some(messaging_platform::RequestId::trusted("request-1"));
    let original = send(&store, &TENANT, "alice", &first).await;
    let retried = store
        .send(&TENANT, &user("alice"), &first, &first.fingerprint())
        .await
        .expect("retry");
    let Sent::Retried {
        message,
        stored_fingerprint,
        fingerprint,
    } = retried
    else {
        panic!("a retry stored a second message");
    };
    assert_eq!(message.id, original.id);
    assert_eq!(
        stored_fingerprint, fingerprint,
        "same payload, same fingerprint"
    );
    let other = text(conversation, "something else");
    let reused = NewMessage {
        request_id: first.request_id.clone(),
        ..other
    };
    match store
        .send(&TENANT, &user("alice"), &reused, &reused.fingerprint())
        .await
        .expect("reuse")
    {
        Sent::Retried {
            stored_fingerprint,
            fingerprint,
            ..
        } => assert_ne!(stored_fingerprint, fingerprint),
        Sent::New { .. } => panic!("a reused request id stored a second message"),
    }
    // The same request id from another sender is another request.
    send(&store, &TENANT, "bob", &first).await;

    let ids: Vec<Uuid> = sent.iter().map(|message| message.id).collect();
    assert_eq!(store.messages(&TENANT, &ids).await.expect("by id").len(), 3);
    assert!(
        store
            .message(&OTHER, conversation, sent[0].id)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .messages(&OTHER, &ids)
            .await
            .expect("by id")
            .is_empty()
    );
}

async fn replies_count_on_their_root_and_unknown_parents_are_refused(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let root = send(&store, &TENANT, "alice", &text(conversation, "root")).await;
    let reply = |parent: Uuid, body: &str| NewMessage {
        parent: Some(parent),
        ..text(conversation, body)
    };
    let first = send(&store, &TENANT, "bob", &reply(root.id, "first")).await;
    let second = send(&store, &TENANT, "carol", &reply(first.id, "second")).await;
    assert_eq!(first.parent, Some(root.id));
    assert_eq!(
        second.parent,
        Some(root.id),
        "a reply to a reply joins the root"
    );
    let root_now = store
        .message(&TENANT, conversation, root.id)
        .await
        .expect("read")
        .expect("root");
    assert_eq!(root_now.reply_count, 2);
    assert_eq!(root_now.last_reply_at, Some(second.created_at));
    assert_eq!(
        body(&root_now),
        Some("root"),
        "counting keeps the sealed content"
    );

    for parent in [Uuid::now_v7(), root.id] {
        let other_conversation = NewMessage {
            parent: Some(parent),
            ..text(Uuid::now_v7(), "lost")
        };
        let refused = store
            .send(&TENANT, &user("bob"), &other_conversation, "x")
            .await
            .expect_err("unknown parent");
        assert!(matches!(refused, StoreError::UnknownParent), "{refused:?}");
    }

    store
        .delete(&TENANT, conversation, first.id, &user("bob"))
        .await
        .expect("delete")
        .expect("found");
    let root_now = store
        .message(&TENANT, conversation, root.id)
        .await
        .expect("read")
        .expect("root");
    assert_eq!(root_now.reply_count, 1);
}

async fn edits_keep_revisions_and_rules_can_refuse(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let sent = send(&store, &TENANT, "alice", &text(conversation, "first draft")).await;
    let edit = Edit {
        content: Some(Content::Text("second draft".to_owned())),
        mentions: Some(vec!["bob".to_owned()]),
        ..Edit::default()
    };
    let rule = |current: &Message, at| edit.apply(current, "alice", at, None);
    let edited = store
        .edit(&TENANT, conversation, sent.id, &user("alice"), &[], &rule)
        .await
        .expect("edit")
        .expect("found");
    assert_eq!(body(&edited), Some("second draft"));
    assert_eq!(edited.revision_count, 1);
    assert!(edited.edited_at.is_some());
    let stored = store
        .message(&TENANT, conversation, sent.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(stored, edited);
    let revisions = store
        .revisions(&TENANT, conversation, sent.id, 0, 10)
        .await
        .expect("revisions");
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0].revision, 1);
    assert_eq!(
        revisions[0].content,
        Some(Content::Text("first draft".to_owned()))
    );
    assert_eq!(revisions[0].created_at, sent.created_at);

    let refuse = |_: &Message, _| -> Result<Message, ApiError> {
        Err(ApiError::FailedPrecondition("no".to_owned()))
    };
    let refused = store
        .edit(&TENANT, conversation, sent.id, &user("alice"), &[], &refuse)
        .await
        .expect_err("refused");
    assert!(matches!(
        refused,
        StoreError::Rejected(ApiError::FailedPrecondition(_))
    ));
    let unchanged = store
        .message(&TENANT, conversation, sent.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(unchanged, edited, "a refused edit changes nothing");
    for (tenant, id) in [(&TENANT, Uuid::now_v7()), (&OTHER, sent.id)] {
        assert!(
            store
                .edit(tenant, conversation, id, &user("alice"), &[], &rule)
                .await
                .expect("edit")
                .is_none()
        );
    }
    assert!(
        store
            .revisions(&OTHER, conversation, sent.id, 0, 10)
            .await
            .expect("revisions")
            .is_empty()
    );
}

async fn deletes_leave_tombstones_once(backend: Backend) {
    let Fixture {
        store,
        db,
        _database,
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let sent = send(&store, &TENANT, "alice", &text(conversation, "secret")).await;
    let reaction = Reaction {
        conversation,
        message: sent.id,
        user: "bob".to_owned(),
        emoji: "👍".to_owned(),
        created_at: messaging_platform::time::now(),
    };
    assert!(store.react(&TENANT, &reaction, true).await.expect("react"));
    assert!(
        store
            .delete(&OTHER, conversation, sent.id, &user("alice"))
            .await
            .expect("delete")
            .is_none()
    );
    let tombstone = store
        .delete(&TENANT, conversation, sent.id, &user("alice"))
        .await
        .expect("delete")
        .expect("found");
    assert!(tombstone.is_deleted());
    assert_eq!(tombstone.content, None);
    assert!(tombstone.metadata.is_empty() && tombstone.mentions.is_empty());
    assert_eq!(
        (tombstone.sequence, tombstone.sender.as_str()),
        (1, "alice")
    );
    let summaries = store
        .summaries(&TENANT, &[sent.id], &user("bob"))
        .await
        .expect("summaries");
    assert!(summaries.is_empty(), "deleting removes the reactions");
    let events_before = event_kinds(&db).await.len();
    let again = store
        .delete(&TENANT, conversation, sent.id, &user("alice"))
        .await
        .expect("delete")
        .expect("found");
    assert_eq!(again, tombstone);
    assert_eq!(
        event_kinds(&db).await.len(),
        events_before,
        "deleting twice records one event"
    );
}

async fn pages_walk_both_ways_with_filters(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    for index in 1..=10 {
        let sender = if index % 2 == 0 { "alice" } else { "bob" };
        send(
            &store,
            &TENANT,
            sender,
            &text(conversation, &format!("m{index}")),
        )
        .await;
    }
    let sequences = |messages: Vec<Message>| -> Vec<i64> {
        messages.iter().map(|message| message.sequence).collect()
    };
    let all = MessageFilter::default();
    let newest = store
        .page(
            &TENANT,
            conversation,
            &all,
            SequenceRange {
                above: None,
                below: None,
                descending: true,
            },
            3,
        )
        .await
        .expect("page");
    assert_eq!(sequences(newest), [10, 9, 8]);
    let middle = store
        .page(
            &TENANT,
            conversation,
            &all,
            SequenceRange {
                above: Some(3),
                below: Some(7),
                descending: false,
            },
            10,
        )
        .await
        .expect("page");
    assert_eq!(sequences(middle), [4, 5, 6]);
    let alice = MessageFilter {
        sender: Some("alice".to_owned()),
        ..MessageFilter::default()
    };
    let forward = SequenceRange {
        above: None,
        below: None,
        descending: false,
    };
    let alices = store
        .page(&TENANT, conversation, &alice, forward, 10)
        .await
        .expect("page");
    assert_eq!(sequences(alices), [2, 4, 6, 8, 10]);
    assert!(
        store
            .page(&OTHER, conversation, &all, forward, 10)
            .await
            .expect("page")
            .is_empty()
    );
}

async fn reactions_count_per_emoji_and_user(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let sent = send(&store, &TENANT, "alice", &text(conversation, "react to me")).await;
    let at = messaging_platform::time::now();
    let reaction = |user: &str, emoji: &str, offset: u64| Reaction {
        conversation,
        message: sent.id,
        user: user.to_owned(),
        emoji: emoji.to_owned(),
        created_at: at + Duration::from_millis(offset),
    };
    assert!(
        store
            .react(&TENANT, &reaction("bob", "👍", 0), true)
            .await
            .expect("add")
    );
    assert!(
        !store
            .react(&TENANT, &reaction("bob", "👍", 1), true)
            .await
            .expect("add"),
        "adding twice changes nothing"
    );
    assert!(
        store
            .react(&TENANT, &reaction("carol", "👍", 2), true)
            .await
            .expect("add")
    );
    assert!(
        store
            .react(&TENANT, &reaction("carol", "🎉", 3), true)
            .await
            .expect("add")
    );
    let summaries = store
        .summaries(&TENANT, &[sent.id], &user("bob"))
        .await
        .expect("summaries");
    let mine: Vec<(String, i64, bool)> = summaries[&sent.id]
        .iter()
        .map(|summary| (summary.emoji.clone(), summary.count, summary.mine))
        .collect();
    assert_eq!(
        mine,
        [("👍".to_owned(), 2, true), ("🎉".to_owned(), 1, false)]
    );
    let page = store
        .reactions(&TENANT, sent.id, None, None, 2)
        .await
        .expect("list");
    assert_eq!(
        page.iter().map(|r| r.user.as_str()).collect::<Vec<_>>(),
        ["bob", "carol"]
    );
    let last = &page[1];
    let rest = store
        .reactions(
            &TENANT,
            sent.id,
            None,
            Some((last.created_at, last.user.clone(), last.emoji.clone())),
            10,
        )
        .await
        .expect("list");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].emoji, "🎉");
    assert!(
        store
            .react(&TENANT, &reaction("bob", "👍", 4), false)
            .await
            .expect("remove")
    );
    assert!(
        !store
            .react(&TENANT, &reaction("bob", "👍", 5), false)
            .await
            .expect("remove")
    );
    assert!(
        store
            .summaries(&OTHER, &[sent.id], &user("bob"))
            .await
            .expect("summaries")
            .is_empty()
    );
    assert!(
        store
            .reactions(&OTHER, sent.id, None, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

async fn watermarks_move_forward_and_unread_counts_subtract(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let quiet = Uuid::now_v7();
    let mut ids = Vec::new();
    for index in 1..=5 {
        let mut new = text(conversation, &format!("m{index}"));
        if index >= 4 {
            new.mentions = vec!["bob".to_owned()];
        }
        ids.push(send(&store, &TENANT, "alice", &new).await.id);
    }
    send(&store, &TENANT, "bob", &text(conversation, "mine")).await;
    // Sending moved bob's watermark to his own message (6): mark him back is impossible.
    let (state, moved) = store
        .mark_read(&TENANT, conversation, &user("bob"), 2)
        .await
        .expect("mark");
    assert!(!moved, "watermarks never move back");
    assert_eq!(state.last_read_sequence, 6);
    let (state, moved) = store
        .mark_read(&TENANT, conversation, &user("carol"), 100)
        .await
        .expect("mark");
    assert!(moved);
    assert_eq!(
        state.last_read_sequence, 6,
        "clamped to the latest sequence"
    );
    store
        .delete(&TENANT, conversation, ids[4], &user("alice"))
        .await
        .expect("delete");
    let (_, moved) = store
        .mark_read(&TENANT, conversation, &user("dave"), 2)
        .await
        .expect("mark");
    assert!(moved);
    let unread = store
        .unread(&TENANT, &user("dave"), &[conversation, quiet])
        .await
        .expect("unread");
    let figures = unread[&conversation];
    assert_eq!(figures.last_sequence, 6);
    assert_eq!(figures.last_read_sequence, 2);
    // 3, 4 and bob's 6 (5 was deleted); of those, 4 mentions bob, not dave.
    assert_eq!((figures.unread, figures.mentions), (3, 0));
    let bob = store
        .unread(&TENANT, &user("bob"), &[conversation])
        .await
        .expect("unread");
    assert_eq!(bob[&conversation].unread, 0);
    assert_eq!(unread[&quiet], Default::default());
    let readers: Vec<String> = store
        .read_states(&TENANT, conversation)
        .await
        .expect("states")
        .into_iter()
        .map(|state| state.user)
        .collect();
    assert_eq!(readers, ["alice", "bob", "carol", "dave"]);
    assert!(
        store
            .read_states(&OTHER, conversation)
            .await
            .expect("states")
            .is_empty()
    );
    let elsewhere = store
        .unread(&OTHER, &user("dave"), &[conversation])
        .await
        .expect("unread");
    assert_eq!(elsewhere[&conversation], Default::default());
}

async fn search_needs_every_term_in_the_given_conversations(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let first = Uuid::now_v7();
    let second = Uuid::now_v7();
    let both = send(&store, &TENANT, "alice", &text(first, "Running foxes jump")).await;
    send(&store, &TENANT, "alice", &text(first, "foxes sleep")).await;
    let elsewhere = send(&store, &TENANT, "alice", &text(second, "the fox runs")).await;
    send(&store, &OTHER, "alice", &text(first, "running foxes")).await;
    let query = |terms: &[&str], conversations: Vec<Uuid>| SearchQuery {
        terms: terms
            .iter()
            .filter_map(|word| message_service::domain::text::term(word))
            .collect(),
        client_tokens: Vec::new(),
        conversations,
        filter: MessageFilter::default(),
        after: None,
        limit: 10,
    };
    let found = |matches: Option<Vec<message_service::store::SearchMatch>>| -> HashSet<Uuid> {
        matches
            .expect("in time")
            .into_iter()
            .map(|hit| hit.message_id)
            .collect()
    };
    let within = Duration::from_secs(10);
    let hits = store
        .search(
            &TENANT,
            &query(&["run", "fox"], vec![first, second]),
            within,
        )
        .await
        .expect("search");
    assert_eq!(found(hits), HashSet::from([both.id, elsewhere.id]));
    let hits = store
        .search(&TENANT, &query(&["run", "fox"], vec![second]), within)
        .await
        .expect("search");
    assert_eq!(found(hits), HashSet::from([elsewhere.id]));
    let hits = store
        .search(&OTHER, &query(&["jump"], vec![first, second]), within)
        .await
        .expect("search");
    assert!(
        found(hits).is_empty(),
        "another tenant's index is not searched"
    );
    store
        .delete(&TENANT, first, both.id, &user("alice"))
        .await
        .expect("delete");
    let hits = store
        .search(&TENANT, &query(&["jump"], vec![first]), within)
        .await
        .expect("search");
    assert!(found(hits).is_empty(), "deleted messages leave the index");
}

fn participant_event(tenant: &str, conversation: Uuid, payload: pb::event::Payload) -> pb::Event {
    pb::Event {
        event_id: Uuid::now_v7().to_string(),
        tenant_id: tenant.to_owned(),
        conversation_id: conversation.to_string(),
        actor_id: "admin".to_owned(),
        time: None,
        position: String::new(),
        payload: Some(payload),
    }
}

async fn participants_come_from_the_projection(backend: Backend) {
    let Fixture {
        store,
        db,
        _database,
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let change = |user: &str| pb::ParticipantChanged {
        user_id: user.to_owned(),
        role: "ROLE_MEMBER".to_owned(),
    };
    use pb::event::Payload;
    let events = vec![
        (
            participant_event(
                &TENANT,
                conversation,
                Payload::ParticipantAdded(change("bob")),
            ),
            1,
        ),
        (
            participant_event(
                &TENANT,
                conversation,
                Payload::ParticipantAdded(change("carol")),
            ),
            2,
        ),
        (
            participant_event(
                &TENANT,
                conversation,
                Payload::ParticipantRemoved(change("carol")),
            ),
            3,
        ),
        (
            participant_event(
                &OTHER,
                conversation,
                Payload::ParticipantAdded(change("dave")),
            ),
            4,
        ),
    ];
    let projection = message_service::store::participants::ParticipantProjection {
        keys: store.keys().clone(),
    };
    messaging_outbox::store::copy_events(&db, "conversation-service", &events, &projection)
        .await
        .expect("copy");
    let users = ["bob", "carol", "dave", "erin"].map(str::to_owned);
    let among = store
        .participants_among(&TENANT, conversation, &users)
        .await
        .expect("participants");
    assert_eq!(among, HashSet::from(["bob".to_owned()]));
    let among = store
        .participants_among(&OTHER, conversation, &users)
        .await
        .expect("participants");
    assert_eq!(among, HashSet::from(["dave".to_owned()]));
    assert!(
        store
            .participants_among(&TENANT, conversation, &[])
            .await
            .expect("participants")
            .is_empty()
    );
}

/// Kinds of the outbox's events in insertion order, with whether each payload is sealed.
async fn events(db: &DatabaseConnection) -> Vec<(String, bool)> {
    event::Entity::find()
        .order_by_asc(event::Column::Id)
        .all(db)
        .await
        .expect("events")
        .into_iter()
        .map(|row| {
            (
                row.kind,
                messaging_platform::crypto::is_sealed(&row.payload),
            )
        })
        .collect()
}

async fn event_kinds(db: &DatabaseConnection) -> Vec<String> {
    events(db).await.into_iter().map(|(kind, _)| kind).collect()
}

async fn every_change_records_one_event_sealed_when_it_carries_content(backend: Backend) {
    let Fixture {
        store,
        db,
        _database,
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let sent = send(&store, &TENANT, "alice", &text(conversation, "hello")).await;
    let edit = Edit {
        content: Some(Content::Text("hello again".to_owned())),
        ..Edit::default()
    };
    let rule = |current: &Message, at| edit.apply(current, "alice", at, None);
    store
        .edit(&TENANT, conversation, sent.id, &user("alice"), &[], &rule)
        .await
        .expect("edit");
    let reaction = Reaction {
        conversation,
        message: sent.id,
        user: "bob".to_owned(),
        emoji: "👍".to_owned(),
        created_at: messaging_platform::time::now(),
    };
    store.react(&TENANT, &reaction, true).await.expect("add");
    store
        .react(&TENANT, &reaction, false)
        .await
        .expect("remove");
    store
        .mark_read(&TENANT, conversation, &user("bob"), 1)
        .await
        .expect("mark");
    store
        .delete(&TENANT, conversation, sent.id, &user("alice"))
        .await
        .expect("delete");
    let expected = [
        ("message.created", true),
        ("message.edited", true),
        ("reaction.added", false),
        ("reaction.removed", false),
        ("read_state.moved", false),
        ("message.deleted", false),
    ]
    .map(|(kind, sealed)| (kind.to_owned(), sealed));
    assert_eq!(events(&db).await, expected);
}

/// Two stores over one database, as two replicas of message-service, their sends grouped by
/// their own writers: every send takes the next number whichever store wrote the one before,
/// sends after a rotation are sealed with the new key, and a retry is answered by the stored
/// message; one event per message.
async fn sends_of_two_replicas_around_a_rotation_stay_dense_and_sealed_with_the_newest_key(
    backend: Backend,
) {
    use message_service::store::entity::message;
    use sea_orm::{ColumnTrait, QueryFilter};
    let Fixture {
        store,
        db,
        _database,
    } = fixture(backend).await;
    let keys = Keyring::open(&db, &test_encryption(), Mode::Production)
        .await
        .expect("keyring");
    let other = SqlStore::new(db.clone(), keys, EventBus::new(64));
    let conversation = Uuid::now_v7();
    let mut sent = Vec::new();
    for index in 0..3 {
        let new = text(conversation, &format!("first {index}"));
        sent.push(send(&store, &TENANT, "alice", &new).await);
    }
    sent.push(
        send(
            &other,
            &TENANT,
            "bob",
            &text(conversation, "from the other"),
        )
        .await,
    );
    sent.push(send(&store, &TENANT, "alice", &text(conversation, "after it")).await);
    let rotated = store
        .keys()
        .rotate(&db, TENANT.as_str())
        .await
        .expect("rotate");
    sent.push(send(&store, &TENANT, "alice", &text(conversation, "rotated")).await);
    let mut once = text(conversation, "once");
    once.request_id = Some(messaging_platform::RequestId::trusted("request-once"));
    sent.push(send(&store, &TENANT, "alice", &once).await);
    match store
        .send(&TENANT, &user("alice"), &once, &once.fingerprint())
        .await
        .expect("retry")
    {
        Sent::Retried { message, .. } => assert_eq!(message, sent[6], "the retry's answer"),
        Sent::New { message, .. } => panic!("a retry was written again: {message:?}"),
    }
    sent.push(send(&other, &TENANT, "bob", &text(conversation, "last")).await);

    assert_eq!(
        sent.iter()
            .map(|message| message.sequence)
            .collect::<Vec<_>>(),
        (1..=8).collect::<Vec<i64>>(),
        "each send the next number"
    );
    let versions: Vec<Option<i32>> = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation))
        .order_by_asc(message::Column::Sequence)
        .all(&db)
        .await
        .expect("rows")
        .into_iter()
        .map(|row| row.key_version)
        .collect();
    let rotated = Some(i32::try_from(rotated).expect("version"));
    assert_eq!(
        versions,
        [
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            rotated,
            rotated,
            rotated
        ],
        "sealed with the tenant's newest key at the time"
    );
    for message in &sent {
        let stored = store
            .message(&TENANT, conversation, message.id)
            .await
            .expect("read")
            .expect("found");
        assert_eq!(&stored, message, "what send returned is what is stored");
    }
    assert_eq!(
        event_kinds(&db).await,
        vec!["message.created".to_owned(); 8],
        "one event per message"
    );
}

/// `count` unsealed outbox events of `conversation` (read-state moves), as written straight into
/// the outbox.
fn outbox_events(conversation: Uuid, count: usize) -> Vec<messaging_outbox::store::NewEvent> {
    let at = messaging_platform::time::now();
    (0..count)
        .map(|_| {
            messaging_outbox::store::new_event(
                None,
                TENANT.as_str(),
                conversation,
                "alice",
                at,
                pb::event::Payload::ReadStateMoved(pb::ReadStateMoved::default()),
            )
            .expect("event")
        })
        .collect()
}

/// The relay stamps events from the `events_unstamped` index (PostgreSQL; SQLite from an index
/// too), and the fence's probe for unstamped events reads it, whatever the planner's statistics
/// say. Statistics gathered while the outbox held a few unstamped events (a fresh deployment's
/// first minutes) made a stamp walk the events from the first one on, and the probe scan the
/// whole outbox.
async fn stamping_reads_only_the_unstamped_events_whatever_the_statistics_say(backend: Backend) {
    use messaging_outbox::store::{has_unstamped, insert_events, stamp_all, stamp_statement};
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let Fixture {
        store,
        db,
        _database,
    } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    for index in 0..5 {
        send(
            &store,
            &TENANT,
            "alice",
            &text(conversation, &format!("m{index}")),
        )
        .await;
    }
    // Statistics of a small outbox whose rows are all unstamped.
    db.execute_unprepared("ANALYZE").await.expect("analyze");
    insert_events(&db, outbox_events(conversation, 2_000))
        .await
        .expect("insert");
    assert_eq!(stamp_all(&db).await.expect("stamp"), 2_005);
    // The fence's probe for unstamped events: by the index too, whatever the statistics say.
    assert!(!has_unstamped(&db).await.expect("probe"));
    if backend == Backend::Postgres {
        use sea_orm::sqlx::Row as _;
        let pool = db.get_postgres_connection_pool();
        let query = format!(
            "{}; EXPLAIN {}",
            messaging_outbox::store::SEQUENTIAL_SCANS_OFF,
            messaging_outbox::store::UNSTAMPED_PROBE
        );
        let plan: Vec<String> = sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(query))
            .fetch_all(pool)
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("events_unstamped") && !plan.contains("Seq Scan"),
            "the probe does not read the index:\n{plan}"
        );
    }
    insert_events(&db, outbox_events(conversation, 3))
        .await
        .expect("insert");
    assert!(has_unstamped(&db).await.expect("probe"));

    let query = stamp_statement(db.get_database_backend());
    let transaction = db.begin().await.expect("begin");
    let plan: Vec<String> = match backend {
        // The plans the relay's connections run: the first ones made for the values given,
        // later a generic one kept for the prepared statement; both with sequential scans off.
        Backend::Postgres => {
            transaction
                .execute_unprepared(&format!(
                    "{}; PREPARE stamp(bigint, bigint) AS {query}",
                    messaging_outbox::store::SEQUENTIAL_SCANS_OFF
                ))
                .await
                .expect("prepare");
            let mut plan = Vec::new();
            for mode in ["force_custom_plan", "force_generic_plan"] {
                transaction
                    .execute_unprepared(&format!("SET LOCAL plan_cache_mode = {mode}"))
                    .await
                    .expect("set");
                let lines = transaction
                    .query_all_raw(Statement::from_string(
                        db.get_database_backend(),
                        "EXPLAIN EXECUTE stamp(2005, 500)",
                    ))
                    .await
                    .expect("explain")
                    .iter()
                    .map(|row| row.try_get_by_index::<String>(0).expect("plan line"))
                    .collect::<Vec<_>>();
                assert!(
                    lines.join("\n").contains("events_unstamped"),
                    "{mode}: not by the index:\n{}",
                    lines.join("\n")
                );
                plan.extend(lines);
            }
            plan
        }
        Backend::Sqlite => transaction
            .query_all_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                format!("EXPLAIN QUERY PLAN {query}"),
                [2_005_i64.into(), 500_i64.into()],
            ))
            .await
            .expect("explain")
            .iter()
            .map(|row| row.try_get::<String>("", "detail").expect("plan line"))
            .collect(),
    };
    transaction.rollback().await.expect("rollback");
    let plan = plan.join("\n");
    // SQLite may as well look the NULLs up in the unique index of positions: its rows do not
    // linger after an update.
    assert!(
        !plan.contains("Seq Scan on events") && !plan.contains("SCAN events"),
        "the whole outbox read:\n{plan}"
    );
    assert_eq!(stamp_all(&db).await.expect("stamp"), 3);
    let positions: Vec<Option<i64>> = event::Entity::find()
        .order_by_asc(event::Column::Id)
        .all(&db)
        .await
        .expect("events")
        .into_iter()
        .map(|row| row.position)
        .collect();
    assert_eq!(
        positions,
        (1..=2_008).map(Some).collect::<Vec<_>>(),
        "every event stamped once, in order"
    );
}

/// Sends written together (PostgreSQL takes each table's rows of a batch as one JSON
/// parameter) keep every value exactly: quotes, backslashes, `\x` sequences, placeholders and
/// non-ASCII text, metadata and mentions, every byte value of an end-to-end payload and its
/// tokens, a reply's root, times to the microsecond; with encryption at rest and without.
async fn sent_values_come_back_exactly_sealed_or_in_plaintext(backend: Backend) {
    let tricky = [
        "quotes ' \" and backslashes \\ \\x41 \\\\",
        "tab\tnewline\nend",
        "ünïcødé 漢字 emoji 🎉",
        "{\"json\": [1, 2], \"$1\": null}",
        "placeholders $1 ? %s :name",
    ];
    for encrypted in [true, false] {
        let database = TestDatabase::new(backend);
        let db = message_service::store::connect(&database.settings)
            .await
            .expect("connect");
        let settings = if encrypted {
            test_encryption()
        } else {
            message_service::store::keys::EncryptionSettings {
                enabled: Some(false),
                master_key: None,
                master_key_file: None,
            }
        };
        let keys = Keyring::open(&db, &settings, Mode::Production)
            .await
            .expect("keyring");
        let bus = EventBus::new(64).with_keys(Some(std::sync::Arc::new(keys.clone())));
        let store = SqlStore::new(db.clone(), keys, bus.clone());
        let conversation = Uuid::now_v7();
        let root = send(&store, &TENANT, "alice", &text(conversation, "root")).await;
        let mut news = Vec::new();
        for (index, body) in tricky.iter().enumerate() {
            let mut new = text(conversation, body);
            new.mentions = vec!["bob".to_owned(), "o'neil \\ 🎉".to_owned()];
            new.metadata
                .insert(format!("key \"{index}\" '\\"), format!("value\n{body}"));
            new.request_id = Some(messaging_platform::RequestId::trusted(format!(
                "request '{index}' \\"
            )));
            if index % 2 == 0 {
                new.parent = Some(root.id);
            }
            news.push(new);
        }
        let mut payload = text(conversation, "");
        payload.content = Some(Content::Encrypted {
            ciphertext: (0..=255).collect(),
            algorithm: "x-\\alg'\"".to_owned(),
            key_id: "key \\x00".to_owned(),
        });
        payload.search_tokens = vec![vec![0, 0x5c, 0x27, 0xff], (0..=255).rev().collect()];
        news.push(payload);
        let sent =
            futures::future::join_all(news.iter().map(|new| send(&store, &TENANT, "alice", new)))
                .await;
        let mut sequences: Vec<i64> = sent.iter().map(|message| message.sequence).collect();
        sequences.sort_unstable();
        assert_eq!(
            sequences,
            (2..=7).collect::<Vec<_>>(),
            "encrypted at rest: {encrypted}"
        );
        for (new, message) in news.iter().zip(&sent) {
            assert_eq!(message.content, new.content);
            assert_eq!(message.mentions, new.mentions);
            assert_eq!(message.metadata, new.metadata);
            assert_eq!(message.request_id, new.request_id);
            assert_eq!(message.parent, new.parent);
            assert_eq!(
                message.created_at.timestamp_subsec_nanos() % 1_000,
                0,
                "times are kept to the microsecond"
            );
            let stored = store
                .message(&TENANT, conversation, message.id)
                .await
                .expect("read")
                .expect("found");
            assert_eq!(&stored, message, "encrypted at rest: {encrypted}");
        }
        let replies = store
            .message(&TENANT, conversation, root.id)
            .await
            .expect("read")
            .expect("found")
            .reply_count;
        assert_eq!(replies, 3);
        // The search index holds each text's words and the payload's tokens.
        let found = |terms: Vec<String>, client_tokens: Vec<Vec<u8>>| {
            let store = &store;
            async move {
                store
                    .search(
                        &TENANT,
                        &SearchQuery {
                            terms,
                            client_tokens,
                            conversations: vec![conversation],
                            filter: MessageFilter::default(),
                            after: None,
                            limit: 10,
                        },
                        Duration::from_secs(10),
                    )
                    .await
                    .expect("search")
                    .expect("in time")
                    .into_iter()
                    .map(|hit| hit.message_id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            found(
                message_service::domain::text::query_terms("ünïcødé 漢字"),
                Vec::new()
            )
            .await,
            [sent[2].id]
        );
        assert_eq!(
            found(Vec::new(), vec![(0..=255).rev().collect()]).await,
            [sent[5].id]
        );
        // One event per message, in sequence order within the conversation.
        messaging_outbox::store::stamp_all(&db)
            .await
            .expect("stamp");
        let events = event::Entity::find()
            .order_by_asc(event::Column::Position)
            .all(&db)
            .await
            .expect("events");
        let mut created = Vec::new();
        for row in &events {
            let bus_event = messaging_outbox::decode(&bus, row).await.expect("decodes");
            if let Some(pb::event::Payload::MessageCreated(created_event)) = bus_event.event.payload
            {
                created.push(created_event.message.unwrap_or_default().sequence);
            }
        }
        assert_eq!(
            created,
            (1..=7).collect::<Vec<_>>(),
            "encrypted at rest: {encrypted}"
        );
    }
}

/// The relays of two replicas on one database, taking turns with each other and with a
/// transaction that stamps its own events: each hands every event to its bus exactly once, in
/// position order (what a relay stamped itself goes out as the stamp returned it; what others
/// stamped is read back). NATS publishing takes what the relay just handed out when it follows
/// the mark without a gap, and reads the rest: the batches it is given are always the
/// positions right after the mark.
async fn relays_of_two_replicas_each_hand_out_every_event_once_in_order(backend: Backend) {
    use messaging_outbox::store::{insert_events, publish_pending, stamp_all};
    let Fixture { db, _database, .. } = fixture(backend).await;
    let conversation = Uuid::now_v7();
    let events = |count| outbox_events(conversation, count);
    let buses = [EventBus::new(4_096), EventBus::new(4_096)];
    let mut receivers = buses.each_ref().map(EventBus::subscribe);
    let mut published = [0_i64, 0];
    let mut recent = [Vec::new(), Vec::new()];
    let mut total = 0_i64;
    for round in 0..6_usize {
        let replica = round % 2;
        insert_events(&db, events(3 + round)).await.expect("insert");
        total += i64::try_from(3 + round).expect("small");
        if round % 3 == 2 {
            // A transaction that stamps its own events before either relay runs.
            insert_events(&db, events(2)).await.expect("insert");
            stamp_all(&db).await.expect("stamp");
            total += 2;
        }
        recent[replica] =
            messaging_outbox::relay_once(&db, &buses[replica], &mut published[replica], true)
                .await
                .expect("relay");
        assert_eq!(published[replica], total, "round {round}");
        // The relay's NATS step: each batch starts right after the mark.
        let given = std::sync::Mutex::new(Vec::new());
        while publish_pending(&db, &buses[replica], 4, &recent[replica], |rows| {
            given.lock().expect("lock").push(
                rows.iter()
                    .map(|(row, event)| {
                        assert_eq!(event.position, row.position);
                        row.position.expect("stamped")
                    })
                    .collect::<Vec<_>>(),
            );
            async { Ok(()) }
        })
        .await
        .expect("publish")
            > 0
        {}
        let given = given.into_inner().expect("lock").concat();
        let mark = messaging_outbox::store::relay_state_full(&db)
            .await
            .expect("state")
            .nats_published_through;
        assert_eq!(mark, total, "round {round}");
        assert_eq!(
            given,
            (given.first().copied().unwrap_or(1)..=total).collect::<Vec<_>>(),
            "round {round}: NATS got the positions after the mark in order"
        );
    }
    // The other replica catches up on what the first stamped last.
    messaging_outbox::relay_once(&db, &buses[0], &mut published[0], false)
        .await
        .expect("relay");
    for receiver in &mut receivers {
        let mut positions = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            positions.push(event.position.expect("stamped"));
        }
        assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    }
}
