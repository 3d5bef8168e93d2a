//! The conversation store conformance suite: the same tests against SQLite and PostgreSQL,
//! through conversation-service's store traits only (`ConversationStore`, `ConversationTx`,
//! `ConversationReads`). What a use case may rely on from any store: a change commits whole or
//! not at all, unique keys conflict, participants and roles, listings by membership, kind and
//! archived state with keyset pages, purging, the event head, tenant isolation, and corrupt
//! rows reported as such.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use conversation_service::domain::{
    AuditAction, Conversation, ConversationEvent, Kind, Participant, Role,
};
use conversation_service::store::{
    Archived, ConversationFilter, ConversationKey, ConversationStore, Membership, SqlStore,
    StoreError,
};
use messaging_e2e::{Backend, TestDatabase, backend_tests};
use messaging_platform::{TenantId, UserId};
use uuid::Uuid;

backend_tests!(
    a_change_commits_whole_or_not_at_all,
    unique_keys_conflict_within_a_tenant_only,
    participants_roles_and_removal,
    listings_follow_membership_kind_archive_and_delete,
    saves_purges_and_the_event_head,
    corrupt_rows_are_reported_not_guessed,
);

static TENANT: LazyLock<TenantId> = LazyLock::new(|| TenantId::trusted("acme"));
static OTHER: LazyLock<TenantId> = LazyLock::new(|| TenantId::trusted("globex"));

fn user(name: &str) -> UserId {
    UserId::trusted(name)
}

struct Fixture {
    store: Arc<dyn ConversationStore>,
    db: sea_orm::DatabaseConnection,
    /// Bind it for the whole test: dropping it removes the schema or file.
    _database: TestDatabase,
}

async fn fixture(backend: Backend) -> Fixture {
    let database = TestDatabase::new(backend);
    let db = conversation_service::store::connect(&database.settings)
        .await
        .expect("connect");
    Fixture {
        store: Arc::new(SqlStore::new(db.clone())),
        db,
        _database: database,
    }
}

fn conversation(tenant: &TenantId, kind: Kind, title: &str, at: DateTime<Utc>) -> Conversation {
    Conversation {
        id: Uuid::now_v7(),
        tenant_id: tenant.to_string(),
        kind,
        title: title.to_owned(),
        description: String::new(),
        direct_key: None,
        create_request_id: None,
        create_request_hash: None,
        creator_id: "alice".to_owned(),
        created_at: at,
        updater_id: "alice".to_owned(),
        updated_at: at,
        last_activity_at: at,
        archived_at: None,
        archiver_id: None,
        deleted_at: None,
        deleter_id: None,
        participant_count: 1,
        version: 1,
    }
}

/// Creates `conversation` with `members` (the first is the owner) in one change.
async fn create(store: &dyn ConversationStore, conversation: &Conversation, members: &[&str]) {
    let at = conversation.created_at;
    let participants: Vec<Participant> = members
        .iter()
        .enumerate()
        .map(|(index, member)| {
            let role = if index == 0 {
                Role::Owner
            } else {
                Role::Member
            };
            Participant::new(conversation, member, role, "alice", at)
        })
        .collect();
    let change = store.begin().await.expect("begin");
    change
        .insert_conversation(conversation)
        .await
        .expect("insert");
    change
        .insert_participants(&participants)
        .await
        .expect("participants");
    change.commit().await.expect("commit");
}

fn ids(conversations: &[Conversation]) -> Vec<Uuid> {
    conversations
        .iter()
        .map(|conversation| conversation.id)
        .collect()
}

async fn a_change_commits_whole_or_not_at_all(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let at = messaging_platform::time::now();
    let group = conversation(&TENANT, Kind::Group, "Team", at);
    let owner = Participant::new(&group, "alice", Role::Owner, "alice", at);
    {
        let change = store.begin().await.expect("begin");
        change.insert_conversation(&group).await.expect("insert");
        change
            .insert_participants(std::slice::from_ref(&owner))
            .await
            .expect("participants");
        let seen = change
            .conversation(&TENANT, group.id, false)
            .await
            .expect("read");
        assert_eq!(seen.as_ref(), Some(&group), "a change reads its own writes");
        // Dropped without commit.
    }
    assert!(
        store
            .conversation(&TENANT, group.id, false)
            .await
            .expect("read")
            .is_none(),
        "an uncommitted change leaves nothing"
    );
    let change = store.begin().await.expect("begin");
    change.insert_conversation(&group).await.expect("insert");
    change
        .insert_participants(std::slice::from_ref(&owner))
        .await
        .expect("participants");
    change
        .audit(
            &group,
            &user("alice"),
            AuditAction::Created,
            None,
            serde_json::json!({}),
            at,
        )
        .await
        .expect("audit");
    let created = ConversationEvent::Created {
        title: &group.title,
        participants: vec![("alice", Role::Owner)],
    };
    change
        .event(&group, &user("alice"), at, &created)
        .await
        .expect("event");
    change.commit().await.expect("commit");
    assert_eq!(
        store
            .conversation(&TENANT, group.id, true)
            .await
            .expect("read"),
        Some(group.clone())
    );
    assert_eq!(
        store
            .participant(&TENANT, group.id, "alice")
            .await
            .expect("read"),
        Some(owner)
    );
    assert_eq!(
        store.participant_ids(&TENANT, group.id).await.expect("ids"),
        ["alice"]
    );
    assert!(
        store
            .conversation(&OTHER, group.id, false)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .participant(&OTHER, group.id, "alice")
            .await
            .expect("read")
            .is_none()
    );
}

async fn unique_keys_conflict_within_a_tenant_only(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let at = messaging_platform::time::now();
    let direct = |tenant: &TenantId| Conversation {
        direct_key: Some(conversation_service::domain::direct_key("alice", "bob")),
        create_request_id: Some(messaging_platform::RequestId::trusted("request-1")),
        ..conversation(tenant, Kind::Direct, "", at)
    };
    let first = direct(&TENANT);
    create(store.as_ref(), &first, &["alice", "bob"]).await;
    let change = store.begin().await.expect("begin");
    let taken = change
        .insert_conversation(&direct(&TENANT))
        .await
        .expect_err("the pair is taken");
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
    drop(change);
    create(store.as_ref(), &direct(&OTHER), &["alice", "bob"]).await;
    let by_pair = store
        .conversation_by(
            &TENANT,
            ConversationKey::Direct(&conversation_service::domain::direct_key("alice", "bob")),
        )
        .await
        .expect("read");
    assert_eq!(by_pair.map(|found| found.id), Some(first.id));
    let by_request = store
        .conversation_by(
            &TENANT,
            ConversationKey::Request {
                creator: "alice",
                request_id: "request-1",
            },
        )
        .await
        .expect("read");
    assert_eq!(by_request.map(|found| found.id), Some(first.id));
    assert!(
        store
            .conversation_by(
                &TENANT,
                ConversationKey::Request {
                    creator: "bob",
                    request_id: "request-1",
                },
            )
            .await
            .expect("read")
            .is_none(),
        "request ids are the creator's"
    );
}

async fn participants_roles_and_removal(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let at = messaging_platform::time::now();
    let group = conversation(&TENANT, Kind::Group, "Team", at);
    create(store.as_ref(), &group, &["alice", "bob", "carol", "dave"]).await;
    let owner = store
        .participant_with_role(&TENANT, group.id, Role::Owner)
        .await
        .expect("read")
        .expect("an owner");
    assert_eq!(owner.user_id, "alice");
    let bob = store
        .participant(&TENANT, group.id, "bob")
        .await
        .expect("read")
        .expect("bob");
    let change = store.begin().await.expect("begin");
    let later = at + chrono::Duration::seconds(1);
    let promoted = change
        .set_role(&bob, Role::Admin, &user("alice"), later)
        .await
        .expect("role");
    assert_eq!(
        (
            promoted.role,
            promoted.role_updater_id.as_str(),
            promoted.role_updated_at
        ),
        (Role::Admin, "alice", later)
    );
    let carol = Participant::new(&group, "carol", Role::Member, "alice", at);
    change.delete_participant(&carol).await.expect("delete");
    change.commit().await.expect("commit");
    let members = store
        .participants(&TENANT, group.id, &[Role::Member], None, 10)
        .await
        .expect("list");
    assert_eq!(
        members
            .iter()
            .map(|participant| participant.user_id.as_str())
            .collect::<Vec<_>>(),
        ["dave"]
    );
    let first_page = store
        .participants(&TENANT, group.id, &[], None, 2)
        .await
        .expect("list");
    assert_eq!(first_page.len(), 2);
    let last = &first_page[1];
    let rest = store
        .participants(
            &TENANT,
            group.id,
            &[],
            Some((last.joined_at, last.user_id.clone())),
            10,
        )
        .await
        .expect("list");
    let mut everyone: Vec<String> = first_page
        .iter()
        .chain(&rest)
        .map(|participant| participant.user_id.clone())
        .collect();
    everyone.sort();
    assert_eq!(everyone, ["alice", "bob", "dave"]);
    let roles = store
        .roles_of(&TENANT, &user("bob"), &[group.id, Uuid::now_v7()])
        .await
        .expect("roles");
    assert_eq!(
        roles
            .iter()
            .map(|participant| participant.role)
            .collect::<Vec<_>>(),
        [Role::Admin]
    );
    assert!(
        store
            .roles_of(&OTHER, &user("bob"), &[group.id])
            .await
            .expect("roles")
            .is_empty()
    );
    assert!(
        store
            .participants(&OTHER, group.id, &[], None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

async fn listings_follow_membership_kind_archive_and_delete(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let start = messaging_platform::time::now();
    let at = |seconds: i64| start + chrono::Duration::seconds(seconds);
    let group = conversation(&TENANT, Kind::Group, "Group", at(1));
    let channel = conversation(&TENANT, Kind::Channel, "Channel", at(2));
    let other_channel = conversation(&TENANT, Kind::Channel, "Open", at(3));
    let archived = Conversation {
        archived_at: Some(at(4)),
        ..conversation(&TENANT, Kind::Group, "Old", at(4))
    };
    let deleted = Conversation {
        deleted_at: Some(at(5)),
        ..conversation(&TENANT, Kind::Group, "Gone", at(5))
    };
    let elsewhere = conversation(&OTHER, Kind::Channel, "Theirs", at(6));
    create(store.as_ref(), &group, &["alice", "bob"]).await;
    create(store.as_ref(), &channel, &["alice", "bob"]).await;
    create(store.as_ref(), &other_channel, &["carol"]).await;
    create(store.as_ref(), &archived, &["alice", "bob"]).await;
    create(store.as_ref(), &deleted, &["alice", "bob"]).await;
    create(store.as_ref(), &elsewhere, &["bob"]).await;
    let filter = |membership, archived, kinds: &[Kind]| ConversationFilter {
        kinds: kinds.to_vec(),
        membership,
        archived,
    };
    let bob = user("bob");
    let list = |filter: ConversationFilter| {
        let store = store.clone();
        let bob = bob.clone();
        async move {
            ids(&store
                .conversations(&TENANT, &bob, &filter, None, 10)
                .await
                .expect("list"))
        }
    };
    assert_eq!(
        list(filter(Membership::Joined, Archived::Active, &[])).await,
        [channel.id, group.id],
        "newest activity first; archived, deleted and other tenants' left out"
    );
    assert_eq!(
        list(filter(Membership::Joinable, Archived::Active, &[])).await,
        [other_channel.id]
    );
    assert_eq!(
        list(filter(Membership::All, Archived::Active, &[])).await,
        [other_channel.id, channel.id, group.id]
    );
    assert_eq!(
        list(filter(Membership::Joined, Archived::Archived, &[])).await,
        [archived.id]
    );
    assert_eq!(
        list(filter(Membership::Joined, Archived::All, &[Kind::Group])).await,
        [archived.id, group.id]
    );
    let first = store
        .conversations(
            &TENANT,
            &bob,
            &filter(Membership::All, Archived::All, &[]),
            None,
            2,
        )
        .await
        .expect("list");
    let last = &first[1];
    let rest = store
        .conversations(
            &TENANT,
            &bob,
            &filter(Membership::All, Archived::All, &[]),
            Some((last.last_activity_at, last.id)),
            10,
        )
        .await
        .expect("list");
    assert_eq!(ids(&first), [archived.id, other_channel.id]);
    assert_eq!(ids(&rest), [channel.id, group.id]);
}

async fn saves_purges_and_the_event_head(backend: Backend) {
    let Fixture {
        store, _database, ..
    } = fixture(backend).await;
    let at = messaging_platform::time::now();
    let group = conversation(&TENANT, Kind::Group, "Team", at);
    create(store.as_ref(), &group, &["alice"]).await;
    let (head, _) = store.event_head().await.expect("head");
    let mut renamed = group.clone();
    renamed.title = "Renamed".to_owned();
    renamed.touch("bob", at + chrono::Duration::seconds(1));
    let change = store.begin().await.expect("begin");
    let saved = change.save_conversation(&renamed).await.expect("save");
    assert_eq!(saved, renamed);
    assert_eq!((saved.version, saved.updater_id.as_str()), (2, "bob"));
    let updated = ConversationEvent::Updated {
        title: &saved.title,
        archived: false,
    };
    change
        .event(&saved, &user("bob"), at, &updated)
        .await
        .expect("event");
    change.commit().await.expect("commit");
    let (after, stamped) = store.event_head().await.expect("head");
    assert_eq!(after, head + 1, "the head counts the committed event");
    assert!(stamped);
    let (again, stamped) = store.event_head().await.expect("head");
    assert_eq!((again, stamped), (after, false), "nothing left to stamp");

    let mut gone = saved;
    gone.deleted_at = Some(at);
    let change = store.begin().await.expect("begin");
    change.save_conversation(&gone).await.expect("save");
    change.commit().await.expect("commit");
    let change = store.begin().await.expect("begin");
    let kept = change
        .purge_deleted(at - chrono::Duration::seconds(1), 10)
        .await
        .expect("purge");
    change.commit().await.expect("commit");
    assert!(kept.is_empty(), "deleted after the cut-off: kept");
    let change = store.begin().await.expect("begin");
    let purged = change
        .purge_deleted(at + chrono::Duration::seconds(1), 10)
        .await
        .expect("purge");
    change.commit().await.expect("commit");
    assert_eq!(
        purged.iter().map(|row| row.id).collect::<Vec<_>>(),
        vec![group.id]
    );
    assert!(
        store
            .conversation(&TENANT, group.id, false)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .participant_ids(&TENANT, group.id)
            .await
            .expect("ids")
            .is_empty(),
        "participants go with it"
    );
}

async fn corrupt_rows_are_reported_not_guessed(backend: Backend) {
    let Fixture {
        store,
        db,
        _database,
    } = fixture(backend).await;
    let at = messaging_platform::time::now();
    let group = conversation(&TENANT, Kind::Group, "Team", at);
    let mut row = conversation_service::store::rows::conversation_row(&group);
    row.kind = "bogus".to_owned();
    conversation_service::store::queries::insert_conversation(&db, row.clone())
        .await
        .expect("raw insert");
    let read = store
        .conversation(&TENANT, group.id, false)
        .await
        .expect_err("an unknown kind");
    assert!(matches!(read, StoreError::Corrupt(_)), "{read:?}");
    row.kind = "group".to_owned();
    conversation_service::store::queries::save_conversation(&db, row)
        .await
        .expect("repair");
    let mut participant = conversation_service::store::rows::participant_row(&Participant::new(
        &group,
        "bob",
        Role::Member,
        "alice",
        at,
    ));
    participant.role = "emperor".to_owned();
    conversation_service::store::queries::insert_participants(&db, vec![participant])
        .await
        .expect("raw insert");
    let read = store
        .participant(&TENANT, group.id, "bob")
        .await
        .expect_err("an unknown role");
    assert!(matches!(read, StoreError::Corrupt(_)), "{read:?}");
}
