//! The use cases of conversation-service: each loads what it needs inside one transaction,
//! applies the rules of [`crate::domain`], writes the change with its audit row and commits.
//! Inputs arrive validated (ids parsed, lengths checked) from the gRPC adapter.

use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_platform::pagination;
use messaging_platform::time::now;
use messaging_platform::{ApiError, ApiResult, Caller};
use sea_orm::{DatabaseConnection, DbErr};
use serde_json::json;
use uuid::Uuid;

use messaging_platform::outbox::EventBus;
use messaging_proto::message::v1::event::Payload;
use messaging_proto::message::v1::{ConversationChanged, ParticipantChanged};
use sea_orm::ConnectionTrait;

use crate::domain::permissions::{self, Action, Denial};
use crate::domain::{self, Kind, Role};
use crate::store::{self, ConversationFilter, ConversationKey, ConversationRow, ParticipantRow};

/// Limits and windows the use cases enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long a deleted conversation can be restored.
    pub undelete_window: Duration,
    /// Most participants in one conversation.
    pub max_participants: u32,
}

/// A conversation as one caller sees it.
#[derive(Debug, Clone)]
pub struct ConversationView {
    /// The stored row.
    pub row: ConversationRow,
    /// The caller's role, if a participant.
    pub caller_role: Option<Role>,
    /// For deleted conversations: when they will be purged.
    pub purge_time: Option<DateTime<Utc>>,
}

/// A new conversation's parameters.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// Its kind.
    pub kind: Kind,
    /// Validated title.
    pub title: String,
    /// Validated description.
    pub description: String,
    /// The other participants with their roles (validated, no duplicates, not the caller).
    pub participants: Vec<(String, Role)>,
    /// The creator's idempotency key.
    pub request_id: Option<String>,
}

impl NewConversation {
    /// The fingerprint of the request, for the idempotency rule.
    fn fingerprint(&self) -> String {
        let mut participants: Vec<String> = self
            .participants
            .iter()
            .map(|(user, role)| format!("{user}\u{0}{}", role.as_str()))
            .collect();
        participants.sort();
        let participants = participants.join("\u{1}");
        messaging_platform::idempotency::fingerprint([
            self.kind.as_str().as_bytes(),
            self.title.as_bytes(),
            self.description.as_bytes(),
            participants.as_bytes(),
        ])
    }
}

/// A conversation listing request.
#[derive(Debug, Clone)]
pub struct ListRequest {
    /// The filters.
    pub filter: ConversationFilter,
    /// Page size.
    pub page_size: u64,
    /// The page token as received.
    pub page_token: String,
}

/// The answer of CheckPermission.
#[derive(Debug, Clone)]
pub struct PermissionAnswer {
    /// The user's role, if a participant.
    pub role: Option<Role>,
    /// Why not, if denied.
    pub denial: Option<Denial>,
    /// The conversation's kind.
    pub kind: Kind,
    /// Whether it is archived.
    pub archived: bool,
}

/// The conversation use cases over one database.
#[derive(Debug, Clone)]
pub struct Conversations {
    db: DatabaseConnection,
    policy: Policy,
    bus: EventBus,
}

/// A conversation loaded for a caller: the row, the caller's participation and the authority
/// the caller acts with (a tenant administrator acts as an owner).
struct Loaded {
    row: ConversationRow,
    kind: Kind,
    participant: Option<ParticipantRow>,
    authority: Option<Role>,
}

impl Loaded {
    fn caller_role(&self) -> ApiResult<Option<Role>> {
        self.participant
            .as_ref()
            .map(ParticipantRow::role)
            .transpose()
    }

    fn authorize(&self, action: Action) -> ApiResult<()> {
        let archived = self.row.archived_at.is_some();
        permissions::check(self.kind, archived, self.authority, action).map_err(|denial| {
            match denial {
                Denial::NotParticipant => {
                    ApiError::PermissionDenied("join the conversation first".to_owned())
                }
                Denial::RoleInsufficient => {
                    let required = permissions::required_role(self.kind, action)
                        .map_or("a higher role", Role::as_str);
                    ApiError::PermissionDenied(format!("requires the {required} role or higher"))
                }
                Denial::Archived => ApiError::FailedPrecondition(
                    "the conversation is archived: unarchive it first".to_owned(),
                ),
                Denial::NotSupported => ApiError::FailedPrecondition(format!(
                    "not supported for {} conversations",
                    self.kind.as_str()
                )),
            }
        })
    }

    fn view(self, purge_time: Option<DateTime<Utc>>) -> ApiResult<ConversationView> {
        let caller_role = self.caller_role()?;
        Ok(ConversationView {
            row: self.row,
            caller_role,
            purge_time,
        })
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("conversation")
}

/// Writes a change's event into the outbox, in the change's transaction (see
/// `messaging_platform::outbox`): the relay then publishes it to WatchEvents streams and NATS.
async fn emit<C: ConnectionTrait>(
    connection: &C,
    row: &ConversationRow,
    actor: &str,
    at: DateTime<Utc>,
    payload: Payload,
) -> Result<(), DbErr> {
    messaging_platform::outbox::store::record(
        connection,
        None,
        &row.tenant_id,
        row.id,
        actor,
        at,
        payload,
    )
    .await
}

fn conversation_changed(row: &ConversationRow) -> ConversationChanged {
    ConversationChanged {
        title: row.title.clone(),
        archived: row.archived_at.is_some(),
        participants: Vec::new(),
    }
}

/// A participant event's payload; `role` is `None` once removed.
fn participant_changed(user: &str, role: Option<Role>) -> ParticipantChanged {
    ParticipantChanged {
        user_id: user.to_owned(),
        role: role
            .map(|role| format!("ROLE_{}", role.as_str().to_ascii_uppercase()))
            .unwrap_or_default(),
    }
}

/// Marks a row as changed by `actor` at `at` (new etag, newest activity).
fn touch(row: &mut ConversationRow, actor: &str, at: DateTime<Utc>) {
    row.updater_id = actor.to_owned();
    row.updated_at = at;
    row.last_activity_at = at;
    row.version += 1;
}

fn new_participant(
    row: &ConversationRow,
    user: &str,
    role: Role,
    inviter: &str,
    at: DateTime<Utc>,
) -> ParticipantRow {
    ParticipantRow {
        tenant_id: row.tenant_id.clone(),
        conversation_id: row.id,
        user_id: user.to_owned(),
        role: role.as_str().to_owned(),
        joined_at: at,
        inviter_id: inviter.to_owned(),
        role_updated_at: at,
        role_updater_id: inviter.to_owned(),
    }
}

impl Conversations {
    /// The use cases over `db` with `policy`.
    pub fn new(db: DatabaseConnection, policy: Policy, bus: EventBus) -> Self {
        Self { db, policy, bus }
    }

    /// The database, for event streams.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The in-process event bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.policy.undelete_window).unwrap_or(chrono::Duration::MAX)
    }

    /// Loads a live conversation visible to the caller, or NOT_FOUND.
    async fn load<C: sea_orm::ConnectionTrait>(
        &self,
        connection: &C,
        caller: &Caller,
        id: Uuid,
        lock: bool,
    ) -> ApiResult<Loaded> {
        let row = store::find_conversation(connection, &caller.tenant_id, id, lock)
            .await?
            .filter(|row| row.deleted_at.is_none())
            .ok_or_else(not_found)?;
        self.load_row(connection, caller, row).await
    }

    async fn load_row<C: sea_orm::ConnectionTrait>(
        &self,
        connection: &C,
        caller: &Caller,
        row: ConversationRow,
    ) -> ApiResult<Loaded> {
        let kind = row.kind()?;
        let participant =
            store::find_participant(connection, &caller.tenant_id, row.id, &caller.user_id).await?;
        let role = participant.as_ref().map(ParticipantRow::role).transpose()?;
        let visible = role.is_some() || kind == Kind::Channel || caller.is_admin;
        if !visible {
            return Err(not_found());
        }
        let authority = if caller.is_admin {
            Some(Role::Owner)
        } else {
            role
        };
        Ok(Loaded {
            row,
            kind,
            participant,
            authority,
        })
    }

    /// CreateConversation.
    pub async fn create(
        &self,
        caller: &Caller,
        new: NewConversation,
    ) -> ApiResult<(ConversationView, bool)> {
        let tenant = caller.tenant_id.as_str();
        let direct_key = match (new.kind, new.participants.first()) {
            (Kind::Direct, Some((other, _))) => Some(domain::direct_key(&caller.user_id, other)),
            _ => None,
        };
        if let Some(existing) = self
            .find_existing(caller, &new, direct_key.as_deref())
            .await?
        {
            return Ok((existing, false));
        }
        let max = usize::try_from(self.policy.max_participants).unwrap_or(usize::MAX);
        if new.participants.len() + 1 > max {
            return Err(ApiError::ResourceExhausted(format!(
                "a conversation has at most {max} participants"
            )));
        }

        let at = now();
        let creator_role = if new.kind == Kind::Direct {
            Role::Member
        } else {
            Role::Owner
        };
        let row = ConversationRow {
            id: Uuid::now_v7(),
            tenant_id: tenant.to_owned(),
            kind: new.kind.as_str().to_owned(),
            title: new.title.clone(),
            description: new.description.clone(),
            direct_key: direct_key.clone(),
            create_request_id: new.request_id.clone(),
            create_request_hash: new.request_id.as_ref().map(|_| new.fingerprint()),
            creator_id: caller.user_id.clone(),
            created_at: at,
            updater_id: caller.user_id.clone(),
            updated_at: at,
            last_activity_at: at,
            archived_at: None,
            archiver_id: None,
            deleted_at: None,
            deleter_id: None,
            participant_count: i32::try_from(new.participants.len() + 1).unwrap_or(i32::MAX),
            version: 1,
        };
        let mut participants = vec![new_participant(
            &row,
            &caller.user_id,
            creator_role,
            &caller.user_id,
            at,
        )];
        for (user, role) in &new.participants {
            let role = if new.kind == Kind::Direct {
                Role::Member
            } else {
                *role
            };
            participants.push(new_participant(&row, user, role, &caller.user_id, at));
        }

        let result: Result<(), DbErr> = async {
            let transaction = messaging_platform::db::begin_write(&self.db).await?;
            store::insert_conversation(&transaction, row.clone()).await?;
            store::insert_participants(&transaction, participants.clone()).await?;
            let details = json!({
                "kind": row.kind,
                "participants": new.participants.iter().map(|(user, _)| user).collect::<Vec<_>>(),
            });
            store::record_audit(
                &transaction,
                &row,
                &caller.user_id,
                "conversation.created",
                None,
                details,
                at,
            )
            .await?;
            emit(
                &transaction,
                &row,
                &caller.user_id,
                at,
                Payload::ConversationCreated(ConversationChanged {
                    participants: participants
                        .iter()
                        .map(|participant| {
                            participant_changed(
                                &participant.user_id,
                                Role::parse(&participant.role),
                            )
                        })
                        .collect(),
                    ..conversation_changed(&row)
                }),
            )
            .await?;
            for participant in &participants {
                let role = Role::parse(&participant.role);
                emit(
                    &transaction,
                    &row,
                    &caller.user_id,
                    at,
                    Payload::ParticipantAdded(participant_changed(&participant.user_id, role)),
                )
                .await?;
            }
            transaction.commit().await?;
            self.bus.committed();
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok((
                ConversationView {
                    row,
                    caller_role: Some(creator_role),
                    purge_time: None,
                },
                true,
            )),
            // A concurrent create with the same DIRECT pair or request id won the race.
            Err(error) if store::is_unique_violation(&error) => self
                .find_existing(caller, &new, direct_key.as_deref())
                .await?
                .map(|existing| (existing, false))
                .ok_or_else(|| ApiError::internal(error)),
            Err(error) => Err(error.into()),
        }
    }

    async fn find_existing(
        &self,
        caller: &Caller,
        new: &NewConversation,
        direct_key: Option<&str>,
    ) -> ApiResult<Option<ConversationView>> {
        let tenant = caller.tenant_id.as_str();
        let mut found = None;
        if let Some(request_id) = &new.request_id {
            let key = ConversationKey::Request {
                creator: &caller.user_id,
                request_id,
            };
            found = store::find_conversation_by(&self.db, tenant, key).await?;
            if let Some(row) = &found {
                messaging_platform::idempotency::replay(
                    row.create_request_hash.as_deref(),
                    &new.fingerprint(),
                    (),
                )?;
                if row.deleted_at.is_some() {
                    return Err(ApiError::FailedPrecondition(
                        "request_id was used for a conversation that has since been deleted"
                            .to_owned(),
                    ));
                }
            }
        }
        if found.is_none()
            && let Some(direct_key) = direct_key
        {
            found =
                store::find_conversation_by(&self.db, tenant, ConversationKey::Direct(direct_key))
                    .await?;
        }
        match found {
            Some(row) => Ok(Some(
                self.load_row(&self.db, caller, row).await?.view(None)?,
            )),
            None => Ok(None),
        }
    }

    /// GetConversation.
    pub async fn get(&self, caller: &Caller, id: Uuid) -> ApiResult<ConversationView> {
        self.load(&self.db, caller, id, false).await?.view(None)
    }

    /// ListConversations: a page of views and the next page token.
    pub async fn list(
        &self,
        caller: &Caller,
        request: &ListRequest,
    ) -> ApiResult<(Vec<ConversationView>, String)> {
        let filter = &request.filter;
        let mut kinds: Vec<&str> = filter.kinds.iter().map(|kind| kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let fingerprint = pagination::fingerprint(&[
            "conversations",
            &kinds.join(","),
            &format!("{:?}", filter.membership),
            &format!("{:?}", filter.archived),
        ]);
        let after: Option<(i64, Uuid)> =
            pagination::decode("page_token", &request.page_token, &fingerprint)?;
        let after = match after {
            Some((micros, id)) => Some((
                DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| ApiError::invalid("page_token", "is not a valid page token"))?,
                id,
            )),
            None => None,
        };
        let rows = store::list_conversations(
            &self.db,
            &caller.tenant_id,
            &caller.user_id,
            filter,
            after,
            request.page_size + 1,
        )
        .await?;
        let (rows, next) = pagination::finish(rows, request.page_size, &fingerprint, |last| {
            (last.last_activity_at.timestamp_micros(), last.id)
        });
        let roles = store::roles_of(
            &self.db,
            &caller.tenant_id,
            &caller.user_id,
            rows.iter().map(|row| row.id).collect(),
        )
        .await?;
        let views = rows
            .into_iter()
            .map(|row| {
                let caller_role = roles
                    .iter()
                    .find(|participant| participant.conversation_id == row.id)
                    .map(ParticipantRow::role)
                    .transpose()?;
                Ok(ConversationView {
                    row,
                    caller_role,
                    purge_time: None,
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok((views, next))
    }

    /// UpdateConversation: `None` leaves a field as it is.
    pub async fn update(
        &self,
        caller: &Caller,
        id: Uuid,
        title: Option<&str>,
        description: Option<String>,
        etag: Option<&str>,
    ) -> ApiResult<ConversationView> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        loaded.authorize(Action::Update)?;
        if let Some(etag) = etag
            && etag != loaded.row.version.to_string()
        {
            return Err(ApiError::Aborted(
                "the conversation changed since it was read (etag mismatch)".to_owned(),
            ));
        }
        if let Some(title) = title {
            loaded.row.title = domain::title("conversation.title", title, loaded.kind)
                .map_err(|violation| ApiError::InvalidArgument(vec![violation]))?;
        }
        if let Some(description) = description {
            loaded.row.description = description;
        }
        let at = now();
        touch(&mut loaded.row, &caller.user_id, at);
        let details = json!({"title": loaded.row.title, "description": loaded.row.description});
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            "conversation.updated",
            None,
            details,
            at,
        )
        .await?;
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ConversationUpdated(conversation_changed(&loaded.row)),
        )
        .await?;
        loaded.row = store::save_conversation(&transaction, loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        loaded.view(None)
    }

    /// ArchiveConversation (`archive`) and UnarchiveConversation; a no-op when already so.
    pub async fn set_archived(
        &self,
        caller: &Caller,
        id: Uuid,
        archive: bool,
    ) -> ApiResult<ConversationView> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        loaded.authorize(Action::Archive)?;
        if loaded.row.archived_at.is_some() == archive {
            return loaded.view(None);
        }
        let at = now();
        loaded.row.archived_at = archive.then_some(at);
        loaded.row.archiver_id = archive.then(|| caller.user_id.clone());
        touch(&mut loaded.row, &caller.user_id, at);
        let action = if archive {
            "conversation.archived"
        } else {
            "conversation.unarchived"
        };
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            action,
            None,
            json!({}),
            at,
        )
        .await?;
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ConversationArchived(conversation_changed(&loaded.row)),
        )
        .await?;
        loaded.row = store::save_conversation(&transaction, loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        loaded.view(None)
    }

    /// DeleteConversation: soft delete, restorable within the undelete window.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> ApiResult<ConversationView> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        loaded.authorize(Action::Delete)?;
        let at = now();
        loaded.row.deleted_at = Some(at);
        loaded.row.deleter_id = Some(caller.user_id.clone());
        // Frees the pair, so the two users can start a new DIRECT conversation meanwhile.
        loaded.row.direct_key = None;
        touch(&mut loaded.row, &caller.user_id, at);
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            "conversation.deleted",
            None,
            json!({}),
            at,
        )
        .await?;
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ConversationDeleted(conversation_changed(&loaded.row)),
        )
        .await?;
        loaded.row = store::save_conversation(&transaction, loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        let purge_time = at + self.window();
        loaded.view(Some(purge_time))
    }

    /// UndeleteConversation.
    pub async fn undelete(&self, caller: &Caller, id: Uuid) -> ApiResult<ConversationView> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let row = store::find_conversation(&transaction, &caller.tenant_id, id, true)
            .await?
            .ok_or_else(not_found)?;
        let at = now();
        let deleted_at = row.deleted_at;
        if deleted_at.is_some_and(|deleted_at| deleted_at + self.window() <= at) {
            return Err(not_found());
        }
        let mut loaded = self.load_row(&transaction, caller, row).await?;
        if deleted_at.is_none() {
            return Err(ApiError::FailedPrecondition(
                "the conversation is not deleted".to_owned(),
            ));
        }
        loaded.authorize(Action::Delete)?;
        if loaded.kind == Kind::Direct {
            let pair = store::participant_ids(&transaction, &caller.tenant_id, id).await?;
            if let [first, second] = pair.as_slice() {
                loaded.row.direct_key = Some(domain::direct_key(first, second));
            }
        }
        loaded.row.deleted_at = None;
        loaded.row.deleter_id = None;
        touch(&mut loaded.row, &caller.user_id, at);
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            "conversation.undeleted",
            None,
            json!({}),
            at,
        )
        .await?;
        // Restored: announced as an update, the conversation being readable again.
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ConversationUpdated(conversation_changed(&loaded.row)),
        )
        .await?;
        loaded.row = match store::save_conversation(&transaction, loaded.row).await {
            Err(error) if store::is_unique_violation(&error) => {
                return Err(ApiError::FailedPrecondition(
                    "a newer direct conversation between these users exists".to_owned(),
                ));
            }
            other => other?,
        };
        transaction.commit().await?;
        self.bus.committed();
        loaded.view(None)
    }

    /// AddParticipants: returns every requested user's participant row, in request order.
    pub async fn add_participants(
        &self,
        caller: &Caller,
        id: Uuid,
        specs: Vec<(String, Role)>,
    ) -> ApiResult<Vec<ParticipantRow>> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        loaded.authorize(Action::ManageParticipants)?;
        let authority = loaded.authority.unwrap_or(Role::Viewer);
        let at = now();
        let mut result = Vec::with_capacity(specs.len());
        let mut added = Vec::new();
        for (user, role) in &specs {
            match store::find_participant(&transaction, &caller.tenant_id, id, user).await? {
                Some(existing) => result.push(existing),
                None => {
                    if !permissions::may_manage(authority, None, Some(*role)) {
                        return Err(ApiError::PermissionDenied(format!(
                            "the {} role may not add participants as {}",
                            authority.as_str(),
                            role.as_str()
                        )));
                    }
                    let row = new_participant(&loaded.row, user, *role, &caller.user_id, at);
                    added.push(row.clone());
                    result.push(row);
                }
            }
        }
        if added.is_empty() {
            return Ok(result);
        }
        let total = i64::from(loaded.row.participant_count) + added.len() as i64;
        if total > i64::from(self.policy.max_participants) {
            return Err(ApiError::ResourceExhausted(format!(
                "a conversation has at most {} participants",
                self.policy.max_participants
            )));
        }
        loaded.row.participant_count = i32::try_from(total).unwrap_or(i32::MAX);
        touch(&mut loaded.row, &caller.user_id, at);
        for row in &added {
            store::record_audit(
                &transaction,
                &loaded.row,
                &caller.user_id,
                "participant.added",
                Some(&row.user_id),
                json!({"role": row.role}),
                at,
            )
            .await?;
            emit(
                &transaction,
                &loaded.row,
                &caller.user_id,
                at,
                Payload::ParticipantAdded(participant_changed(
                    &row.user_id,
                    Role::parse(&row.role),
                )),
            )
            .await?;
        }
        store::insert_participants(&transaction, added).await?;
        store::save_conversation(&transaction, loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        Ok(result)
    }

    /// RemoveParticipant; removing oneself is LeaveConversation.
    pub async fn remove_participant(
        &self,
        caller: &Caller,
        id: Uuid,
        user: &str,
    ) -> ApiResult<ConversationView> {
        if user == caller.user_id {
            return self.leave(caller, id).await;
        }
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        loaded.authorize(Action::ManageParticipants)?;
        let target = store::find_participant(&transaction, &caller.tenant_id, id, user)
            .await?
            .ok_or(ApiError::NotFound("participant"))?;
        let authority = loaded.authority.unwrap_or(Role::Viewer);
        if !permissions::may_manage(authority, Some(target.role()?), None) {
            return Err(ApiError::PermissionDenied(format!(
                "the {} role may not remove a participant with the {} role",
                authority.as_str(),
                target.role
            )));
        }
        let at = now();
        store::delete_participant(&transaction, &target).await?;
        loaded.row.participant_count -= 1;
        touch(&mut loaded.row, &caller.user_id, at);
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            "participant.removed",
            Some(user),
            json!({}),
            at,
        )
        .await?;
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ParticipantRemoved(participant_changed(user, None)),
        )
        .await?;
        loaded.row = store::save_conversation(&transaction, loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        loaded.view(None)
    }

    /// UpdateParticipantRole (`role` is ADMIN, MEMBER or VIEWER).
    pub async fn update_role(
        &self,
        caller: &Caller,
        id: Uuid,
        user: &str,
        role: Role,
    ) -> ApiResult<ParticipantRow> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        loaded.authorize(Action::ManageParticipants)?;
        let target = store::find_participant(&transaction, &caller.tenant_id, id, user)
            .await?
            .ok_or(ApiError::NotFound("participant"))?;
        let current = target.role()?;
        if current == role {
            return Ok(target);
        }
        let authority = loaded.authority.unwrap_or(Role::Viewer);
        if !permissions::may_manage(authority, Some(current), Some(role)) {
            return Err(ApiError::PermissionDenied(format!(
                "the {} role may not change a {} into a {}",
                authority.as_str(),
                current.as_str(),
                role.as_str()
            )));
        }
        let at = now();
        let updated = store::set_role(&transaction, &target, role, &caller.user_id, at).await?;
        touch(&mut loaded.row, &caller.user_id, at);
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            "participant.role_changed",
            Some(user),
            json!({"from": current.as_str(), "to": role.as_str()}),
            at,
        )
        .await?;
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ParticipantRoleChanged(participant_changed(user, Some(role))),
        )
        .await?;
        store::save_conversation(&transaction, loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        Ok(updated)
    }

    /// ListParticipants: a page and the next page token.
    pub async fn list_participants(
        &self,
        caller: &Caller,
        id: Uuid,
        roles: &[Role],
        page_size: u64,
        page_token: &str,
    ) -> ApiResult<(Vec<ParticipantRow>, String)> {
        let loaded = self.load(&self.db, caller, id, false).await?;
        let mut role_names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        role_names.sort_unstable();
        role_names.dedup();
        let fingerprint =
            pagination::fingerprint(&["participants", &id.to_string(), &role_names.join(",")]);
        let after: Option<(i64, String)> =
            pagination::decode("page_token", page_token, &fingerprint)?;
        let after = match after {
            Some((micros, user)) => Some((
                DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| ApiError::invalid("page_token", "is not a valid page token"))?,
                user,
            )),
            None => None,
        };
        let rows = store::list_participants(
            &self.db,
            &caller.tenant_id,
            loaded.row.id,
            roles,
            after,
            page_size + 1,
        )
        .await?;
        let (rows, next) = pagination::finish(rows, page_size, &fingerprint, |last| {
            (last.joined_at.timestamp_micros(), last.user_id.clone())
        });
        Ok((rows, next))
    }

    /// JoinConversation: channels only; idempotent.
    pub async fn join(&self, caller: &Caller, id: Uuid) -> ApiResult<ParticipantRow> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        if let Some(participant) = loaded.participant {
            return Ok(participant);
        }
        if loaded.kind != Kind::Channel {
            return Err(ApiError::FailedPrecondition(
                "only channels can be joined".to_owned(),
            ));
        }
        if loaded.row.archived_at.is_some() {
            return Err(ApiError::FailedPrecondition(
                "the conversation is archived: unarchive it first".to_owned(),
            ));
        }
        if loaded.row.participant_count
            >= i32::try_from(self.policy.max_participants).unwrap_or(i32::MAX)
        {
            return Err(ApiError::ResourceExhausted(format!(
                "a conversation has at most {} participants",
                self.policy.max_participants
            )));
        }
        let at = now();
        let row = new_participant(
            &loaded.row,
            &caller.user_id,
            Role::Member,
            &caller.user_id,
            at,
        );
        store::insert_participants(&transaction, vec![row.clone()]).await?;
        loaded.row.participant_count += 1;
        touch(&mut loaded.row, &caller.user_id, at);
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            "participant.joined",
            Some(&caller.user_id),
            json!({}),
            at,
        )
        .await?;
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ParticipantAdded(participant_changed(&caller.user_id, Some(Role::Member))),
        )
        .await?;
        store::save_conversation(&transaction, loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        Ok(row)
    }

    /// LeaveConversation: returns the conversation as it is after the caller left.
    pub async fn leave(&self, caller: &Caller, id: Uuid) -> ApiResult<ConversationView> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        let participant = loaded
            .participant
            .clone()
            .ok_or(ApiError::NotFound("participant"))?;
        if loaded.kind == Kind::Direct {
            return Err(ApiError::FailedPrecondition(
                "direct conversations cannot be left: archive or delete it".to_owned(),
            ));
        }
        if participant.role()? == Role::Owner {
            return Err(ApiError::FailedPrecondition(
                "the owner cannot leave: transfer ownership first (or delete the conversation)"
                    .to_owned(),
            ));
        }
        let at = now();
        store::delete_participant(&transaction, &participant).await?;
        loaded.row.participant_count -= 1;
        touch(&mut loaded.row, &caller.user_id, at);
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            "participant.left",
            Some(&caller.user_id),
            json!({}),
            at,
        )
        .await?;
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ParticipantRemoved(participant_changed(&caller.user_id, None)),
        )
        .await?;
        loaded.row = store::save_conversation(&transaction, loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        loaded.participant = None;
        loaded.view(None)
    }

    /// TransferOwnership: the new owner must participate; the old owner becomes ADMIN.
    pub async fn transfer_ownership(
        &self,
        caller: &Caller,
        id: Uuid,
        new_owner: &str,
    ) -> ApiResult<ConversationView> {
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut loaded = self.load(&transaction, caller, id, true).await?;
        loaded.authorize(Action::TransferOwnership)?;
        let target = store::find_participant(&transaction, &caller.tenant_id, id, new_owner)
            .await?
            .ok_or_else(|| {
                ApiError::FailedPrecondition("the new owner must be a participant".to_owned())
            })?;
        if target.role()? == Role::Owner {
            return loaded.view(None);
        }
        let at = now();
        if let Some(owner) =
            store::find_participant_with_role(&transaction, &caller.tenant_id, id, Role::Owner)
                .await?
        {
            store::set_role(&transaction, &owner, Role::Admin, &caller.user_id, at).await?;
            let change = participant_changed(&owner.user_id, Some(Role::Admin));
            emit(
                &transaction,
                &loaded.row,
                &caller.user_id,
                at,
                Payload::ParticipantRoleChanged(change),
            )
            .await?;
        }
        store::set_role(&transaction, &target, Role::Owner, &caller.user_id, at).await?;
        let change = participant_changed(new_owner, Some(Role::Owner));
        emit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            at,
            Payload::ParticipantRoleChanged(change),
        )
        .await?;
        touch(&mut loaded.row, &caller.user_id, at);
        store::record_audit(
            &transaction,
            &loaded.row,
            &caller.user_id,
            "conversation.ownership_transferred",
            Some(new_owner),
            json!({}),
            at,
        )
        .await?;
        loaded.row = store::save_conversation(&transaction, loaded.row).await?;
        loaded.participant =
            store::find_participant(&transaction, &caller.tenant_id, id, &caller.user_id).await?;
        transaction.commit().await?;
        self.bus.committed();
        loaded.view(None)
    }

    /// CheckPermission for `user` (the caller itself unless the caller is a service).
    ///
    /// `user_is_admin` says whether `user` is a tenant administrator: a service caller asserts
    /// it for the user it asks about; for a user asking about itself, its own token counts.
    pub async fn check_permission(
        &self,
        caller: &Caller,
        id: Uuid,
        user: &str,
        user_is_admin: bool,
        action: Action,
    ) -> ApiResult<PermissionAnswer> {
        if user != caller.user_id && !caller.is_service {
            return Err(ApiError::PermissionDenied(
                "only a service may check another user's permissions".to_owned(),
            ));
        }
        let user_is_admin = if caller.is_service {
            user_is_admin
        } else {
            caller.is_admin
        };
        let row = store::find_conversation(&self.db, &caller.tenant_id, id, false)
            .await?
            .filter(|row| row.deleted_at.is_none())
            .ok_or_else(not_found)?;
        let kind = row.kind()?;
        let role = store::find_participant(&self.db, &caller.tenant_id, id, user)
            .await?
            .map(|participant| participant.role())
            .transpose()?;
        if !caller.is_service && role.is_none() && kind != Kind::Channel && !user_is_admin {
            return Err(not_found());
        }
        let archived = row.archived_at.is_some();
        // A tenant administrator acts as an owner everywhere, as in every other use case.
        let authority = if user_is_admin {
            Some(Role::Owner)
        } else {
            role
        };
        let denial = permissions::check(kind, archived, authority, action).err();
        Ok(PermissionAnswer {
            role,
            denial,
            kind,
            archived,
        })
    }

    /// GetEventHead: makes sure that every committed event has a position (stamping those that
    /// do not yet, and waking the relay to publish them), and returns the newest position. When
    /// none is waiting, which is the common case, that is two reads and no write.
    pub async fn event_head(&self, caller: &Caller) -> ApiResult<i64> {
        if !caller.is_service {
            return Err(ApiError::PermissionDenied(
                "only callers with the service role may read the event head".to_owned(),
            ));
        }
        if messaging_platform::outbox::store::has_unstamped(&self.db).await?
            && messaging_platform::outbox::store::stamp_all(&self.db).await? > 0
        {
            self.bus.committed();
        }
        let (head, _) = messaging_platform::outbox::store::relay_state(&self.db).await?;
        Ok(head)
    }

    /// Purges conversations whose undelete window has passed; returns how many.
    pub async fn purge_expired(&self) -> ApiResult<u64> {
        Ok(store::purge_deleted(&self.db, now() - self.window()).await?)
    }
}
