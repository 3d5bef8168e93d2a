//! The use cases of message-service. Each asks the [`ConversationGate`] first, then works in
//! one transaction: sequences, thread counters, mentions and read watermarks change together
//! with the message they belong to.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_platform::pagination;
use messaging_platform::time::now;
use messaging_platform::{ApiError, ApiResult, Caller};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::client::{Action, ConversationGate};
use crate::convert;
use crate::domain::{self, Content};
use crate::events::EventBus;
use crate::keys::{KeyError, Keyring};
use crate::search;
use crate::store::{
    self, MessageFilter, MessageRow, ReactionRow, ReadStateRow, RevisionRow, SequenceRange, Unread,
};
use messaging_platform::crypto::{DataKey, SearchKey};
use messaging_proto::message::v1 as pb;
use sea_orm::ConnectionTrait;

/// Limits the use cases enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest body in bytes.
    pub max_body_bytes: usize,
    /// How long authors may edit; `None` means always.
    pub edit_window: Option<Duration>,
}

/// Aggregated reactions of one emoji on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionSummary {
    /// The emoji.
    pub emoji: String,
    /// How many users.
    pub count: i64,
    /// Whether the caller is one of them.
    pub mine: bool,
}

/// A message with what the caller sees of its reactions.
#[derive(Debug, Clone)]
pub struct MessageView {
    /// The stored row (tombstones have no content).
    pub row: MessageRow,
    /// Reactions by emoji.
    pub reactions: Vec<ReactionSummary>,
}

/// A new message, validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The conversation.
    pub conversation: Uuid,
    /// Text or ciphertext; `None` only with attachments.
    pub content: Option<Content>,
    /// The message replied to.
    pub parent: Option<Uuid>,
    /// Mentioned users (not yet checked for participation).
    pub mentions: Vec<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Idempotency key.
    pub request_id: Option<String>,
    /// Client search tokens of an end-to-end payload.
    pub search_tokens: Vec<Vec<u8>>,
}

/// An edit, validated; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// New content.
    pub content: Option<Content>,
    /// New metadata.
    pub metadata: Option<BTreeMap<String, String>>,
    /// New mentions.
    pub mentions: Option<Vec<String>>,
    /// Client search tokens of a new end-to-end payload (they replace the old ones).
    pub search_tokens: Vec<Vec<u8>>,
}

/// Where a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the newest, backwards.
    Newest,
    /// From the oldest, forwards.
    Oldest,
    /// From a sequence (inclusive), backwards.
    BackwardFrom(i64),
    /// From a sequence (inclusive), forwards.
    ForwardFrom(i64),
    /// Around a message.
    Around(Uuid),
}

/// A listing request, validated.
#[derive(Debug, Clone)]
pub struct ListRequest {
    /// The conversation.
    pub conversation: Uuid,
    /// Where to start (ignored when a page token is given).
    pub start: Start,
    /// Filters.
    pub filter: MessageFilter,
    /// Page size.
    pub page_size: u64,
    /// Page token as received.
    pub page_token: String,
}

/// A search, validated.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The words.
    pub query: String,
    /// Client tokens to match against end-to-end payloads.
    pub client_tokens: Vec<Vec<u8>>,
    /// Only these conversations; empty means every one the caller participates in.
    pub conversations: Vec<Uuid>,
    /// Filters.
    pub filter: MessageFilter,
    /// Page size.
    pub page_size: u64,
    /// Page token as received.
    pub page_token: String,
    /// The time the client gave the call, if it said.
    pub time_left: Option<std::time::Duration>,
}

/// Most distinct words and search tokens in one search: each is a join, so this bounds the
/// cost of a query on both backends (and stays within what PostgreSQL plans exhaustively).
pub const MAX_SEARCH_TERMS: usize = 8;

/// One search result.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// The message.
    pub view: MessageView,
    /// Its text around the matches, matches marked.
    pub snippet: String,
    /// Relevance times 1,000.
    pub score: i64,
}

/// A page of messages.
#[derive(Debug, Clone)]
pub struct MessagePage {
    /// The messages, in the listing's order.
    pub messages: Vec<MessageView>,
    /// Continues in the listing's direction (forward for AROUND).
    pub next_page_token: String,
    /// For AROUND: continues backwards.
    pub previous_page_token: String,
}

/// The message use cases.
#[derive(Debug, Clone)]
pub struct Messages {
    db: DatabaseConnection,
    gate: ConversationGate,
    policy: Policy,
    bus: EventBus,
    keys: Keyring,
    limits: std::sync::Arc<crate::limits::Limits>,
}

fn not_found() -> ApiError {
    ApiError::NotFound("message")
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The content a row holds.
pub fn row_content(
    kind: &str,
    text: &Option<String>,
    ciphertext: &Option<Vec<u8>>,
    algorithm: &Option<String>,
    key_id: &Option<String>,
) -> Option<Content> {
    match kind {
        "text" => Some(Content::Text(text.clone().unwrap_or_default())),
        "encrypted" => Some(Content::Encrypted {
            ciphertext: ciphertext.clone().unwrap_or_default(),
            algorithm: algorithm.clone().unwrap_or_default(),
            key_id: key_id.clone().unwrap_or_default(),
        }),
        _ => None,
    }
}

fn set_content(row: &mut MessageRow, content: Option<&Content>) {
    row.content_kind = content.map_or("none", Content::kind).to_owned();
    row.text = None;
    row.ciphertext = None;
    row.cipher_algorithm = None;
    row.cipher_key_id = None;
    match content {
        Some(Content::Text(text)) => row.text = Some(text.clone()),
        Some(Content::Encrypted {
            ciphertext,
            algorithm,
            key_id,
        }) => {
            row.ciphertext = Some(ciphertext.clone());
            row.cipher_algorithm = Some(algorithm.clone());
            row.cipher_key_id = Some(key_id.clone());
        }
        None => {}
    }
}

/// The keyset position of the next page and the direction it goes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    /// Continue below (`b`) or above (`f`) this sequence.
    d: char,
    s: i64,
}

impl Messages {
    /// The use cases over `db`, asking `gate` for permissions.
    pub fn new(
        db: DatabaseConnection,
        gate: ConversationGate,
        policy: Policy,
        bus: EventBus,
        keys: Keyring,
        limits: std::sync::Arc<crate::limits::Limits>,
    ) -> Self {
        Self {
            db,
            gate,
            policy,
            bus,
            keys,
            limits,
        }
    }

    /// The per-user and per-tenant limits.
    pub fn limits(&self) -> &std::sync::Arc<crate::limits::Limits> {
        &self.limits
    }

    /// The tenants' keys.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The permission gate (streams check membership through it too).
    pub fn gate(&self) -> &ConversationGate {
        &self.gate
    }

    /// The database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The event bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The configured limits.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn views(
        &self,
        caller: &Caller,
        mut rows: Vec<MessageRow>,
    ) -> ApiResult<Vec<MessageView>> {
        for row in &mut rows {
            self.keys.open_message(&self.db, row).await?;
        }
        let ids = rows.iter().map(|row| row.id).collect();
        let counts =
            store::reaction_counts(&self.db, &caller.tenant_id, ids, &caller.user_id).await?;
        let mut by_message: HashMap<Uuid, Vec<ReactionSummary>> = HashMap::new();
        for count in counts {
            by_message
                .entry(count.message_id)
                .or_default()
                .push(ReactionSummary {
                    emoji: count.emoji,
                    count: count.count,
                    mine: count.mine > 0,
                });
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let reactions = by_message.remove(&row.id).unwrap_or_default();
                MessageView { row, reactions }
            })
            .collect())
    }

    async fn view(&self, caller: &Caller, row: MessageRow) -> ApiResult<MessageView> {
        let mut views = self.views(caller, vec![row]).await?;
        views
            .pop()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("view vanished")))
    }

    async fn check_mentions(
        &self,
        caller: &Caller,
        conversation: Uuid,
        field: &str,
        mentions: &[String],
    ) -> ApiResult<()> {
        let checks = mentions.iter().map(|user| {
            self.gate
                .is_participant(&caller.tenant_id, user, conversation)
        });
        let answers = futures::future::join_all(checks).await;
        let mut violations = messaging_platform::FieldViolations::new();
        for (index, answer) in answers.into_iter().enumerate() {
            if !answer? {
                violations.add(
                    format!("{field}[{index}]"),
                    "is not a participant of the conversation",
                );
            }
        }
        violations.finish()
    }

    /// SendMessage: idempotent per sender, conversation and request id.
    pub async fn send(&self, caller: &Caller, new: NewMessage) -> ApiResult<MessageView> {
        self.limits.check_write(caller)?;
        self.gate
            .require(caller, new.conversation, Action::Post)
            .await?;
        self.check_mentions(caller, new.conversation, "mention_ids", &new.mentions)
            .await?;
        let mut hash = domain::payload_fingerprint(
            new.content.as_ref(),
            new.parent,
            &new.mentions,
            &new.metadata,
        );
        if self.keys.is_enabled() {
            // A bare hash of a short text can be guessed; keyed, it cannot.
            let key = self.keys.search(&self.db, &caller.tenant_id).await?;
            hash = hex(&key.token(&format!("request\0{hash}")));
        }
        if let Some(existing) = self.find_retry(caller, &new, &hash).await? {
            return self.view(caller, existing).await;
        }
        match self.insert(caller, &new, &hash).await {
            // A new message has no reactions yet.
            Ok(mut row) => {
                self.keys.open_message(&self.db, &mut row).await?;
                Ok(MessageView {
                    row,
                    reactions: Vec::new(),
                })
            }
            Err(InsertError::Keys(error)) => Err(error.into()),
            Err(InsertError::Db(error)) => {
                self.after_failed_insert(caller, &new, &hash, error).await
            }
        }
    }

    async fn after_failed_insert(
        &self,
        caller: &Caller,
        new: &NewMessage,
        hash: &str,
        error: DbErr,
    ) -> ApiResult<MessageView> {
        match error {
            // A concurrent retry with the same request id committed first.
            error if store::is_unique_violation(&error) => {
                match self.find_retry(caller, new, hash).await? {
                    Some(existing) => self.view(caller, existing).await,
                    None => Err(ApiError::internal(error)),
                }
            }
            error => Err(map_send_error(error)),
        }
    }

    async fn find_retry(
        &self,
        caller: &Caller,
        new: &NewMessage,
        hash: &str,
    ) -> ApiResult<Option<MessageRow>> {
        let Some(request_id) = &new.request_id else {
            return Ok(None);
        };
        let existing = store::find_by_request(
            &self.db,
            &caller.tenant_id,
            new.conversation,
            &caller.user_id,
            request_id,
        )
        .await?;
        match existing {
            Some(row) => messaging_platform::idempotency::replay(
                Some(&row.payload_hash),
                hash,
                Some(row.clone()),
            ),
            None => Ok(None),
        }
    }

    async fn insert(
        &self,
        caller: &Caller,
        new: &NewMessage,
        hash: &str,
    ) -> Result<MessageRow, InsertError> {
        let tenant = caller.tenant_id.as_str();
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let key = self.keys.current(&transaction, tenant).await?;
        let search_key = self.keys.search(&transaction, tenant).await?;
        let id = Uuid::now_v7();
        // Before the sequence row is locked: the index needs no position.
        let entries = index_entries(&search_key, new.content.as_ref(), &new.search_tokens);
        store::insert_search_entries(&transaction, tenant, new.conversation, id, entries).await?;
        let mut root_id = None;
        if let Some(parent_id) = new.parent {
            let parent =
                store::find_message(&transaction, tenant, new.conversation, parent_id, false)
                    .await?
                    .ok_or_else(|| DbErr::Custom(UNKNOWN_PARENT.to_owned()))?;
            let root_of_parent = parent.parent_id.unwrap_or(parent.id);
            root_id = Some(root_of_parent);
        }
        let sequence = store::next_sequence(&transaction, tenant, new.conversation).await?;
        let at = now();
        if let Some(root_id) = root_id {
            let mut root =
                store::find_message(&transaction, tenant, new.conversation, root_id, true)
                    .await?
                    .ok_or_else(|| DbErr::Custom(UNKNOWN_PARENT.to_owned()))?;
            root.reply_count += 1;
            root.last_reply_at = Some(at);
            store::save_message(&transaction, root).await?;
        }
        let mut row = MessageRow {
            id,
            tenant_id: tenant.to_owned(),
            conversation_id: new.conversation,
            sequence,
            sender_id: caller.user_id.clone(),
            content_kind: String::new(),
            text: None,
            ciphertext: None,
            cipher_algorithm: None,
            cipher_key_id: None,
            parent_id: root_id,
            mention_ids: to_json(&new.mentions),
            metadata: to_json(&new.metadata),
            has_attachments: false,
            reply_count: 0,
            last_reply_at: None,
            request_id: new.request_id.clone(),
            payload_hash: hash.to_owned(),
            created_at: at,
            edited_at: None,
            deleted_at: None,
            revision_count: 0,
            key_version: None,
            sealed: None,
        };
        set_content(&mut row, new.content.as_ref());
        let message = convert::message_to_proto(MessageView {
            row: row.clone(),
            reactions: Vec::new(),
        });
        self.keys.seal_message(key.as_deref(), &mut row)?;
        store::insert_message(&transaction, row.clone()).await?;
        store::insert_mentions(&transaction, &row, &new.mentions).await?;
        // Sending implies having read the conversation up to one's own message.
        store::raise_read_state(
            &transaction,
            tenant,
            new.conversation,
            &caller.user_id,
            sequence,
            at,
        )
        .await?;
        let payload = pb::event::Payload::MessageCreated(pb::MessageCreated {
            message: Some(message),
        });
        record_event(
            &transaction,
            key.as_deref(),
            caller,
            new.conversation,
            at,
            payload,
        )
        .await?;
        transaction.commit().await?;
        self.bus.committed();
        Ok(row)
    }

    /// GetMessage.
    pub async fn get(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
    ) -> ApiResult<MessageView> {
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        let row = store::find_message(&self.db, &caller.tenant_id, conversation, id, false)
            .await?
            .ok_or_else(not_found)?;
        self.view(caller, row).await
    }

    /// ListMessages.
    pub async fn list(&self, caller: &Caller, request: &ListRequest) -> ApiResult<MessagePage> {
        self.gate
            .require(caller, request.conversation, Action::Read)
            .await?;
        let filter = &request.filter;
        let [sender, thread, attachments, start, end] = filter.fingerprint_parts();
        let fingerprint = pagination::fingerprint(&[
            "messages",
            &request.conversation.to_string(),
            &sender,
            &thread,
            &attachments,
            &start,
            &end,
        ]);
        let cursor: Option<Cursor> =
            pagination::decode("page_token", &request.page_token, &fingerprint)?;
        let tenant = caller.tenant_id.as_str();
        let size = request.page_size;
        let page = |range: SequenceRange, limit: u64| {
            store::list_messages(&self.db, tenant, request.conversation, filter, range, limit)
        };
        let backward = |below: Option<i64>| SequenceRange {
            above: None,
            below,
            descending: true,
        };
        let forward = |above: Option<i64>| SequenceRange {
            above,
            below: None,
            descending: false,
        };
        let token = |direction: char, sequence: i64| {
            pagination::encode(
                &fingerprint,
                &Cursor {
                    d: direction,
                    s: sequence,
                },
            )
        };

        let (range, around) = match (cursor, request.start) {
            (Some(Cursor { d: 'f', s }), _) => (forward(Some(s)), None),
            (Some(Cursor { s, .. }), _) => (backward(Some(s)), None),
            (None, Start::Newest) => (backward(None), None),
            (None, Start::Oldest) => (forward(None), None),
            (None, Start::BackwardFrom(s)) => (backward(Some(s.saturating_add(1))), None),
            (None, Start::ForwardFrom(s)) => (forward(Some(s.saturating_sub(1))), None),
            (None, Start::Around(id)) => {
                let anchor = store::find_message(&self.db, tenant, request.conversation, id, false)
                    .await?
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "around_message_id",
                            "no such message in this conversation",
                        )
                    })?;
                (forward(Some(anchor.sequence - 1)), Some(anchor.sequence))
            }
        };
        if let Some(anchor) = around {
            let before_count = size / 2;
            let mut before = page(backward(Some(anchor)), before_count + 1).await?;
            let more_before = before.len() as u64 > before_count;
            before.truncate(usize::try_from(before_count).unwrap_or(usize::MAX));
            before.reverse();
            let after_count = size - before.len() as u64;
            let mut after = page(range, after_count + 1).await?;
            let more_after = after.len() as u64 > after_count;
            after.truncate(usize::try_from(after_count).unwrap_or(usize::MAX));
            let previous_page_token = match (more_before, before.first()) {
                (true, Some(first)) => token('b', first.sequence),
                _ => String::new(),
            };
            let next_page_token = match (more_after, after.last()) {
                (true, Some(last)) => token('f', last.sequence),
                _ => String::new(),
            };
            before.extend(after);
            return Ok(MessagePage {
                messages: self.views(caller, before).await?,
                next_page_token,
                previous_page_token,
            });
        }
        let mut rows = page(range, size + 1).await?;
        let more = rows.len() as u64 > size;
        rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => token(if range.descending { 'b' } else { 'f' }, last.sequence),
            _ => String::new(),
        };
        Ok(MessagePage {
            messages: self.views(caller, rows).await?,
            next_page_token,
            previous_page_token: String::new(),
        })
    }

    /// UpdateMessage: the author edits within the edit window; the old content becomes a
    /// revision.
    pub async fn update(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        edit: Edit,
    ) -> ApiResult<MessageView> {
        self.limits.check_write(caller)?;
        self.gate
            .require(caller, conversation, Action::Post)
            .await?;
        if let Some(mentions) = &edit.mentions {
            self.check_mentions(caller, conversation, "mention_ids", mentions)
                .await?;
        }
        let tenant = caller.tenant_id.as_str();
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut row = store::find_message(&transaction, tenant, conversation, id, true)
            .await?
            .ok_or_else(not_found)?;
        self.keys.open_message(&transaction, &mut row).await?;
        let key = self.keys.current(&transaction, tenant).await?;
        if row.sender_id != caller.user_id {
            return Err(ApiError::PermissionDenied(
                "only the author may edit a message".to_owned(),
            ));
        }
        if row.deleted_at.is_some() {
            return Err(ApiError::FailedPrecondition(
                "the message is deleted".to_owned(),
            ));
        }
        let at = now();
        if let Some(window) = self.policy.edit_window
            && at - row.created_at
                > chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX)
        {
            return Err(ApiError::FailedPrecondition(
                "the edit window of this message has passed".to_owned(),
            ));
        }
        let old = row_content(
            &row.content_kind,
            &row.text,
            &row.ciphertext,
            &row.cipher_algorithm,
            &row.cipher_key_id,
        );
        if let Some(content) = &edit.content {
            if old.as_ref().is_some_and(|old| old.kind() != content.kind()) {
                return Err(ApiError::invalid(
                    "content",
                    format!("must stay {} like the original", row.content_kind),
                ));
            }
            if old.as_ref() != Some(content) {
                row.revision_count += 1;
                let mut revision = RevisionRow {
                    tenant_id: row.tenant_id.clone(),
                    message_id: row.id,
                    revision: row.revision_count,
                    content_kind: row.content_kind.clone(),
                    text: row.text.clone(),
                    ciphertext: row.ciphertext.clone(),
                    cipher_algorithm: row.cipher_algorithm.clone(),
                    cipher_key_id: row.cipher_key_id.clone(),
                    created_at: row.edited_at.unwrap_or(row.created_at),
                    key_version: None,
                    sealed: None,
                };
                self.keys
                    .seal_revision(key.as_deref(), conversation, &mut revision)?;
                store::insert_revision(&transaction, revision).await?;
                set_content(&mut row, Some(content));
                let search_key = self.keys.search(&transaction, tenant).await?;
                let entries = index_entries(&search_key, Some(content), &edit.search_tokens);
                store::replace_search_entries(&transaction, tenant, conversation, row.id, entries)
                    .await?;
            }
        }
        if let Some(metadata) = &edit.metadata {
            row.metadata = to_json(metadata);
        }
        if let Some(mentions) = &edit.mentions {
            row.mention_ids = to_json(mentions);
            store::replace_mentions(&transaction, &row, mentions).await?;
        }
        row.edited_at = Some(at);
        let message = convert::message_to_proto(MessageView {
            row: row.clone(),
            reactions: Vec::new(),
        });
        self.keys.seal_message(key.as_deref(), &mut row)?;
        let row = store::save_message(&transaction, row).await?;
        let payload = pb::event::Payload::MessageEdited(pb::MessageEdited {
            message: Some(message),
        });
        record_event(
            &transaction,
            key.as_deref(),
            caller,
            conversation,
            at,
            payload,
        )
        .await?;
        transaction.commit().await?;
        self.bus.committed();
        self.view(caller, row).await
    }

    /// DeleteMessage: the author, or a moderator; the message stays as a tombstone.
    pub async fn delete(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
    ) -> ApiResult<MessageView> {
        self.limits.check_write(caller)?;
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        let tenant = caller.tenant_id.as_str();
        let existing = store::find_message(&self.db, tenant, conversation, id, false)
            .await?
            .ok_or_else(not_found)?;
        let action = if existing.sender_id == caller.user_id {
            Action::Post
        } else {
            Action::Moderate
        };
        self.gate.require(caller, conversation, action).await?;
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let mut row = store::find_message(&transaction, tenant, conversation, id, true)
            .await?
            .ok_or_else(not_found)?;
        if row.deleted_at.is_some() {
            // End the transaction first: on SQLite it holds the only connection.
            transaction.rollback().await?;
            return self.view(caller, row).await;
        }
        let at = now();
        set_content(&mut row, None);
        row.metadata = "{}".to_owned();
        row.mention_ids = "[]".to_owned();
        row.revision_count = 0;
        row.deleted_at = Some(at);
        row.key_version = None;
        row.sealed = None;
        store::erase_message_dependents(&transaction, &row).await?;
        store::replace_search_entries(&transaction, tenant, conversation, row.id, Vec::new())
            .await?;
        if let Some(root_id) = row.parent_id
            && let Some(mut root) =
                store::find_message(&transaction, tenant, conversation, root_id, true).await?
        {
            root.reply_count = (root.reply_count - 1).max(0);
            store::save_message(&transaction, root).await?;
        }
        let row = store::save_message(&transaction, row).await?;
        let deleted = pb::MessageDeleted {
            message_id: row.id.to_string(),
            sequence: row.sequence,
        };
        record_event(
            &transaction,
            None,
            caller,
            conversation,
            at,
            pb::event::Payload::MessageDeleted(deleted),
        )
        .await?;
        transaction.commit().await?;
        self.bus.committed();
        self.view(caller, row).await
    }

    /// ListMessageRevisions: the author, or a moderator.
    pub async fn revisions(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        page_size: u64,
        page_token: &str,
    ) -> ApiResult<(Vec<RevisionRow>, String)> {
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        let tenant = caller.tenant_id.as_str();
        let row = store::find_message(&self.db, tenant, conversation, id, false)
            .await?
            .ok_or_else(not_found)?;
        if row.sender_id != caller.user_id {
            self.gate
                .require(caller, conversation, Action::Moderate)
                .await?;
        }
        let fingerprint = pagination::fingerprint(&["revisions", &id.to_string()]);
        let after: i32 = pagination::decode("page_token", page_token, &fingerprint)?.unwrap_or(0);
        let mut rows = store::list_revisions(&self.db, tenant, id, after, page_size + 1).await?;
        for revision in &mut rows {
            self.keys
                .open_revision(&self.db, conversation, revision)
                .await?;
        }
        let (rows, next) = pagination::finish(rows, page_size, &fingerprint, |last| last.revision);
        Ok((rows, next))
    }

    /// AddReaction (`add`) and RemoveReaction; both idempotent.
    pub async fn react(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        emoji: &str,
        add: bool,
    ) -> ApiResult<Vec<ReactionSummary>> {
        self.limits.check_write(caller)?;
        self.gate
            .require(caller, conversation, Action::React)
            .await?;
        let tenant = caller.tenant_id.as_str();
        let row = store::find_message(&self.db, tenant, conversation, id, false)
            .await?
            .ok_or_else(not_found)?;
        if row.deleted_at.is_some() {
            return Err(ApiError::FailedPrecondition(
                "the message is deleted".to_owned(),
            ));
        }
        let reaction = ReactionRow {
            tenant_id: tenant.to_owned(),
            message_id: id,
            user_id: caller.user_id.clone(),
            emoji: emoji.to_owned(),
            conversation_id: conversation,
            created_at: now(),
        };
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let changed = if add {
            store::add_reaction(&transaction, reaction.clone()).await?
        } else {
            store::remove_reaction(&transaction, tenant, id, &caller.user_id, emoji).await?
        };
        if changed {
            let proto = Some(convert::reaction_to_proto(&reaction));
            let payload = if add {
                pb::event::Payload::ReactionAdded(pb::ReactionAdded { reaction: proto })
            } else {
                pb::event::Payload::ReactionRemoved(pb::ReactionRemoved { reaction: proto })
            };
            record_event(
                &transaction,
                None,
                caller,
                conversation,
                reaction.created_at,
                payload,
            )
            .await?;
        }
        transaction.commit().await?;
        if changed {
            self.bus.committed();
        }
        Ok(self.view(caller, row).await?.reactions)
    }

    /// ListReactions.
    pub async fn reactions(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        emoji: Option<&str>,
        page_size: u64,
        page_token: &str,
    ) -> ApiResult<(Vec<ReactionRow>, String)> {
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        let tenant = caller.tenant_id.as_str();
        store::find_message(&self.db, tenant, conversation, id, false)
            .await?
            .ok_or_else(not_found)?;
        let fingerprint =
            pagination::fingerprint(&["reactions", &id.to_string(), emoji.unwrap_or("")]);
        let after: Option<(i64, String, String)> =
            pagination::decode("page_token", page_token, &fingerprint)?;
        let after = match after {
            Some((micros, user, emoji)) => Some((
                DateTime::<Utc>::from_timestamp_micros(micros)
                    .ok_or_else(|| ApiError::invalid("page_token", "is not a valid page token"))?,
                user,
                emoji,
            )),
            None => None,
        };
        let rows = store::list_reactions(&self.db, tenant, id, emoji, after, page_size + 1).await?;
        let (rows, next) = pagination::finish(rows, page_size, &fingerprint, |last| {
            (
                last.created_at.timestamp_micros(),
                last.user_id.clone(),
                last.emoji.clone(),
            )
        });
        Ok((rows, next))
    }

    /// MarkRead: forward only, clamped to the latest sequence.
    pub async fn mark_read(
        &self,
        caller: &Caller,
        conversation: Uuid,
        up_to: i64,
    ) -> ApiResult<ReadStateRow> {
        self.limits.check_write(caller)?;
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        let tenant = caller.tenant_id.as_str();
        let transaction = messaging_platform::db::begin_write(&self.db).await?;
        let last = store::last_sequence(&transaction, tenant, conversation).await?;
        let before = store::read_state(&transaction, tenant, conversation, &caller.user_id)
            .await?
            .map_or(0, |state| state.last_read_sequence);
        let at = now();
        let state = store::advance_read_state(
            &transaction,
            tenant,
            conversation,
            &caller.user_id,
            up_to.min(last),
            at,
        )
        .await?;
        let moved = state.last_read_sequence > before;
        if moved {
            let payload = pb::ReadStateMoved {
                read_state: Some(convert::read_state_to_proto(state.clone())),
            };
            record_event(
                &transaction,
                None,
                caller,
                conversation,
                at,
                pb::event::Payload::ReadStateMoved(payload),
            )
            .await?;
        }
        transaction.commit().await?;
        if moved {
            self.bus.committed();
        }
        Ok(state)
    }

    /// GetReadState.
    pub async fn read_states(
        &self,
        caller: &Caller,
        conversation: Uuid,
    ) -> ApiResult<Vec<ReadStateRow>> {
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        Ok(store::read_states(&self.db, &caller.tenant_id, conversation).await?)
    }

    /// The given conversations the caller may read (others left out), or, when none are
    /// given, every conversation the caller participates in (at most 1,000).
    async fn readable(&self, caller: &Caller, conversations: Vec<Uuid>) -> ApiResult<Vec<Uuid>> {
        Ok(if conversations.is_empty() {
            self.gate
                .joined_conversations(caller, MAX_UNREAD_CONVERSATIONS)
                .await?
        } else {
            self.gate.fence().await?;
            let checks = conversations
                .iter()
                .map(|id| self.gate.require_fenced(caller, *id, Action::Read));
            let answers = futures::future::join_all(checks).await;
            let mut readable = Vec::new();
            for (id, answer) in conversations.into_iter().zip(answers) {
                match answer {
                    Ok(_) => readable.push(id),
                    Err(ApiError::NotFound(_) | ApiError::PermissionDenied(_)) => {}
                    Err(error) => return Err(error),
                }
            }
            readable
        })
    }

    /// SearchMessages: messages with every word of the query (and every client token) in
    /// the conversations the caller may read, by relevance then newest first.
    pub async fn search(
        &self,
        caller: &Caller,
        request: SearchRequest,
    ) -> ApiResult<(Vec<SearchHit>, String)> {
        let terms = search::query_terms(&request.query);
        if terms.is_empty() && request.client_tokens.is_empty() {
            return Err(ApiError::invalid(
                "query",
                "has no words to search for (give words or search_tokens)",
            ));
        }
        let distinct_terms = terms.iter().collect::<std::collections::HashSet<_>>().len();
        let distinct_tokens = request
            .client_tokens
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        if distinct_terms + distinct_tokens > MAX_SEARCH_TERMS {
            let field = if distinct_terms > MAX_SEARCH_TERMS {
                "query"
            } else {
                "search_tokens"
            };
            return Err(ApiError::invalid(
                field,
                format!(
                    "at most {MAX_SEARCH_TERMS} distinct words and search tokens together \
                     (this has {distinct_terms} words and {distinct_tokens} tokens)"
                ),
            ));
        }
        let _place = self.limits.search_permit(&caller.tenant_id)?;
        let filter = &request.filter;
        let mut conversations: Vec<String> =
            request.conversations.iter().map(Uuid::to_string).collect();
        conversations.sort();
        let [sender, thread, attachments, start, end] = filter.fingerprint_parts();
        let fingerprint = pagination::fingerprint(&[
            "search",
            &request.query,
            &request
                .client_tokens
                .iter()
                .map(|token| hex(token))
                .collect::<Vec<_>>()
                .join(","),
            &conversations.join(","),
            &sender,
            &thread,
            &attachments,
            &start,
            &end,
        ]);
        let after: Option<(i64, Uuid)> =
            pagination::decode("page_token", &request.page_token, &fingerprint)?;
        let readable = self.readable(caller, request.conversations).await?;
        let tenant = caller.tenant_id.as_str();
        let key = self.keys.search(&self.db, tenant).await?;
        let mut tokens: Vec<Vec<u8>> = terms
            .iter()
            .map(|term| key.token(term).to_vec())
            .chain(
                request
                    .client_tokens
                    .iter()
                    .map(|token| client_token(&key, token)),
            )
            .collect();
        tokens.sort();
        tokens.dedup();
        let size = request.page_size;
        let within = request
            .time_left
            .map_or(self.limits.search_timeout(), |left| {
                left.min(self.limits.search_timeout())
            });
        let mut matches = store::search_within(
            &self.db,
            tenant,
            &store::SearchQuery {
                tokens,
                conversations: readable,
                filter: request.filter.clone(),
                after,
                limit: size + 1,
            },
            within,
        )
        .await?
        .ok_or_else(|| {
            ApiError::ResourceExhausted(format!(
                "the search ran out of time ({} ms): use rarer words or fewer conversations",
                within.as_millis()
            ))
        })?;
        let more = matches.len() as u64 > size;
        matches.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let next_page_token = match (more, matches.last()) {
            (true, Some(last)) => pagination::encode(&fingerprint, &(last.score, last.message_id)),
            _ => String::new(),
        };
        let rows = store::messages_by_id(
            &self.db,
            tenant,
            matches.iter().map(|hit| hit.message_id).collect(),
        )
        .await?;
        let mut views: HashMap<Uuid, MessageView> = self
            .views(caller, rows)
            .await?
            .into_iter()
            .map(|view| (view.row.id, view))
            .collect();
        let wanted: std::collections::HashSet<String> = terms.into_iter().collect();
        let hits = matches
            .into_iter()
            .filter_map(|hit| {
                let view = views.remove(&hit.message_id)?;
                let snippet = view
                    .row
                    .text
                    .as_deref()
                    .map(|text| search::snippet(text, &wanted))
                    .unwrap_or_default();
                Some(SearchHit {
                    view,
                    snippet,
                    score: hit.score,
                })
            })
            .collect();
        Ok((hits, next_page_token))
    }

    /// GetUnreadCounts: for the given conversations the caller may read (others are left out),
    /// or for all the caller participates in.
    pub async fn unread_counts(
        &self,
        caller: &Caller,
        conversations: Vec<Uuid>,
    ) -> ApiResult<Vec<(Uuid, Unread)>> {
        let readable = self.readable(caller, conversations).await?;
        let counts =
            store::unread_counts(&self.db, &caller.tenant_id, &caller.user_id, &readable).await?;
        Ok(readable
            .into_iter()
            .map(|id| (id, counts.get(&id).copied().unwrap_or_default()))
            .collect())
    }
}

/// Most conversations GetUnreadCounts covers in one call.
pub const MAX_UNREAD_CONVERSATIONS: usize = 1_000;

const UNKNOWN_PARENT: &str = "unknown parent";

fn map_send_error(error: DbErr) -> ApiError {
    match &error {
        DbErr::Custom(message) if message == UNKNOWN_PARENT => {
            ApiError::invalid("parent_id", "no such message in this conversation")
        }
        _ => ApiError::internal(error),
    }
}

/// Why a send's transaction failed.
#[derive(Debug)]
enum InsertError {
    Db(DbErr),
    Keys(KeyError),
}

impl From<DbErr> for InsertError {
    fn from(error: DbErr) -> Self {
        Self::Db(error)
    }
}

impl From<KeyError> for InsertError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Db(error) => Self::Db(error),
            other => Self::Keys(other),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The blind-index entries of a message: keyed tokens of its text's terms with their weights,
/// or of the client's own tokens for an end-to-end payload.
pub fn index_entries(
    key: &SearchKey,
    content: Option<&Content>,
    client_tokens: &[Vec<u8>],
) -> Vec<(Vec<u8>, i64)> {
    match content {
        Some(Content::Text(text)) => search::weighted_terms(text)
            .into_iter()
            .map(|(term, weight)| (key.token(&term).to_vec(), weight))
            .collect(),
        Some(Content::Encrypted { .. }) => client_tokens
            .iter()
            .map(|token| (client_token(key, token), search::CLIENT_TOKEN_WEIGHT))
            .collect(),
        None => Vec::new(),
    }
}

/// The stored form of a client's search token: keyed again, apart from word tokens.
pub fn client_token(key: &SearchKey, token: &[u8]) -> Vec<u8> {
    key.token(&format!("\0{}", hex(token))).to_vec()
}

/// Writes an event into the outbox within `connection`'s transaction, sealed with `key` when
/// it carries content.
async fn record_event<C: ConnectionTrait>(
    connection: &C,
    key: Option<&DataKey>,
    caller: &Caller,
    conversation: Uuid,
    at: DateTime<Utc>,
    payload: pb::event::Payload,
) -> Result<(), DbErr> {
    messaging_platform::outbox::store::record(
        connection,
        key,
        &caller.tenant_id,
        conversation,
        &caller.user_id,
        at,
        payload,
    )
    .await
}
