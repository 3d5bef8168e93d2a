//! A message and what hangs off it (revisions, reactions, read state), with the rules that
//! need no I/O: who may edit, what an edit changes, and the fingerprint that tells an
//! idempotent retry from a conflicting reuse of a request id.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_platform::validate::principal_id;
use messaging_platform::{ApiError, FieldViolations, RequestId};
use uuid::Uuid;

use super::content::Content;
use super::metadata::Metadata;

/// Most mentions on a message.
pub const MAX_MENTIONS: usize = 50;

/// A message as the use cases see it: plaintext, whatever the storage does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// UUIDv7: ordered by send time.
    pub id: Uuid,
    /// The conversation.
    pub conversation: Uuid,
    /// Gap-free position in the conversation, from 1.
    pub sequence: i64,
    /// Who sent it.
    pub sender: String,
    /// Text or an end-to-end payload; `None` for tombstones (and attachment-only messages).
    pub content: Option<Content>,
    /// The thread root, for replies.
    pub parent: Option<Uuid>,
    /// Mentioned users, each once.
    pub mentions: Vec<String>,
    /// The client's metadata.
    pub metadata: Metadata,
    /// Whether attachments came with it.
    pub has_attachments: bool,
    /// The attachments it carries, in the order they were sent (none once deleted).
    pub attachments: Vec<super::attachment::Attachment>,
    /// Replies in its thread (roots only).
    pub reply_count: i32,
    /// When the newest reply came (roots only).
    pub last_reply_at: Option<DateTime<Utc>>,
    /// The sender's idempotency key.
    pub request_id: Option<RequestId>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// When it was deleted; a deleted message keeps only id, sequence, sender and times.
    pub deleted_at: Option<DateTime<Utc>>,
    /// How many earlier versions are kept.
    pub revision_count: i32,
}

impl Message {
    /// Whether it was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// A message to send, validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The conversation.
    pub conversation: Uuid,
    /// Text or ciphertext; `None` only with attachments.
    pub content: Option<Content>,
    /// The message replied to (any message of the thread; replies attach to its root).
    pub parent: Option<Uuid>,
    /// Mentioned users (checked for participation by the use case).
    pub mentions: Vec<String>,
    /// Metadata.
    pub metadata: Metadata,
    /// Idempotency key.
    pub request_id: Option<RequestId>,
    /// Client search tokens of an end-to-end payload.
    pub search_tokens: Vec<Vec<u8>>,
    /// Attachments to carry, in order.
    pub attachments: Vec<Uuid>,
}

impl NewMessage {
    /// A fingerprint of everything the request asks for (mention order aside), so that a retry
    /// with the same request id can be told from a different message reusing it.
    pub fn fingerprint(&self) -> String {
        let mut mentions: Vec<&str> = self.mentions.iter().map(String::as_str).collect();
        mentions.sort_unstable();
        let parent = self.parent.map(|id| id.to_string()).unwrap_or_default();
        let mut parts: Vec<&[u8]> = match &self.content {
            Some(Content::Text(text)) => vec![b"text", text.as_bytes()],
            Some(Content::Encrypted {
                ciphertext,
                algorithm,
                key_id,
            }) => vec![
                b"encrypted",
                ciphertext,
                algorithm.as_bytes(),
                key_id.as_bytes(),
            ],
            None => vec![b"none"],
        };
        parts.push(parent.as_bytes());
        parts.extend(mentions.iter().map(|mention| mention.as_bytes()));
        let attachments: Vec<String> = self.attachments.iter().map(Uuid::to_string).collect();
        parts.push(b"attachments");
        parts.extend(attachments.iter().map(String::as_bytes));
        for (key, value) in &self.metadata {
            parts.push(key.as_bytes());
            parts.push(value.as_bytes());
        }
        messaging_platform::idempotency::fingerprint(parts)
    }
}

/// An edit, validated; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// New content.
    pub content: Option<Content>,
    /// New metadata.
    pub metadata: Option<Metadata>,
    /// New mentions.
    pub mentions: Option<Vec<String>>,
    /// Client search tokens of a new end-to-end payload (they replace the old ones).
    pub search_tokens: Vec<Vec<u8>>,
}

impl Edit {
    /// The message after this edit by `editor` at `at`, or why it may not be made: only the
    /// author edits, never a deleted message, within `window` of sending, keeping the
    /// content's kind. Changed content counts a revision (the store keeps the old content).
    pub fn apply(
        &self,
        current: &Message,
        editor: &str,
        at: DateTime<Utc>,
        window: Option<Duration>,
    ) -> Result<Message, ApiError> {
        if current.sender != editor {
            return Err(ApiError::PermissionDenied(
                "only the author may edit a message".to_owned(),
            ));
        }
        if current.is_deleted() {
            return Err(ApiError::FailedPrecondition(
                "the message is deleted".to_owned(),
            ));
        }
        if let Some(window) = window
            && at - current.created_at
                > chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX)
        {
            return Err(ApiError::FailedPrecondition(
                "the edit window of this message has passed".to_owned(),
            ));
        }
        let mut next = current.clone();
        if let Some(content) = &self.content {
            if let Some(old) = &current.content
                && old.kind() != content.kind()
            {
                return Err(ApiError::invalid(
                    "content",
                    format!("must stay {} like the original", old.kind().as_str()),
                ));
            }
            if current.content.as_ref() != Some(content) {
                next.content = Some(content.clone());
                next.revision_count += 1;
            }
        }
        if let Some(metadata) = &self.metadata {
            next.metadata = metadata.clone();
        }
        if let Some(mentions) = &self.mentions {
            next.mentions = mentions.clone();
        }
        next.edited_at = Some(at);
        Ok(next)
    }
}

/// Checks mentioned user ids: at most [`MAX_MENTIONS`], each a valid principal id; repeats
/// are dropped.
pub fn mentions(violations: &mut FieldViolations, field: &str, ids: &[String]) -> Vec<String> {
    if ids.len() > MAX_MENTIONS {
        violations.add(field, format!("at most {MAX_MENTIONS} mentions"));
        return Vec::new();
    }
    let mut seen = HashSet::new();
    ids.iter()
        .enumerate()
        .filter_map(|(index, id)| violations.check(principal_id(&format!("{field}[{index}]"), id)))
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// An earlier version of a message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The message.
    pub message: Uuid,
    /// 1 for the content before the first edit, and so on.
    pub revision: i32,
    /// The content it had.
    pub content: Option<Content>,
    /// When that content was written.
    pub created_at: DateTime<Utc>,
}

/// One user's reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// The conversation of the message.
    pub conversation: Uuid,
    /// The message.
    pub message: Uuid,
    /// Who reacted.
    pub user: String,
    /// The emoji (validated by [`super::emoji::emoji`]).
    pub emoji: String,
    /// When.
    pub created_at: DateTime<Utc>,
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
    /// The message.
    pub message: Message,
    /// Reactions by emoji, in first-reaction order.
    pub reactions: Vec<ReactionSummary>,
}

/// A user's read watermark in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    /// The conversation.
    pub conversation: Uuid,
    /// The reader.
    pub user: String,
    /// Every message up to this sequence counts as read.
    pub last_read_sequence: i64,
    /// When it last moved.
    pub updated_at: DateTime<Utc>,
}

/// Unread figures of one conversation for one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unread {
    /// Latest sequence.
    pub last_sequence: i64,
    /// The user's watermark.
    pub last_read_sequence: i64,
    /// Messages after the watermark, neither own nor deleted.
    pub unread: i64,
    /// Of those, mentioning the user.
    pub mentions: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_message(content: &str, mentions: &[&str]) -> NewMessage {
        NewMessage {
            conversation: Uuid::nil(),
            content: Some(Content::Text(content.to_owned())),
            parent: None,
            mentions: mentions.iter().map(|user| (*user).to_owned()).collect(),
            metadata: Metadata::new(),
            request_id: None,
            search_tokens: Vec::new(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn fingerprint_ignores_mention_order_but_not_content() {
        let a = new_message("hi", &["a", "b"]).fingerprint();
        let b = new_message("hi", &["b", "a"]).fingerprint();
        let c = new_message("ho", &[]).fingerprint();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    fn sent(at: DateTime<Utc>) -> Message {
        Message {
            id: Uuid::nil(),
            conversation: Uuid::nil(),
            sequence: 1,
            sender: "alice".to_owned(),
            content: Some(Content::Text("hi".to_owned())),
            parent: None,
            mentions: Vec::new(),
            metadata: Metadata::new(),
            has_attachments: false,
            attachments: Vec::new(),
            reply_count: 0,
            last_reply_at: None,
            request_id: None,
            created_at: at,
            edited_at: None,
            deleted_at: None,
            revision_count: 0,
        }
    }

    #[test]
    fn edits_count_a_revision_only_when_the_content_changes() {
        let at = Utc::now();
        let message = sent(at);
        let same = Edit {
            content: Some(Content::Text("hi".to_owned())),
            ..Edit::default()
        };
        assert_eq!(
            same.apply(&message, "alice", at, None)
                .map(|next| next.revision_count)
                .ok(),
            Some(0)
        );
        let changed = Edit {
            content: Some(Content::Text("ho".to_owned())),
            ..Edit::default()
        };
        let next = changed.apply(&message, "alice", at, None).ok();
        assert_eq!(next.as_ref().map(|next| next.revision_count), Some(1));
        assert_eq!(next.and_then(|next| next.edited_at), Some(at));
    }

    #[test]
    fn edits_are_the_authors_within_the_window_and_keep_the_kind() {
        let at = Utc::now();
        let message = sent(at - chrono::Duration::minutes(10));
        let edit = Edit {
            content: Some(Content::Text("ho".to_owned())),
            ..Edit::default()
        };
        assert!(matches!(
            edit.apply(&message, "bob", at, None),
            Err(ApiError::PermissionDenied(_))
        ));
        assert!(matches!(
            edit.apply(&message, "alice", at, Some(Duration::from_secs(60))),
            Err(ApiError::FailedPrecondition(_))
        ));
        let encrypted = Edit {
            content: Some(Content::Encrypted {
                ciphertext: vec![1],
                algorithm: "x".to_owned(),
                key_id: "k".to_owned(),
            }),
            ..Edit::default()
        };
        assert!(matches!(
            encrypted.apply(&message, "alice", at, None),
            Err(ApiError::InvalidArgument(_))
        ));
        let mut deleted = message;
        deleted.deleted_at = Some(at);
        assert!(matches!(
            edit.apply(&deleted, "alice", at, None),
            Err(ApiError::FailedPrecondition(_))
        ));
    }
}
