//! The compliance use cases: export, erasure jobs, retention policies and the audit log, for
//! tenant administrators only.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use messaging_platform::time::now;
use messaging_platform::{ApiError, ApiResult, Caller, TenantId};
use tokio::sync::watch;
use uuid::Uuid;

use super::{Files, Messages};
use crate::config::ComplianceSettings;
use crate::domain::compliance::{
    AuditAction, AuditRecord, Erasure, ExportCursor, RetentionPolicy, Section, Step,
};
use crate::domain::{Message, Reaction, ReadState, Revision};
use crate::peer::{Directory, Membership};
use crate::store::{RetentionScope, Store};

/// Items one export page holds at most (memberships come in one page).
const EXPORT_PAGE: u64 = 200;

/// One item of an export, with the cursor that resumes after it.
#[derive(Debug, Clone)]
pub enum ExportItem {
    /// A membership.
    Membership(Membership),
    /// A message the user sent.
    Message(Box<Message>),
    /// An earlier version of one.
    Revision(Revision),
    /// A reaction of the user's.
    Reaction(Reaction),
    /// A read state.
    ReadState(ReadState),
    /// A mention of the user: conversation, sequence, sender.
    Mention(Uuid, i64, String),
}

/// How a run of an erasure ended, shared with every caller waiting for it (the error as
/// text: a failed run is retried, and its callers get UNAVAILABLE).
type Outcome = Option<Result<Erasure, String>>;

/// The runs in progress in this process, by tenant and user.
type Runs = Arc<Mutex<HashMap<(String, String), watch::Receiver<Outcome>>>>;

/// The compliance use cases.
#[derive(Debug, Clone)]
pub struct Compliance {
    store: Arc<dyn Store>,
    gate: Arc<dyn crate::peer::Permissions>,
    directory: Arc<dyn Directory>,
    files: Option<Arc<Files>>,
    settings: ComplianceSettings,
    running: Runs,
    batches: Arc<AtomicU64>,
}

/// PERMISSION_DENIED unless `caller` is a tenant administrator.
pub fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.is_admin {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(
            "compliance operations are for tenant administrators".to_owned(),
        ))
    }
}

fn first<T: Clone>(key: &[String], parse: impl Fn(&[String]) -> Option<T>) -> ApiResult<Option<T>> {
    if key.is_empty() {
        return Ok(None);
    }
    parse(key)
        .map(Some)
        .ok_or_else(|| ApiError::invalid("cursor", "not a cursor of this export"))
}

fn uuid_at(key: &[String], index: usize) -> Option<Uuid> {
    key.get(index).and_then(|text| Uuid::parse_str(text).ok())
}

impl Compliance {
    /// The use cases over `messages`' store and files, asking `directory` for memberships.
    pub fn new(
        messages: &Messages,
        directory: Arc<dyn Directory>,
        settings: ComplianceSettings,
    ) -> Self {
        Self {
            store: messages.store.clone(),
            gate: messages.gate.clone(),
            directory,
            files: messages.files.clone(),
            settings,
            running: Arc::default(),
            batches: Arc::default(),
        }
    }

    fn record(caller: &Caller, action: AuditAction, subject: &str) -> AuditRecord {
        AuditRecord {
            id: Uuid::now_v7(),
            actor: caller.user_id.to_string(),
            action,
            subject: subject.to_owned(),
            at: now(),
            details: BTreeMap::new(),
        }
    }

    /// Audits the start of an export of `user` (once per call, resumed ones included).
    pub async fn begin_export(
        &self,
        caller: &Caller,
        user: &str,
        cursor: &str,
    ) -> ApiResult<ExportCursor> {
        require_admin(caller)?;
        let cursor = if cursor.is_empty() {
            ExportCursor::start()
        } else {
            ExportCursor::decode(cursor)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor of this export"))?
        };
        let mut record = Self::record(caller, AuditAction::Exported, user);
        if cursor != ExportCursor::start() {
            record
                .details
                .insert("resumed".to_owned(), "true".to_owned());
        }
        self.store.audit(&caller.tenant_id, &record).await?;
        Ok(cursor)
    }

    /// The export's next items after `cursor`, each with its own cursor; empty at the end.
    pub async fn export_page(
        &self,
        caller: &Caller,
        user: &str,
        cursor: &ExportCursor,
    ) -> ApiResult<Vec<(ExportItem, ExportCursor)>> {
        require_admin(caller)?;
        let mut cursor = cursor.clone();
        loop {
            let items = self.section_page(&caller.tenant_id, user, &cursor).await?;
            if !items.is_empty() {
                return Ok(items);
            }
            match cursor.section.next() {
                Some(section) => {
                    cursor = ExportCursor {
                        section,
                        key: Vec::new(),
                    };
                }
                None => return Ok(Vec::new()),
            }
        }
    }

    async fn section_page(
        &self,
        tenant: &TenantId,
        user: &str,
        cursor: &ExportCursor,
    ) -> ApiResult<Vec<(ExportItem, ExportCursor)>> {
        let at = |key: Vec<String>| ExportCursor {
            section: cursor.section,
            key,
        };
        let key = &cursor.key;
        Ok(match cursor.section {
            Section::Memberships => {
                let after = first(key, |key| uuid_at(key, 0))?;
                self.directory
                    .memberships(tenant, user)
                    .await?
                    .into_iter()
                    .filter(|membership| after.is_none_or(|after| membership.conversation > after))
                    .map(|membership| {
                        let next = at(vec![membership.conversation.to_string()]);
                        (ExportItem::Membership(membership), next)
                    })
                    .collect()
            }
            Section::Messages => {
                let after = first(key, |key| uuid_at(key, 0))?;
                self.store
                    .export_messages(tenant, user, after, EXPORT_PAGE)
                    .await?
                    .into_iter()
                    .map(|message| {
                        let next = at(vec![message.id.to_string()]);
                        (ExportItem::Message(Box::new(message)), next)
                    })
                    .collect()
            }
            Section::Revisions => {
                let after = first(key, |key| {
                    Some((uuid_at(key, 0)?, key.get(1)?.parse::<i32>().ok()?))
                })?;
                self.store
                    .export_revisions(tenant, user, after, EXPORT_PAGE)
                    .await?
                    .into_iter()
                    .map(|revision| {
                        let next = at(vec![
                            revision.message.to_string(),
                            revision.revision.to_string(),
                        ]);
                        (ExportItem::Revision(revision), next)
                    })
                    .collect()
            }
            Section::Reactions => {
                let after = first(key, |key| Some((uuid_at(key, 0)?, key.get(1)?.clone())))?;
                self.store
                    .export_reactions(tenant, user, after, EXPORT_PAGE)
                    .await?
                    .into_iter()
                    .map(|reaction| {
                        let next = at(vec![reaction.message.to_string(), reaction.emoji.clone()]);
                        (ExportItem::Reaction(reaction), next)
                    })
                    .collect()
            }
            Section::ReadStates => {
                let after = first(key, |key| uuid_at(key, 0))?;
                self.store
                    .export_read_states(tenant, user, after, EXPORT_PAGE)
                    .await?
                    .into_iter()
                    .map(|state| {
                        let next = at(vec![state.conversation.to_string()]);
                        (ExportItem::ReadState(state), next)
                    })
                    .collect()
            }
            Section::Mentions => {
                let after = first(key, |key| {
                    Some((uuid_at(key, 0)?, key.get(1)?.parse::<i64>().ok()?))
                })?;
                self.store
                    .export_mentions(tenant, user, after, EXPORT_PAGE)
                    .await?
                    .into_iter()
                    .map(|(conversation, sequence, sender)| {
                        let next = at(vec![conversation.to_string(), sequence.to_string()]);
                        (ExportItem::Mention(conversation, sequence, sender), next)
                    })
                    .collect()
            }
        })
    }

    /// EraseUserData: starts a run of `user`'s erasure (or joins the one in progress) and
    /// waits for it to end. The run goes on when the caller stops waiting.
    pub async fn erase(&self, caller: &Caller, user: &str) -> ApiResult<Erasure> {
        require_admin(caller)?;
        let key = (caller.tenant_id.to_string(), user.to_owned());
        let waiting = self.running_run(&key);
        let mut outcome = match waiting {
            Some(outcome) => outcome,
            None => {
                let job = self
                    .store
                    .begin_erasure(&caller.tenant_id, user, &caller.user_id)
                    .await?;
                self.spawn_run(caller.tenant_id.clone(), job)
            }
        };
        loop {
            if let Some(result) = outcome.borrow_and_update().clone() {
                return result.map_err(|error| {
                    ApiError::Unavailable(format!(
                        "the erasure stopped ({error}); it is retried in the background, or \
                         call again"
                    ))
                });
            }
            if outcome.changed().await.is_err() {
                return Err(ApiError::Unavailable(
                    "the erasure stopped; it resumes when the service restarts".to_owned(),
                ));
            }
        }
    }

    /// GetUserErasure.
    pub async fn erasure(&self, caller: &Caller, user: &str) -> ApiResult<Erasure> {
        require_admin(caller)?;
        self.store
            .erasure(&caller.tenant_id, user)
            .await?
            .ok_or(ApiError::NotFound("erasure"))
    }

    /// Resumes every unfinished erasure that is not running in this process (after a restart
    /// or a failure); returns how many it started.
    pub async fn resume_erasures(&self) -> ApiResult<usize> {
        let mut started = 0;
        for (tenant, job) in self.store.unfinished_erasures(100).await? {
            let key = (tenant.to_string(), job.user.clone());
            if self.running_run(&key).is_none() {
                tracing::info!(tenant = %tenant, step = job.step.as_str(), "resuming an erasure");
                drop(self.spawn_run(tenant, job));
                started += 1;
            }
        }
        Ok(started)
    }

    fn running_run(&self, key: &(String, String)) -> Option<watch::Receiver<Outcome>> {
        let running = self.running.lock().ok()?;
        running.get(key).cloned()
    }

    fn spawn_run(&self, tenant: TenantId, job: Erasure) -> watch::Receiver<Outcome> {
        let (sender, receiver) = watch::channel(None);
        let key = (tenant.to_string(), job.user.clone());
        if let Ok(mut running) = self.running.lock() {
            running.insert(key.clone(), receiver.clone());
        }
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.run(&tenant, job).await;
            if let Err(error) = &result {
                tracing::warn!(%error, "an erasure stopped; it is retried later");
            }
            if let Ok(mut running) = this.running.lock() {
                running.remove(&key);
            }
            // A run halted for a test ends like a dead process: waiters see the sender go.
            if !matches!(result, Err(ApiError::Aborted(ref why)) if why == HALTED) {
                let _ = sender.send(Some(result.map_err(|error| error.to_string())));
            }
        });
        receiver
    }

    /// Records the job's progress after a batch; fails as a dead process would once the test
    /// hook says so.
    async fn batch_done(&self, tenant: &TenantId, job: &Erasure) -> ApiResult<()> {
        self.store.save_erasure(tenant, job).await?;
        let done = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
        match self.settings.halt_after_batches {
            Some(limit) if done >= limit => Err(ApiError::Aborted(HALTED.to_owned())),
            _ => Ok(()),
        }
    }

    /// Runs `job` from its step to the end, saving its progress after every step.
    async fn run(&self, tenant: &TenantId, mut job: Erasure) -> ApiResult<Erasure> {
        let batch = self.settings.batch_size.max(1);
        while job.step != Step::Done {
            self.batch_done(tenant, &job).await?;
            match job.step {
                Step::Participations => loop {
                    let (removed, remaining) = self
                        .directory
                        .erase_participations(tenant, &job.requester, &job.user, 100)
                        .await?;
                    job.counts.participations += removed;
                    if !remaining {
                        break;
                    }
                    self.batch_done(tenant, &job).await?;
                },
                Step::Messages => loop {
                    let (count, _) = self
                        .store
                        .erase_messages(tenant, &job.user, &job.requester, batch)
                        .await?;
                    job.counts.messages += count as i64;
                    if count < batch {
                        break;
                    }
                    self.batch_done(tenant, &job).await?;
                },
                Step::Reactions => loop {
                    let count = self.store.erase_reactions(tenant, &job.user, batch).await?;
                    job.counts.reactions += count as i64;
                    if count == 0 {
                        break;
                    }
                    self.batch_done(tenant, &job).await?;
                },
                Step::Mentions => loop {
                    let count = self.store.erase_mentions(tenant, &job.user, batch).await?;
                    if count < batch {
                        break;
                    }
                    self.batch_done(tenant, &job).await?;
                },
                Step::ReadStates => {
                    self.store.erase_read_states(tenant, &job.user).await?;
                }
                Step::Attachments => loop {
                    let uploads = self.store.uploads_of(tenant, &job.user, batch).await?;
                    if uploads.is_empty() {
                        break;
                    }
                    for (id, storage) in uploads {
                        if let Some(files) = &self.files {
                            files.blobs.remove(&storage).await?;
                        }
                        self.store.forget(tenant, id).await?;
                        job.counts.attachments += 1;
                    }
                    self.batch_done(tenant, &job).await?;
                },
                Step::Events => loop {
                    let count = self.store.erase_events(tenant, &job.user, batch).await?;
                    job.counts.events += count as i64;
                    if count == 0 {
                        break;
                    }
                    self.batch_done(tenant, &job).await?;
                },
                Step::Done => {}
            }
            job.step = job.step.next();
            if job.step == Step::Done {
                // The erased content leaves the database files before the job says it is done.
                self.store.compact().await?;
                self.store.finish_erasure(tenant, &job).await?;
                job.finished_at = Some(now());
                if let Err(error) = self.store.compact().await {
                    tracing::warn!(%error, "compacting after an erasure failed");
                }
            } else {
                self.store.save_erasure(tenant, &job).await?;
            }
        }
        Ok(job)
    }

    /// SetRetentionPolicy: the tenant's (`conversation` `None`) or a conversation's override;
    /// `policy` `None` clears an override. Returns the policy that applies afterwards.
    pub async fn set_retention(
        &self,
        caller: &Caller,
        conversation: Option<Uuid>,
        policy: Option<RetentionPolicy>,
    ) -> ApiResult<(RetentionPolicy, bool)> {
        require_admin(caller)?;
        self.require_conversation(caller, conversation).await?;
        let policy = policy.map(|policy| RetentionPolicy {
            updater: caller.user_id.to_string(),
            updated_at: Some(now()),
            ..policy
        });
        let mut record = Self::record(caller, AuditAction::RetentionChanged, "");
        if let Some(conversation) = conversation {
            record
                .details
                .insert("conversation_id".to_owned(), conversation.to_string());
        }
        match &policy {
            Some(policy) => {
                record
                    .details
                    .insert("message_days".to_owned(), policy.message_days.to_string());
                record.details.insert(
                    "tombstone_days".to_owned(),
                    policy.tombstone_days.to_string(),
                );
            }
            None => {
                record
                    .details
                    .insert("override".to_owned(), "cleared".to_owned());
            }
        }
        self.store
            .set_retention_policy(&caller.tenant_id, conversation, policy.as_ref(), &record)
            .await?;
        self.retention(caller, conversation).await
    }

    /// GetRetentionPolicy: the policy that applies, and whether it is the conversation's own.
    pub async fn retention(
        &self,
        caller: &Caller,
        conversation: Option<Uuid>,
    ) -> ApiResult<(RetentionPolicy, bool)> {
        require_admin(caller)?;
        self.require_conversation(caller, conversation).await?;
        if conversation.is_some()
            && let Some(policy) = self
                .store
                .retention_policy(&caller.tenant_id, conversation)
                .await?
        {
            return Ok((policy, true));
        }
        Ok((
            self.store
                .retention_policy(&caller.tenant_id, None)
                .await?
                .unwrap_or_default(),
            false,
        ))
    }

    /// NOT_FOUND unless `conversation` (if any) is a conversation of the caller's tenant.
    async fn require_conversation(
        &self,
        caller: &Caller,
        conversation: Option<Uuid>,
    ) -> ApiResult<()> {
        match conversation {
            Some(conversation) => {
                self.gate
                    .require(caller, conversation, crate::domain::Action::Read)
                    .await
            }
            None => Ok(()),
        }
    }

    /// ListAuditRecords: records before (time, id), newest first.
    pub async fn audit_records(
        &self,
        caller: &Caller,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> ApiResult<Vec<AuditRecord>> {
        require_admin(caller)?;
        Ok(self
            .store
            .audit_records(&caller.tenant_id, before, limit)
            .await?)
    }

    /// One round of retention over every stored policy: expires messages and removes
    /// tombstones in batches until none is due. Returns (messages expired, tombstones removed).
    pub async fn enforce_retention(&self) -> ApiResult<(u64, u64)> {
        let batch = self.settings.batch_size.max(1);
        let mut totals = (0, 0);
        for (scope, policy) in scopes(self.store.retention_policies().await?) {
            if let Some(before) = cutoff(policy.message_days) {
                loop {
                    let (count, _) = self.store.expire_messages(&scope, before, batch).await?;
                    totals.0 += count;
                    if count < batch {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
            if let Some(before) = cutoff(policy.tombstone_days) {
                loop {
                    let count = self.store.remove_tombstones(&scope, before, batch).await?;
                    totals.1 += count;
                    if count < batch {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
        Ok(totals)
    }
}

impl Compliance {
    /// Deletes what this service keeps of the conversations conversation-service purged
    /// (their `conversation.purged` events), in batches of one short transaction each, until
    /// none is left. Returns how many rows went.
    pub async fn purge_conversations(&self) -> ApiResult<u64> {
        let batch = self.settings.batch_size.max(1);
        let mut removed = 0;
        loop {
            let pending = self.store.pending_purges(16).await?;
            if pending.is_empty() {
                if removed > 0 {
                    self.store.compact().await?;
                }
                return Ok(removed);
            }
            for (tenant, conversation) in pending {
                loop {
                    let (count, finished) = self
                        .store
                        .purge_conversation(&tenant, conversation, batch)
                        .await?;
                    removed += count;
                    if finished {
                        tracing::info!(tenant = %tenant, %conversation, "purged conversation's messages");
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// What one stored retention policy would purge if retention ran now.
#[derive(Debug, Clone)]
pub struct RetentionDue {
    /// The tenant.
    pub tenant: String,
    /// The conversation of an override; `None` for the tenant's policy (its conversations
    /// without an override).
    pub conversation: Option<Uuid>,
    /// The policy.
    pub policy: RetentionPolicy,
    /// Live messages older than `policy.message_days`.
    pub messages: u64,
    /// Tombstones deleted more than `policy.tombstone_days` ago (without replies).
    pub tombstones: u64,
}

/// What retention would purge now, policy by policy (of `tenants` only, unless empty), and the
/// conversations conversation-service purged whose data is still to be deleted.
pub async fn retention_status(
    store: &dyn crate::store::ComplianceStore,
    tenants: &[String],
) -> ApiResult<(Vec<RetentionDue>, Vec<(TenantId, Uuid)>)> {
    let mut due = Vec::new();
    for (scope, policy) in scopes(store.retention_policies().await?) {
        if !tenants.is_empty() && !tenants.contains(&scope.tenant) {
            continue;
        }
        let (messages, tombstones) = store
            .retention_due(
                &scope,
                cutoff(policy.message_days),
                cutoff(policy.tombstone_days),
            )
            .await?;
        due.push(RetentionDue {
            tenant: scope.tenant.clone(),
            conversation: scope.conversation,
            policy,
            messages,
            tombstones,
        });
    }
    let mut purges = store.pending_purges(u64::from(u32::MAX)).await?;
    purges.retain(|(tenant, _)| tenants.is_empty() || tenants.iter().any(|t| t == tenant.as_str()));
    Ok((due, purges))
}

/// What a run halted by the test hook ends with.
const HALTED: &str = "halted by halt_after_batches";

/// The time before which `days` of retention expire; `None` for 0 (keep forever).
pub fn cutoff(days: u32) -> Option<DateTime<Utc>> {
    if days == 0 {
        return None;
    }
    now().checked_sub_signed(chrono::Duration::days(i64::from(days)))
}

/// Each stored policy with the messages it covers: an override its conversation, a tenant's
/// policy the tenant's other conversations.
pub fn scopes(
    policies: Vec<crate::domain::compliance::ScopedPolicy>,
) -> Vec<(RetentionScope, RetentionPolicy)> {
    let mut overridden: HashMap<String, Vec<Uuid>> = HashMap::new();
    for policy in &policies {
        if let Some(conversation) = policy.conversation {
            overridden
                .entry(policy.tenant.clone())
                .or_default()
                .push(conversation);
        }
    }
    policies
        .into_iter()
        .map(|scoped| {
            let scope = RetentionScope {
                overridden: match scoped.conversation {
                    Some(_) => Vec::new(),
                    None => overridden.get(&scoped.tenant).cloned().unwrap_or_default(),
                },
                tenant: scoped.tenant,
                conversation: scoped.conversation,
            };
            (scope, scoped.policy)
        })
        .collect()
}
