//! CreateConversation, GetConversation, ListConversations, UpdateConversation, Archive and
//! Unarchive, Delete and Undelete, and the purge of conversations past their undelete window.

use messaging_platform::time::now;
use messaging_platform::{ApiError, ApiResult, Caller, UserId, pagination};
use serde_json::json;
use uuid::Uuid;

use super::{Audit, ConversationView, Conversations, not_found};
use super::{ListRequest, NewConversation};
use crate::domain::permissions::Action;
use crate::domain::{self, AuditAction, ConversationEvent, Kind, Role};
use crate::domain::{Conversation, Participant};
use crate::store::{ConversationKey, StoreError};

/// The actor of `conversation.purged` events.
pub const PURGE_ACTOR: &str = "system:purge";

/// Conversations purged in one transaction.
const PURGE_BATCH: u64 = 100;

impl Conversations {
    /// CreateConversation.
    pub async fn create(
        &self,
        caller: &Caller,
        new: NewConversation,
    ) -> ApiResult<(ConversationView, bool)> {
        let tenant = &caller.tenant_id;
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
        let row = Conversation {
            id: Uuid::now_v7(),
            tenant_id: tenant.to_string(),
            kind: new.kind,
            title: new.title.clone(),
            description: new.description.clone(),
            direct_key: direct_key.clone(),
            create_request_id: new.request_id.clone(),
            create_request_hash: new.request_id.as_ref().map(|_| new.fingerprint()),
            creator_id: caller.user_id.to_string(),
            created_at: at,
            updater_id: caller.user_id.to_string(),
            updated_at: at,
            last_activity_at: at,
            archived_at: None,
            archiver_id: None,
            deleted_at: None,
            deleter_id: None,
            participant_count: i32::try_from(new.participants.len() + 1).unwrap_or(i32::MAX),
            version: 1,
        };
        let mut roles = vec![(caller.user_id.to_string(), creator_role)];
        for (user, role) in &new.participants {
            let role = if new.kind == Kind::Direct {
                Role::Member
            } else {
                *role
            };
            roles.push((user.clone(), role));
        }
        let participants: Vec<Participant> = roles
            .iter()
            .map(|(user, role)| Participant::new(&row, user, *role, &caller.user_id, at))
            .collect();

        let result: Result<(), StoreError> = async {
            let transaction = self.store.begin().await?;
            transaction.insert_conversation(&row).await?;
            transaction.insert_participants(&participants).await?;
            let details = json!({
                "kind": row.kind.as_str(),
                "participants": new.participants.iter().map(|(user, _)| user).collect::<Vec<_>>(),
            });
            transaction
                .audit(
                    &row,
                    &caller.user_id,
                    AuditAction::Created,
                    None,
                    details,
                    at,
                )
                .await?;
            let first: Vec<(&str, Role)> = roles
                .iter()
                .map(|(user, role)| (user.as_str(), *role))
                .collect();
            let created = ConversationEvent::Created {
                title: &row.title,
                participants: first.clone(),
            };
            transaction
                .event(&row, &caller.user_id, at, &created)
                .await?;
            for (user, role) in first {
                let added = ConversationEvent::ParticipantAdded { user, role };
                transaction.event(&row, &caller.user_id, at, &added).await?;
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
            Err(StoreError::Conflict(error)) => self
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
        let tenant = &caller.tenant_id;
        let mut found = None;
        if let Some(request_id) = &new.request_id {
            let key = ConversationKey::Request {
                creator: &caller.user_id,
                request_id,
            };
            found = self.store.conversation_by(tenant, key).await?;
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
            found = self
                .store
                .conversation_by(tenant, ConversationKey::Direct(direct_key))
                .await?;
        }
        match found {
            Some(row) => Ok(Some(
                self.load_row(&*self.store, caller, row).await?.view(None)?,
            )),
            None => Ok(None),
        }
    }

    /// GetConversation.
    pub async fn get(&self, caller: &Caller, id: Uuid) -> ApiResult<ConversationView> {
        self.load(&*self.store, caller, id, false).await?.view(None)
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
        let after =
            pagination::decode_timed::<Uuid>("page_token", &request.page_token, &fingerprint)?;
        let rows = self
            .store
            .conversations(
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
        let roles = self
            .store
            .roles_of(
                &caller.tenant_id,
                &caller.user_id,
                &rows.iter().map(|row| row.id).collect::<Vec<_>>(),
            )
            .await?;
        let views = rows
            .into_iter()
            .map(|row| {
                let caller_role = roles
                    .iter()
                    .find(|participant| participant.conversation_id == row.id)
                    .map(|participant| participant.role);
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
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        loaded.authorize(Action::Update)?;
        if let Some(etag) = etag
            && etag != loaded.row.version.to_string()
        {
            return Err(ApiError::Aborted(
                "the conversation changed since it was read (etag mismatch)".to_owned(),
            ));
        }
        if let Some(title) = title {
            loaded.row.title = domain::title("conversation.title", title, loaded.row.kind)
                .map_err(|violation| ApiError::InvalidArgument(vec![violation]))?;
        }
        if let Some(description) = description {
            loaded.row.description = description;
        }
        let at = now();
        loaded.row.touch(&caller.user_id, at);
        let details = json!({"title": loaded.row.title, "description": loaded.row.description});
        let event = ConversationEvent::Updated {
            title: &loaded.row.title,
            archived: loaded.row.archived_at.is_some(),
        };
        loaded.row = self
            .finish(
                transaction,
                &loaded.row,
                caller,
                at,
                Audit {
                    action: AuditAction::Updated,
                    subject: None,
                    details,
                },
                event,
            )
            .await?;
        loaded.view(None)
    }

    /// ArchiveConversation (`archive`) and UnarchiveConversation; a no-op when already so.
    pub async fn set_archived(
        &self,
        caller: &Caller,
        id: Uuid,
        archive: bool,
    ) -> ApiResult<ConversationView> {
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        loaded.authorize(Action::Archive)?;
        if loaded.row.archived_at.is_some() == archive {
            return loaded.view(None);
        }
        let at = now();
        loaded.row.archived_at = archive.then_some(at);
        loaded.row.archiver_id = archive.then(|| caller.user_id.to_string());
        loaded.row.touch(&caller.user_id, at);
        let action = if archive {
            AuditAction::Archived
        } else {
            AuditAction::Unarchived
        };
        transaction
            .audit(&loaded.row, &caller.user_id, action, None, json!({}), at)
            .await?;
        let event = ConversationEvent::Archived {
            title: &loaded.row.title,
            archived: loaded.row.archived_at.is_some(),
        };
        transaction
            .event(&loaded.row, &caller.user_id, at, &event)
            .await?;
        loaded.row = transaction.save_conversation(&loaded.row).await?;
        transaction.commit().await?;
        self.bus.committed();
        loaded.view(None)
    }

    /// DeleteConversation: soft delete, restorable within the undelete window.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> ApiResult<ConversationView> {
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        loaded.authorize(Action::Delete)?;
        let at = now();
        loaded.row.deleted_at = Some(at);
        loaded.row.deleter_id = Some(caller.user_id.to_string());
        // Frees the pair, so the two users can start a new DIRECT conversation meanwhile.
        loaded.row.direct_key = None;
        loaded.row.touch(&caller.user_id, at);
        let event = ConversationEvent::Deleted {
            title: &loaded.row.title,
            archived: loaded.row.archived_at.is_some(),
        };
        loaded.row = self
            .finish(
                transaction,
                &loaded.row,
                caller,
                at,
                Audit {
                    action: AuditAction::Deleted,
                    subject: None,
                    details: json!({}),
                },
                event,
            )
            .await?;
        let purge_time = at + self.window();
        loaded.view(Some(purge_time))
    }

    /// UndeleteConversation.
    pub async fn undelete(&self, caller: &Caller, id: Uuid) -> ApiResult<ConversationView> {
        let transaction = self.store.begin().await?;
        let row = transaction
            .conversation(&caller.tenant_id, id, true)
            .await?
            .ok_or_else(not_found)?;
        let at = now();
        let deleted_at = row.deleted_at;
        if deleted_at.is_some_and(|deleted_at| deleted_at + self.window() <= at) {
            return Err(not_found());
        }
        let mut loaded = self.load_row(&*transaction, caller, row).await?;
        if deleted_at.is_none() {
            return Err(ApiError::FailedPrecondition(
                "the conversation is not deleted".to_owned(),
            ));
        }
        loaded.authorize(Action::Delete)?;
        if loaded.row.kind == Kind::Direct {
            let pair = transaction.participant_ids(&caller.tenant_id, id).await?;
            if let [first, second] = pair.as_slice() {
                loaded.row.direct_key = Some(domain::direct_key(first, second));
            }
        }
        loaded.row.deleted_at = None;
        loaded.row.deleter_id = None;
        loaded.row.touch(&caller.user_id, at);
        transaction
            .audit(
                &loaded.row,
                &caller.user_id,
                AuditAction::Undeleted,
                None,
                json!({}),
                at,
            )
            .await?;
        // Restored: announced as an update, the conversation being readable again.
        let event = ConversationEvent::Updated {
            title: &loaded.row.title,
            archived: loaded.row.archived_at.is_some(),
        };
        transaction
            .event(&loaded.row, &caller.user_id, at, &event)
            .await?;
        loaded.row = match transaction.save_conversation(&loaded.row).await {
            Err(StoreError::Conflict(_)) => {
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

    /// Purges conversations whose undelete window has passed, in batches of one transaction
    /// each that also records a `conversation.purged` event per conversation (so
    /// message-service deletes what it keeps of them); returns how many.
    pub async fn purge_expired(&self) -> ApiResult<u64> {
        let actor = UserId::trusted(PURGE_ACTOR);
        let mut purged = 0;
        loop {
            let at = now();
            let transaction = self.store.begin().await?;
            let rows = transaction
                .purge_deleted(at - self.window(), PURGE_BATCH)
                .await?;
            for row in &rows {
                let event = ConversationEvent::Purged {
                    archived: row.archived_at.is_some(),
                };
                transaction.event(row, &actor, at, &event).await?;
            }
            transaction.commit().await?;
            if rows.is_empty() {
                return Ok(purged);
            }
            self.bus.committed();
            purged += rows.len() as u64;
            if (rows.len() as u64) < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }
}
