//! AddParticipants, RemoveParticipant, UpdateParticipantRole, ListParticipants,
//! JoinConversation, LeaveConversation and TransferOwnership.

use messaging_platform::time::now;
use messaging_platform::{ApiError, ApiResult, Caller, pagination};
use serde_json::json;
use uuid::Uuid;

use super::{Audit, ConversationView, Conversations};
use crate::domain::Participant;
use crate::domain::permissions::{self, Action};
use crate::domain::{AuditAction, ConversationEvent, Kind, Role};

impl Conversations {
    /// AddParticipants: returns every requested user's participant row, in request order.
    pub async fn add_participants(
        &self,
        caller: &Caller,
        id: Uuid,
        specs: Vec<(String, Role)>,
    ) -> ApiResult<Vec<Participant>> {
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        loaded.authorize(Action::ManageParticipants)?;
        let authority = loaded.authority.unwrap_or(Role::Viewer);
        let at = now();
        let mut result = Vec::with_capacity(specs.len());
        let mut added = Vec::new();
        for (user, role) in &specs {
            match transaction.participant(&caller.tenant_id, id, user).await? {
                Some(existing) => result.push(existing),
                None => {
                    if !permissions::may_manage(authority, None, Some(*role)) {
                        return Err(ApiError::PermissionDenied(format!(
                            "the {} role may not add participants as {}",
                            authority.as_str(),
                            role.as_str()
                        )));
                    }
                    let row = Participant::new(&loaded.row, user, *role, &caller.user_id, at);
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
        loaded.row.touch(&caller.user_id, at);
        for row in &added {
            transaction
                .audit(
                    &loaded.row,
                    &caller.user_id,
                    AuditAction::ParticipantAdded,
                    Some(&row.user_id),
                    json!({"role": row.role.as_str()}),
                    at,
                )
                .await?;
            let event = ConversationEvent::ParticipantAdded {
                user: &row.user_id,
                role: row.role,
            };
            transaction
                .event(&loaded.row, &caller.user_id, at, &event)
                .await?;
        }
        transaction.insert_participants(&added).await?;
        transaction.save_conversation(&loaded.row).await?;
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
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        loaded.authorize(Action::ManageParticipants)?;
        let target = transaction
            .participant(&caller.tenant_id, id, user)
            .await?
            .ok_or(ApiError::NotFound("participant"))?;
        let authority = loaded.authority.unwrap_or(Role::Viewer);
        if !permissions::may_manage(authority, Some(target.role), None) {
            return Err(ApiError::PermissionDenied(format!(
                "the {} role may not remove a participant with the {} role",
                authority.as_str(),
                target.role.as_str()
            )));
        }
        let at = now();
        transaction.delete_participant(&target).await?;
        loaded.row.participant_count -= 1;
        loaded.row.touch(&caller.user_id, at);
        let event = ConversationEvent::ParticipantRemoved { user };
        loaded.row = self
            .finish(
                transaction,
                &loaded.row,
                caller,
                at,
                Audit {
                    action: AuditAction::ParticipantRemoved,
                    subject: Some(user),
                    details: json!({}),
                },
                event,
            )
            .await?;
        loaded.view(None)
    }

    /// UpdateParticipantRole (`role` is ADMIN, MEMBER or VIEWER).
    pub async fn update_role(
        &self,
        caller: &Caller,
        id: Uuid,
        user: &str,
        role: Role,
    ) -> ApiResult<Participant> {
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        loaded.authorize(Action::ManageParticipants)?;
        let target = transaction
            .participant(&caller.tenant_id, id, user)
            .await?
            .ok_or(ApiError::NotFound("participant"))?;
        let current = target.role;
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
        let updated = transaction
            .set_role(&target, role, &caller.user_id, at)
            .await?;
        loaded.row.touch(&caller.user_id, at);
        let event = ConversationEvent::RoleChanged { user, role };
        self.finish(
            transaction,
            &loaded.row,
            caller,
            at,
            Audit {
                action: AuditAction::RoleChanged,
                subject: Some(user),
                details: json!({"from": current.as_str(), "to": role.as_str()}),
            },
            event,
        )
        .await?;
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
    ) -> ApiResult<(Vec<Participant>, String)> {
        let loaded = self.load(&*self.store, caller, id, false).await?;
        let mut role_names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        role_names.sort_unstable();
        role_names.dedup();
        let fingerprint =
            pagination::fingerprint(&["participants", &id.to_string(), &role_names.join(",")]);
        let after = pagination::decode_timed::<String>("page_token", page_token, &fingerprint)?;
        let rows = self
            .store
            .participants(
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
    pub async fn join(&self, caller: &Caller, id: Uuid) -> ApiResult<Participant> {
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        if let Some(participant) = loaded.participant {
            return Ok(participant);
        }
        if loaded.row.kind != Kind::Channel {
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
        let row = Participant::new(
            &loaded.row,
            &caller.user_id,
            Role::Member,
            &caller.user_id,
            at,
        );
        transaction
            .insert_participants(std::slice::from_ref(&row))
            .await?;
        loaded.row.participant_count += 1;
        loaded.row.touch(&caller.user_id, at);
        let event = ConversationEvent::ParticipantAdded {
            user: &caller.user_id,
            role: Role::Member,
        };
        self.finish(
            transaction,
            &loaded.row,
            caller,
            at,
            Audit {
                action: AuditAction::ParticipantJoined,
                subject: Some(&caller.user_id),
                details: json!({}),
            },
            event,
        )
        .await?;
        Ok(row)
    }

    /// LeaveConversation: returns the conversation as it is after the caller left.
    pub async fn leave(&self, caller: &Caller, id: Uuid) -> ApiResult<ConversationView> {
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        let participant = loaded
            .participant
            .clone()
            .ok_or(ApiError::NotFound("participant"))?;
        if loaded.row.kind == Kind::Direct {
            return Err(ApiError::FailedPrecondition(
                "direct conversations cannot be left: archive or delete it".to_owned(),
            ));
        }
        if participant.role == Role::Owner {
            return Err(ApiError::FailedPrecondition(
                "the owner cannot leave: transfer ownership first (or delete the conversation)"
                    .to_owned(),
            ));
        }
        let at = now();
        transaction.delete_participant(&participant).await?;
        loaded.row.participant_count -= 1;
        loaded.row.touch(&caller.user_id, at);
        let event = ConversationEvent::ParticipantRemoved {
            user: &caller.user_id,
        };
        loaded.row = self
            .finish(
                transaction,
                &loaded.row,
                caller,
                at,
                Audit {
                    action: AuditAction::ParticipantLeft,
                    subject: Some(&caller.user_id),
                    details: json!({}),
                },
                event,
            )
            .await?;
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
        let transaction = self.store.begin().await?;
        let mut loaded = self.load(&*transaction, caller, id, true).await?;
        loaded.authorize(Action::TransferOwnership)?;
        let target = transaction
            .participant(&caller.tenant_id, id, new_owner)
            .await?
            .ok_or_else(|| {
                ApiError::FailedPrecondition("the new owner must be a participant".to_owned())
            })?;
        if target.role == Role::Owner {
            return loaded.view(None);
        }
        let at = now();
        if let Some(owner) = transaction
            .participant_with_role(&caller.tenant_id, id, Role::Owner)
            .await?
        {
            transaction
                .set_role(&owner, Role::Admin, &caller.user_id, at)
                .await?;
            let event = ConversationEvent::RoleChanged {
                user: &owner.user_id,
                role: Role::Admin,
            };
            transaction
                .event(&loaded.row, &caller.user_id, at, &event)
                .await?;
        }
        transaction
            .set_role(&target, Role::Owner, &caller.user_id, at)
            .await?;
        let event = ConversationEvent::RoleChanged {
            user: new_owner,
            role: Role::Owner,
        };
        transaction
            .event(&loaded.row, &caller.user_id, at, &event)
            .await?;
        loaded.row.touch(&caller.user_id, at);
        transaction
            .audit(
                &loaded.row,
                &caller.user_id,
                AuditAction::OwnershipTransferred,
                Some(new_owner),
                json!({}),
                at,
            )
            .await?;
        loaded.row = transaction.save_conversation(&loaded.row).await?;
        loaded.participant = transaction
            .participant(&caller.tenant_id, id, &caller.user_id)
            .await?;
        transaction.commit().await?;
        self.bus.committed();
        loaded.view(None)
    }
}

/// Most conversations one EraseParticipations call handles.
pub const MAX_ERASURES_PER_CALL: u64 = 500;

impl Conversations {
    /// EraseParticipations: removes `user` from at most `limit` conversations of the caller's
    /// tenant (a tenant administrator or a service), each in its own change; an owner's
    /// ownership passes to the longest-standing participant of the highest role first.
    /// Returns how many it removed and whether any are left.
    pub async fn erase_participations(
        &self,
        caller: &Caller,
        user: &str,
        limit: u64,
    ) -> ApiResult<(u32, bool)> {
        if !caller.is_admin && !caller.is_service {
            return Err(ApiError::PermissionDenied(
                "only tenant administrators and services may erase a user".to_owned(),
            ));
        }
        let limit = limit.clamp(1, MAX_ERASURES_PER_CALL);
        let participations = self
            .store
            .participations(&caller.tenant_id, user, limit + 1)
            .await?;
        let remaining = participations.len() as u64 > limit;
        let mut removed = 0;
        for participation in participations.into_iter().take(limit as usize) {
            if self.erase_participation(caller, &participation).await? {
                removed += 1;
            }
        }
        Ok((removed, remaining))
    }

    /// Removes one participation (false: it was gone already).
    async fn erase_participation(
        &self,
        caller: &Caller,
        participation: &Participant,
    ) -> ApiResult<bool> {
        let transaction = self.store.begin().await?;
        let id = participation.conversation_id;
        let Some(mut row) = transaction
            .conversation(&caller.tenant_id, id, true)
            .await?
        else {
            return Ok(false);
        };
        let Some(target) = transaction
            .participant(&caller.tenant_id, id, &participation.user_id)
            .await?
        else {
            return Ok(false);
        };
        let at = now();
        if target.role == Role::Owner {
            let successor = self
                .successor(&*transaction, &caller.tenant_id, id, &target)
                .await?;
            if let Some(successor) = successor {
                transaction
                    .set_role(&successor, Role::Owner, &caller.user_id, at)
                    .await?;
                let event = ConversationEvent::RoleChanged {
                    user: &successor.user_id,
                    role: Role::Owner,
                };
                transaction.event(&row, &caller.user_id, at, &event).await?;
                transaction
                    .audit(
                        &row,
                        &caller.user_id,
                        AuditAction::OwnershipTransferred,
                        Some(&successor.user_id),
                        json!({"reason": "erasure"}),
                        at,
                    )
                    .await?;
            }
        }
        transaction.delete_participant(&target).await?;
        row.participant_count -= 1;
        row.touch(&caller.user_id, at);
        let event = ConversationEvent::ParticipantRemoved {
            user: &target.user_id,
        };
        self.finish(
            transaction,
            &row,
            caller,
            at,
            Audit {
                action: AuditAction::ParticipantRemoved,
                subject: Some(&target.user_id),
                details: json!({"reason": "erasure"}),
            },
            event,
        )
        .await?;
        Ok(true)
    }

    /// Who becomes owner when `owner` is erased: the longest-standing ADMIN, else MEMBER,
    /// else VIEWER; `None` when nobody else participates.
    async fn successor(
        &self,
        reads: &dyn crate::store::ConversationReads,
        tenant: &messaging_platform::TenantId,
        conversation: Uuid,
        owner: &Participant,
    ) -> ApiResult<Option<Participant>> {
        for role in [Role::Admin, Role::Member, Role::Viewer] {
            let candidates = reads
                .participants(tenant, conversation, &[role], None, 2)
                .await?;
            if let Some(candidate) = candidates
                .into_iter()
                .find(|candidate| candidate.user_id != owner.user_id)
            {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }
}
