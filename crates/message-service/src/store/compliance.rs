//! [`ComplianceStore`] on SQL: erasure jobs and their batches, the compliance audit log,
//! retention policies and their purges, and the reads of an export. Every batch is one short
//! transaction, so none holds locks for long and an interrupted job resumes where it was.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use messaging_outbox::entity::event;
use messaging_platform::db::{begin_write, is_postgres};
use messaging_platform::time::now;
use messaging_platform::{TenantId, UserId};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::{
    attachment, audit, deletion, erasure, mention, message, participant, purge, reaction,
    read_state, retention, revision, sequence,
};
use super::messages::tombstone;
use super::rows::{messages_from_rows, reaction_from_row, read_state_from_row, revision_from_row};
use super::{SqlStore, StoreError, StoreResult};
use crate::domain::compliance::{
    AuditAction, AuditRecord, Erasure, ErasureCounts, RetentionPolicy, ScopedPolicy, Step,
};
use crate::domain::{Message, MessageEvent, Reaction, ReadState, Revision};

/// The actor of the events retention records.
pub const RETENTION_ACTOR: &str = "system:retention";

/// Which messages a retention policy covers: one conversation (an override), or a tenant's
/// conversations but those with overrides.
#[derive(Debug, Clone)]
pub struct RetentionScope {
    /// The tenant.
    pub tenant: String,
    /// The conversation of an override.
    pub conversation: Option<Uuid>,
    /// For a tenant's policy: the conversations with their own.
    pub overridden: Vec<Uuid>,
}

impl RetentionScope {
    fn condition(&self) -> Condition {
        let mut condition = Condition::all().add(message::Column::TenantId.eq(&self.tenant));
        match self.conversation {
            Some(conversation) => {
                condition = condition.add(message::Column::ConversationId.eq(conversation));
            }
            None if !self.overridden.is_empty() => {
                condition = condition
                    .add(message::Column::ConversationId.is_not_in(self.overridden.clone()));
            }
            None => {}
        }
        condition
    }
}

/// Compliance data and the batches of erasure, retention and export.
#[async_trait::async_trait]
pub trait ComplianceStore: Send + Sync + std::fmt::Debug {
    /// Starts a new run of `user`'s erasure (from its first step, counts at zero) asked by
    /// `requester`, and audits the request; a run in progress is left as it is. Returns the job.
    async fn begin_erasure(
        &self,
        tenant: &TenantId,
        user: &str,
        requester: &UserId,
    ) -> StoreResult<Erasure>;

    /// `user`'s erasure job, if it was ever erased.
    async fn erasure(&self, tenant: &TenantId, user: &str) -> StoreResult<Option<Erasure>>;

    /// Records a job's step and counts.
    async fn save_erasure(&self, tenant: &TenantId, erasure: &Erasure) -> StoreResult<()>;

    /// Jobs that have not finished, of every tenant.
    async fn unfinished_erasures(&self, limit: u64) -> StoreResult<Vec<(TenantId, Erasure)>>;

    /// Ends a job: marks it done, records the `user.erased` event and audits it, in one
    /// transaction.
    async fn finish_erasure(&self, tenant: &TenantId, erasure: &Erasure) -> StoreResult<()>;

    /// Makes at most `limit` of `user`'s messages tombstones without a sender (recording
    /// `message.deleted` by `actor` for those not deleted before). Returns how many, and
    /// whether attachments were left for the sweeper.
    async fn erase_messages(
        &self,
        tenant: &TenantId,
        user: &str,
        actor: &str,
        limit: u64,
    ) -> StoreResult<(u64, bool)>;

    /// Removes at most `limit` of `user`'s reactions; returns how many.
    async fn erase_reactions(&self, tenant: &TenantId, user: &str, limit: u64) -> StoreResult<u64>;

    /// Removes at most `limit` mentions of `user` from others' messages; returns how many.
    async fn erase_mentions(&self, tenant: &TenantId, user: &str, limit: u64) -> StoreResult<u64>;

    /// Removes `user`'s read states and participant projection rows; returns how many.
    async fn erase_read_states(&self, tenant: &TenantId, user: &str) -> StoreResult<u64>;

    /// Marks every upload of `user` for removal and returns at most `limit` of them (id and
    /// storage key) to remove now.
    async fn uploads_of(
        &self,
        tenant: &TenantId,
        user: &str,
        limit: u64,
    ) -> StoreResult<Vec<(Uuid, String)>>;

    /// Deletes at most `limit` stored events `user` caused; returns how many.
    async fn erase_events(&self, tenant: &TenantId, user: &str, limit: u64) -> StoreResult<u64>;

    /// Makes deleted content unrecoverable from the database files where the database allows
    /// (SQLite: checkpoints and truncates the write-ahead log; freed pages are zeroed by
    /// `secure_delete`).
    async fn compact(&self) -> StoreResult<()>;

    /// Adds an audit record.
    async fn audit(&self, tenant: &TenantId, record: &AuditRecord) -> StoreResult<()>;

    /// Audit records older than `before` (time, id), newest first.
    async fn audit_records(
        &self,
        tenant: &TenantId,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> StoreResult<Vec<AuditRecord>>;

    /// The tenant's policy, or a conversation's override.
    async fn retention_policy(
        &self,
        tenant: &TenantId,
        conversation: Option<Uuid>,
    ) -> StoreResult<Option<RetentionPolicy>>;

    /// Sets (`Some`) or removes the tenant's policy or a conversation's override, with its
    /// audit record, in one transaction.
    async fn set_retention_policy(
        &self,
        tenant: &TenantId,
        conversation: Option<Uuid>,
        policy: Option<&RetentionPolicy>,
        record: &AuditRecord,
    ) -> StoreResult<()>;

    /// Every stored policy, of every tenant.
    async fn retention_policies(&self) -> StoreResult<Vec<ScopedPolicy>>;

    /// Makes at most `limit` live messages of `scope` created before `before` tombstones
    /// (recording `message.deleted` by [`RETENTION_ACTOR`]), oldest first. Returns how many, and
    /// whether attachments were left for the sweeper.
    async fn expire_messages(
        &self,
        scope: &RetentionScope,
        before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<(u64, bool)>;

    /// Removes at most `limit` tombstones of `scope` deleted before `before` (those that still
    /// have replies stay); returns how many.
    async fn remove_tombstones(
        &self,
        scope: &RetentionScope,
        before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<u64>;

    /// How many live messages of `scope` were created before `messages_before`, and how many
    /// tombstones were deleted before `tombstones_before`.
    async fn retention_due(
        &self,
        scope: &RetentionScope,
        messages_before: Option<DateTime<Utc>>,
        tombstones_before: Option<DateTime<Utc>>,
    ) -> StoreResult<(u64, u64)>;

    /// Conversations conversation-service purged whose data is still here, of every tenant,
    /// oldest purge first.
    async fn pending_purges(&self, limit: u64) -> StoreResult<Vec<(TenantId, Uuid)>>;

    /// One batch of a purged conversation's deletion: at most `limit` of its messages go with
    /// everything that hangs on them (revisions, reactions, mentions, search entries;
    /// attachments are left for the sweeper), then, once none is left, its read states,
    /// counters, retention override, unsent uploads and stored events (but the
    /// `conversation.purged` event, which consumers still need), and last the pending purge
    /// itself. Returns how many rows went, and whether the purge is finished.
    async fn purge_conversation(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        limit: u64,
    ) -> StoreResult<(u64, bool)>;

    /// Messages `user` sent (tombstones included) after id `after`, by id.
    async fn export_messages(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<Uuid>,
        limit: u64,
    ) -> StoreResult<Vec<Message>>;

    /// Revisions of messages `user` sent, after (message, revision), by message and revision;
    /// whole messages' revisions at a time, at least `limit` revisions unless fewer are left.
    async fn export_revisions(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<(Uuid, i32)>,
        limit: u64,
    ) -> StoreResult<Vec<Revision>>;

    /// `user`'s reactions after (message, emoji), by message and emoji.
    async fn export_reactions(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<(Uuid, String)>,
        limit: u64,
    ) -> StoreResult<Vec<Reaction>>;

    /// `user`'s read states after conversation `after`, by conversation.
    async fn export_read_states(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<Uuid>,
        limit: u64,
    ) -> StoreResult<Vec<ReadState>>;

    /// Mentions of `user` after (conversation, sequence): conversation, sequence and sender.
    async fn export_mentions(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<(Uuid, i64)>,
        limit: u64,
    ) -> StoreResult<Vec<(Uuid, i64, String)>>;
}

fn erasure_from_row(row: erasure::Model) -> StoreResult<Erasure> {
    let step = Step::parse(&row.step)
        .ok_or_else(|| StoreError::Corrupt(format!("erasure step {:?}", row.step)))?;
    Ok(Erasure {
        user: row.user_id,
        requester: row.requester_id,
        step,
        counts: ErasureCounts {
            messages: row.messages_erased,
            reactions: row.reactions_erased,
            attachments: row.attachments_erased,
            participations: row.participations_erased,
            events: row.events_erased,
        },
        started_at: row.started_at,
        finished_at: row.finished_at,
    })
}

fn erasure_to_row(tenant: &str, erasure: &Erasure) -> erasure::Model {
    erasure::Model {
        tenant_id: tenant.to_owned(),
        user_id: erasure.user.clone(),
        requester_id: erasure.requester.clone(),
        step: erasure.step.as_str().to_owned(),
        messages_erased: erasure.counts.messages,
        reactions_erased: erasure.counts.reactions,
        attachments_erased: erasure.counts.attachments,
        participations_erased: erasure.counts.participations,
        events_erased: erasure.counts.events,
        started_at: erasure.started_at,
        updated_at: now(),
        finished_at: erasure.finished_at,
    }
}

fn audit_to_row(tenant: &str, record: &AuditRecord) -> StoreResult<audit::Model> {
    Ok(audit::Model {
        id: record.id,
        tenant_id: tenant.to_owned(),
        actor_id: record.actor.clone(),
        action: record.action.as_str().to_owned(),
        subject_id: record.subject.clone(),
        at: record.at,
        details: serde_json::to_string(&record.details)
            .map_err(|error| StoreError::Corrupt(format!("audit details: {error}")))?,
    })
}

fn audit_from_row(row: audit::Model) -> StoreResult<AuditRecord> {
    let action = AuditAction::parse(&row.action)
        .ok_or_else(|| StoreError::Corrupt(format!("audit action {:?}", row.action)))?;
    let details: BTreeMap<String, String> = serde_json::from_str(&row.details)
        .map_err(|error| StoreError::Corrupt(format!("audit details: {error}")))?;
    Ok(AuditRecord {
        id: row.id,
        actor: row.actor_id,
        action,
        subject: row.subject_id,
        at: row.at,
        details,
    })
}

fn policy_from_row(row: &retention::Model) -> RetentionPolicy {
    RetentionPolicy {
        message_days: u32::try_from(row.message_days).unwrap_or(0),
        tombstone_days: u32::try_from(row.tombstone_days).unwrap_or(0),
        updater: row.updater_id.clone(),
        updated_at: Some(row.updated_at),
    }
}

/// Rows after (`first`, `second`) in the order of columns (`a`, `b`): ascending, or descending
/// (then "after" means before).
fn keyset<A: ColumnTrait, B: ColumnTrait>(
    (a, first): (A, impl Into<sea_orm::Value> + Clone),
    (b, second): (B, impl Into<sea_orm::Value>),
    ascending: bool,
) -> Condition {
    let (beyond_a, beyond_b) = if ascending {
        (a.gt(first.clone()), b.gt(second))
    } else {
        (a.lt(first.clone()), b.lt(second))
    };
    Condition::any()
        .add(beyond_a)
        .add(Condition::all().add(a.eq(first)).add(beyond_b))
}

/// The conversation id a tenant's own policy is stored under.
fn policy_key(conversation: Option<Uuid>) -> Uuid {
    conversation.unwrap_or(Uuid::nil())
}

impl SqlStore {
    /// Makes `rows` tombstones in one transaction, recording `message.deleted` by `actor` for
    /// those that were live; returns whether attachments were left for the sweeper.
    async fn tombstone_rows<C: ConnectionTrait>(
        &self,
        transaction: &C,
        rows: Vec<message::Model>,
        actor: &str,
        forget_sender: bool,
    ) -> StoreResult<bool> {
        let at = now();
        let mut detached = false;
        for row in rows {
            let was_live = row.deleted_at.is_none();
            let tenant = row.tenant_id.clone();
            let (stone, stone_detached) = tombstone(transaction, row, at, forget_sender).await?;
            detached |= stone_detached;
            if was_live {
                let event = MessageEvent::Deleted {
                    conversation: stone.conversation_id,
                    message: stone.id,
                    sequence: stone.sequence,
                };
                self.record(transaction, None, &tenant, actor, at, event)
                    .await?;
            }
        }
        Ok(detached)
    }

    /// Wakes the relay, and the sweeper when attachments were left for it.
    fn after_batch(&self, detached: bool) {
        self.bus.committed();
        if detached {
            self.sweeps.notify_one();
        }
    }
}

#[async_trait::async_trait]
impl ComplianceStore for SqlStore {
    async fn begin_erasure(
        &self,
        tenant: &TenantId,
        user: &str,
        requester: &UserId,
    ) -> StoreResult<Erasure> {
        let transaction = begin_write(&self.db).await?;
        let existing = erasure::Entity::find_by_id((tenant.to_string(), user.to_owned()))
            .lock_exclusive()
            .one(&transaction)
            .await?;
        let at = now();
        let job = match existing {
            Some(row) if row.finished_at.is_none() => {
                let mut job = erasure_from_row(row)?;
                job.requester = requester.to_string();
                erasure::ActiveModel::from(erasure_to_row(tenant, &job))
                    .reset_all()
                    .update(&transaction)
                    .await?;
                job
            }
            existing => {
                let job = Erasure {
                    user: user.to_owned(),
                    requester: requester.to_string(),
                    step: Step::Participations,
                    counts: ErasureCounts::default(),
                    started_at: at,
                    finished_at: None,
                };
                let row = erasure::ActiveModel::from(erasure_to_row(tenant, &job));
                if existing.is_some() {
                    row.reset_all().update(&transaction).await?;
                } else {
                    erasure::Entity::insert(row.reset_all())
                        .exec_without_returning(&transaction)
                        .await?;
                }
                job
            }
        };
        let record = AuditRecord {
            id: Uuid::now_v7(),
            actor: requester.to_string(),
            action: AuditAction::ErasureRequested,
            subject: user.to_owned(),
            at,
            details: BTreeMap::new(),
        };
        audit::Entity::insert(audit::ActiveModel::from(audit_to_row(tenant, &record)?))
            .exec_without_returning(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(job)
    }

    async fn erasure(&self, tenant: &TenantId, user: &str) -> StoreResult<Option<Erasure>> {
        erasure::Entity::find_by_id((tenant.to_string(), user.to_owned()))
            .one(&self.db)
            .await?
            .map(erasure_from_row)
            .transpose()
    }

    async fn save_erasure(&self, tenant: &TenantId, erasure: &Erasure) -> StoreResult<()> {
        erasure::ActiveModel::from(erasure_to_row(tenant, erasure))
            .reset_all()
            .update(&self.db)
            .await?;
        Ok(())
    }

    async fn unfinished_erasures(&self, limit: u64) -> StoreResult<Vec<(TenantId, Erasure)>> {
        let rows = erasure::Entity::find()
            .filter(erasure::Column::FinishedAt.is_null())
            .order_by_asc(erasure::Column::UpdatedAt)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    TenantId::trusted(row.tenant_id.clone()),
                    erasure_from_row(row)?,
                ))
            })
            .collect()
    }

    async fn finish_erasure(&self, tenant: &TenantId, job: &Erasure) -> StoreResult<()> {
        use messaging_proto::message::v1 as pb;
        let transaction = begin_write(&self.db).await?;
        let at = now();
        let done = Erasure {
            step: Step::Done,
            finished_at: Some(at),
            ..job.clone()
        };
        erasure::ActiveModel::from(erasure_to_row(tenant, &done))
            .reset_all()
            .update(&transaction)
            .await?;
        messaging_outbox::store::record(
            &transaction,
            None,
            tenant,
            Uuid::nil(),
            &job.requester,
            at,
            pb::event::Payload::UserErased(pb::UserErased {
                user_id: job.user.clone(),
                messages_erased: job.counts.messages,
            }),
        )
        .await?;
        let counts = job.counts;
        let record = AuditRecord {
            id: Uuid::now_v7(),
            actor: job.requester.clone(),
            action: AuditAction::Erased,
            subject: job.user.clone(),
            at,
            details: BTreeMap::from([
                ("messages".to_owned(), counts.messages.to_string()),
                ("reactions".to_owned(), counts.reactions.to_string()),
                ("attachments".to_owned(), counts.attachments.to_string()),
                (
                    "participations".to_owned(),
                    counts.participations.to_string(),
                ),
                ("events".to_owned(), counts.events.to_string()),
            ]),
        };
        audit::Entity::insert(audit::ActiveModel::from(audit_to_row(tenant, &record)?))
            .exec_without_returning(&transaction)
            .await?;
        transaction.commit().await?;
        self.bus.committed();
        Ok(())
    }

    async fn erase_messages(
        &self,
        tenant: &TenantId,
        user: &str,
        actor: &str,
        limit: u64,
    ) -> StoreResult<(u64, bool)> {
        let transaction = begin_write(&self.db).await?;
        let rows = message::Entity::find()
            .filter(message::Column::TenantId.eq(tenant.as_str()))
            .filter(message::Column::SenderId.eq(user))
            .order_by_asc(message::Column::Id)
            .limit(limit)
            .lock_exclusive()
            .all(&transaction)
            .await?;
        let count = rows.len() as u64;
        let detached = self.tombstone_rows(&transaction, rows, actor, true).await?;
        transaction.commit().await?;
        self.after_batch(detached);
        Ok((count, detached))
    }

    async fn erase_reactions(&self, tenant: &TenantId, user: &str, limit: u64) -> StoreResult<u64> {
        let messages: Vec<Uuid> = reaction::Entity::find()
            .select_only()
            .column(reaction::Column::MessageId)
            .filter(reaction::Column::TenantId.eq(tenant.as_str()))
            .filter(reaction::Column::UserId.eq(user))
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if messages.is_empty() {
            return Ok(0);
        }
        let deleted = reaction::Entity::delete_many()
            .filter(reaction::Column::TenantId.eq(tenant.as_str()))
            .filter(reaction::Column::UserId.eq(user))
            .filter(reaction::Column::MessageId.is_in(messages))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    async fn erase_mentions(&self, tenant: &TenantId, user: &str, limit: u64) -> StoreResult<u64> {
        let tenant = tenant.as_str();
        let transaction = begin_write(&self.db).await?;
        let mentions = mention::Entity::find()
            .filter(mention::Column::TenantId.eq(tenant))
            .filter(mention::Column::UserId.eq(user))
            .limit(limit)
            .all(&transaction)
            .await?;
        for found in &mentions {
            let row = message::Entity::find()
                .filter(message::Column::TenantId.eq(tenant))
                .filter(message::Column::ConversationId.eq(found.conversation_id))
                .filter(message::Column::Sequence.eq(found.sequence))
                .lock_exclusive()
                .one(&transaction)
                .await?;
            if let Some(row) = row {
                let mut ids: Vec<String> = serde_json::from_str(&row.mention_ids)
                    .map_err(|error| StoreError::Corrupt(format!("mention ids: {error}")))?;
                ids.retain(|id| id != user);
                let ids = serde_json::to_string(&ids)
                    .map_err(|error| StoreError::Corrupt(format!("mention ids: {error}")))?;
                message::Entity::update_many()
                    .col_expr(message::Column::MentionIds, Expr::value(ids))
                    .filter(message::Column::TenantId.eq(tenant))
                    .filter(message::Column::Id.eq(row.id))
                    .exec(&transaction)
                    .await?;
            }
            mention::Entity::delete_many()
                .filter(mention::Column::TenantId.eq(tenant))
                .filter(mention::Column::ConversationId.eq(found.conversation_id))
                .filter(mention::Column::UserId.eq(user))
                .filter(mention::Column::Sequence.eq(found.sequence))
                .exec(&transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(mentions.len() as u64)
    }

    async fn erase_read_states(&self, tenant: &TenantId, user: &str) -> StoreResult<u64> {
        let states = read_state::Entity::delete_many()
            .filter(read_state::Column::TenantId.eq(tenant.as_str()))
            .filter(read_state::Column::UserId.eq(user))
            .exec(&self.db)
            .await?;
        let memberships = participant::Entity::delete_many()
            .filter(participant::Column::TenantId.eq(tenant.as_str()))
            .filter(participant::Column::UserId.eq(user))
            .exec(&self.db)
            .await?;
        Ok(states.rows_affected + memberships.rows_affected)
    }

    async fn uploads_of(
        &self,
        tenant: &TenantId,
        user: &str,
        limit: u64,
    ) -> StoreResult<Vec<(Uuid, String)>> {
        let owned = Condition::all()
            .add(attachment::Column::TenantId.eq(tenant.as_str()))
            .add(attachment::Column::UploaderId.eq(user));
        attachment::Entity::update_many()
            .col_expr(attachment::Column::DeletedAt, Expr::value(now()))
            .filter(owned.clone())
            .filter(attachment::Column::DeletedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(attachment::Entity::find()
            .select_only()
            .column(attachment::Column::Id)
            .column(attachment::Column::StorageKey)
            .filter(owned)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    async fn erase_events(&self, tenant: &TenantId, user: &str, limit: u64) -> StoreResult<u64> {
        let ids: Vec<i64> = event::Entity::find()
            .select_only()
            .column(event::Column::Id)
            .filter(event::Column::TenantId.eq(tenant.as_str()))
            .filter(event::Column::ActorId.eq(user))
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = event::Entity::delete_many()
            .filter(event::Column::Id.is_in(ids))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    async fn compact(&self) -> StoreResult<()> {
        if is_postgres(&self.db) {
            return Ok(());
        }
        // (busy, frames in the log, frames checkpointed): busy means a reader kept part of the
        // log, which then holds old pages until the next checkpoint.
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                "PRAGMA wal_checkpoint(TRUNCATE)",
            ))
            .await?;
        let busy: i32 = match row {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        if busy != 0 {
            return Err(StoreError::Database(sea_orm::DbErr::Custom(
                "the write-ahead log could not be emptied: a reader holds it".to_owned(),
            )));
        }
        Ok(())
    }

    async fn audit(&self, tenant: &TenantId, record: &AuditRecord) -> StoreResult<()> {
        audit::Entity::insert(audit::ActiveModel::from(audit_to_row(tenant, record)?))
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    async fn audit_records(
        &self,
        tenant: &TenantId,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut query = audit::Entity::find().filter(audit::Column::TenantId.eq(tenant.as_str()));
        if let Some((at, id)) = before {
            query = query.filter(keyset(
                (audit::Column::At, at),
                (audit::Column::Id, id),
                false,
            ));
        }
        query
            .order_by_desc(audit::Column::At)
            .order_by_desc(audit::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(audit_from_row)
            .collect()
    }

    async fn retention_policy(
        &self,
        tenant: &TenantId,
        conversation: Option<Uuid>,
    ) -> StoreResult<Option<RetentionPolicy>> {
        Ok(
            retention::Entity::find_by_id((tenant.to_string(), policy_key(conversation)))
                .one(&self.db)
                .await?
                .as_ref()
                .map(policy_from_row),
        )
    }

    async fn set_retention_policy(
        &self,
        tenant: &TenantId,
        conversation: Option<Uuid>,
        policy: Option<&RetentionPolicy>,
        record: &AuditRecord,
    ) -> StoreResult<()> {
        let transaction = begin_write(&self.db).await?;
        match policy {
            Some(policy) => {
                let row = retention::Model {
                    tenant_id: tenant.to_string(),
                    conversation_id: policy_key(conversation),
                    message_days: i32::try_from(policy.message_days).unwrap_or(i32::MAX),
                    tombstone_days: i32::try_from(policy.tombstone_days).unwrap_or(i32::MAX),
                    updater_id: policy.updater.clone(),
                    updated_at: policy.updated_at.unwrap_or_else(now),
                };
                retention::Entity::insert(retention::ActiveModel::from(row))
                    .on_conflict(
                        OnConflict::columns([
                            retention::Column::TenantId,
                            retention::Column::ConversationId,
                        ])
                        .update_columns([
                            retention::Column::MessageDays,
                            retention::Column::TombstoneDays,
                            retention::Column::UpdaterId,
                            retention::Column::UpdatedAt,
                        ])
                        .to_owned(),
                    )
                    .exec_without_returning(&transaction)
                    .await?;
            }
            None => {
                retention::Entity::delete_many()
                    .filter(retention::Column::TenantId.eq(tenant.as_str()))
                    .filter(retention::Column::ConversationId.eq(policy_key(conversation)))
                    .exec(&transaction)
                    .await?;
            }
        }
        audit::Entity::insert(audit::ActiveModel::from(audit_to_row(tenant, record)?))
            .exec_without_returning(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn retention_policies(&self) -> StoreResult<Vec<ScopedPolicy>> {
        Ok(retention::Entity::find()
            .order_by_asc(retention::Column::TenantId)
            .order_by_asc(retention::Column::ConversationId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| ScopedPolicy {
                tenant: row.tenant_id.clone(),
                conversation: Some(row.conversation_id).filter(|id| !id.is_nil()),
                policy: policy_from_row(&row),
            })
            .collect())
    }

    async fn expire_messages(
        &self,
        scope: &RetentionScope,
        before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<(u64, bool)> {
        let transaction = begin_write(&self.db).await?;
        let rows = message::Entity::find()
            .filter(scope.condition())
            .filter(message::Column::DeletedAt.is_null())
            .filter(message::Column::CreatedAt.lt(before))
            .order_by_asc(message::Column::CreatedAt)
            .limit(limit)
            .lock_exclusive()
            .all(&transaction)
            .await?;
        let count = rows.len() as u64;
        let detached = self
            .tombstone_rows(&transaction, rows, RETENTION_ACTOR, false)
            .await?;
        transaction.commit().await?;
        self.after_batch(detached);
        Ok((count, detached))
    }

    async fn remove_tombstones(
        &self,
        scope: &RetentionScope,
        before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<u64> {
        let ids: Vec<Uuid> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(scope.condition())
            .filter(message::Column::DeletedAt.lt(before))
            .filter(message::Column::ReplyCount.eq(0))
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = message::Entity::delete_many()
            .filter(message::Column::TenantId.eq(&scope.tenant))
            .filter(message::Column::Id.is_in(ids))
            .filter(message::Column::DeletedAt.is_not_null())
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    async fn retention_due(
        &self,
        scope: &RetentionScope,
        messages_before: Option<DateTime<Utc>>,
        tombstones_before: Option<DateTime<Utc>>,
    ) -> StoreResult<(u64, u64)> {
        use sea_orm::PaginatorTrait;
        let messages = match messages_before {
            Some(before) => {
                message::Entity::find()
                    .filter(scope.condition())
                    .filter(message::Column::DeletedAt.is_null())
                    .filter(message::Column::CreatedAt.lt(before))
                    .count(&self.db)
                    .await?
            }
            None => 0,
        };
        let tombstones = match tombstones_before {
            Some(before) => {
                message::Entity::find()
                    .filter(scope.condition())
                    .filter(message::Column::DeletedAt.lt(before))
                    .filter(message::Column::ReplyCount.eq(0))
                    .count(&self.db)
                    .await?
            }
            None => 0,
        };
        Ok((messages, tombstones))
    }

    async fn pending_purges(&self, limit: u64) -> StoreResult<Vec<(TenantId, Uuid)>> {
        let rows = purge::Entity::find()
            .order_by_asc(purge::Column::PurgedAt)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (TenantId::trusted(row.tenant_id), row.conversation_id))
            .collect())
    }

    async fn purge_conversation(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        limit: u64,
    ) -> StoreResult<(u64, bool)> {
        let tenant = tenant.as_str();
        let transaction = begin_write(&self.db).await?;
        let rows = message::Entity::find()
            .filter(message::Column::TenantId.eq(tenant))
            .filter(message::Column::ConversationId.eq(conversation))
            .order_by_desc(message::Column::Sequence)
            .limit(limit)
            .lock_exclusive()
            .all(&transaction)
            .await?;
        if !rows.is_empty() {
            let count = rows.len() as u64;
            let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
            let mut detached = false;
            for row in rows {
                detached |= tombstone(&transaction, row, now(), true).await?.1;
            }
            message::Entity::delete_many()
                .filter(message::Column::TenantId.eq(tenant))
                .filter(message::Column::Id.is_in(ids))
                .exec(&transaction)
                .await?;
            transaction.commit().await?;
            if detached {
                self.sweeps.notify_one();
            }
            return Ok((count, false));
        }
        let events: Vec<i64> = event::Entity::find()
            .select_only()
            .column(event::Column::Id)
            .filter(event::Column::TenantId.eq(tenant))
            .filter(event::Column::ConversationId.eq(conversation))
            .filter(event::Column::Kind.ne("conversation.purged"))
            .limit(limit)
            .into_tuple()
            .all(&transaction)
            .await?;
        if !events.is_empty() {
            let deleted = event::Entity::delete_many()
                .filter(event::Column::Id.is_in(events))
                .exec(&transaction)
                .await?;
            transaction.commit().await?;
            return Ok((deleted.rows_affected, false));
        }
        let mut removed = 0;
        macro_rules! delete_of_conversation {
            ($($entity:ident),*) => {$(
                removed += $entity::Entity::delete_many()
                    .filter($entity::Column::TenantId.eq(tenant))
                    .filter($entity::Column::ConversationId.eq(conversation))
                    .exec(&transaction)
                    .await?
                    .rows_affected;
            )*};
        }
        delete_of_conversation!(
            deletion,
            mention,
            read_state,
            sequence,
            participant,
            retention
        );
        let unsent = attachment::Entity::update_many()
            .col_expr(attachment::Column::DeletedAt, Expr::value(now()))
            .col_expr(attachment::Column::FileName, Expr::value(Vec::<u8>::new()))
            .filter(attachment::Column::TenantId.eq(tenant))
            .filter(attachment::Column::ConversationId.eq(conversation))
            .filter(attachment::Column::DeletedAt.is_null())
            .exec(&transaction)
            .await?
            .rows_affected;
        purge::Entity::delete_many()
            .filter(purge::Column::TenantId.eq(tenant))
            .filter(purge::Column::ConversationId.eq(conversation))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        if unsent > 0 {
            self.sweeps.notify_one();
        }
        Ok((removed + unsent, true))
    }

    async fn export_messages(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<Uuid>,
        limit: u64,
    ) -> StoreResult<Vec<Message>> {
        let mut query = message::Entity::find()
            .filter(message::Column::TenantId.eq(tenant.as_str()))
            .filter(message::Column::SenderId.eq(user));
        if let Some(after) = after {
            query = query.filter(message::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(message::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut messages = messages_from_rows(&self.keys, &self.db, rows).await?;
        messages.sort_by_key(|message| message.id);
        Ok(messages)
    }

    async fn export_revisions(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<(Uuid, i32)>,
        limit: u64,
    ) -> StoreResult<Vec<Revision>> {
        let tenant = tenant.as_str();
        let mut revisions = Vec::new();
        // The message to start from (included, for the revisions after `from` of it), then
        // each next one (excluded).
        let mut start = after.map(|(id, revision)| (id, true, revision));
        while (revisions.len() as u64) < limit {
            let mut query = message::Entity::find()
                .filter(message::Column::TenantId.eq(tenant))
                .filter(message::Column::SenderId.eq(user))
                .filter(message::Column::RevisionCount.gt(0));
            query = match start {
                Some((id, true, _)) => query.filter(message::Column::Id.gte(id)),
                Some((id, false, _)) => query.filter(message::Column::Id.gt(id)),
                None => query,
            };
            let Some(found) = query
                .order_by_asc(message::Column::Id)
                .one(&self.db)
                .await?
            else {
                break;
            };
            let from = match start {
                Some((id, true, revision)) if id == found.id => revision,
                _ => 0,
            };
            let rows = revision::Entity::find()
                .filter(revision::Column::TenantId.eq(tenant))
                .filter(revision::Column::MessageId.eq(found.id))
                .filter(revision::Column::Revision.gt(from))
                .order_by_asc(revision::Column::Revision)
                .all(&self.db)
                .await?;
            for row in rows {
                revisions.push(
                    revision_from_row(&self.keys, &self.db, found.conversation_id, row).await?,
                );
            }
            start = Some((found.id, false, 0));
        }
        Ok(revisions)
    }

    async fn export_reactions(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<(Uuid, String)>,
        limit: u64,
    ) -> StoreResult<Vec<Reaction>> {
        let mut query = reaction::Entity::find()
            .filter(reaction::Column::TenantId.eq(tenant.as_str()))
            .filter(reaction::Column::UserId.eq(user));
        if let Some((message, emoji)) = after {
            query = query.filter(keyset(
                (reaction::Column::MessageId, message),
                (reaction::Column::Emoji, emoji),
                true,
            ));
        }
        Ok(query
            .order_by_asc(reaction::Column::MessageId)
            .order_by_asc(reaction::Column::Emoji)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(reaction_from_row)
            .collect())
    }

    async fn export_read_states(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<Uuid>,
        limit: u64,
    ) -> StoreResult<Vec<ReadState>> {
        let mut query = read_state::Entity::find()
            .filter(read_state::Column::TenantId.eq(tenant.as_str()))
            .filter(read_state::Column::UserId.eq(user));
        if let Some(after) = after {
            query = query.filter(read_state::Column::ConversationId.gt(after));
        }
        Ok(query
            .order_by_asc(read_state::Column::ConversationId)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(read_state_from_row)
            .collect())
    }

    async fn export_mentions(
        &self,
        tenant: &TenantId,
        user: &str,
        after: Option<(Uuid, i64)>,
        limit: u64,
    ) -> StoreResult<Vec<(Uuid, i64, String)>> {
        let mut query = mention::Entity::find()
            .filter(mention::Column::TenantId.eq(tenant.as_str()))
            .filter(mention::Column::UserId.eq(user));
        if let Some((conversation, sequence)) = after {
            query = query.filter(keyset(
                (mention::Column::ConversationId, conversation),
                (mention::Column::Sequence, sequence),
                true,
            ));
        }
        Ok(query
            .order_by_asc(mention::Column::ConversationId)
            .order_by_asc(mention::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| (row.conversation_id, row.sequence, row.sender_id))
            .collect())
    }
}
