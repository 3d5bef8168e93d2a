//! Rows as domain values and back: the one place that knows the column encodings (content
//! kinds, JSON arrays and objects) and seals at rest.
//!
//! A message row's text and metadata are sealed together with the tenant's data key (AES-GCM,
//! bound to tenant, conversation and message), `key_version` naming the key; a revision seals
//! its text alone. `key_version` is `None` when there is nothing to seal (tombstones) and 0 when
//! the columns hold plaintext (encryption off). A value that does not open, or a column that
//! does not decode, is [`StoreError::Corrupt`]: never empty text.

use messaging_platform::RequestId;
use messaging_platform::crypto::{self, Binding, DataKey};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use super::entity::{message, reaction, read_state, revision};
use super::keys::Keyring;
use super::{StoreError, StoreResult};
use crate::domain::{Content, ContentKind, Message, Metadata, Reaction, ReadState, Revision};

const NONE: &str = "none";

/// What a message row seals: its text and metadata.
#[derive(serde::Serialize)]
struct SealedBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<&'a str>,
    m: &'a Metadata,
}

/// [`SealedBody`] as read back.
#[derive(serde::Deserialize)]
struct OpenedBody {
    #[serde(default)]
    t: Option<String>,
    #[serde(default)]
    m: Metadata,
}

fn corrupt(what: impl std::fmt::Display, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

fn message_binding(tenant: &str, conversation: Uuid, id: Uuid) -> Binding {
    Binding::new("message")
        .with(tenant.as_bytes())
        .with(conversation.as_bytes())
        .with(id.as_bytes())
}

fn revision_binding(tenant: &str, conversation: Uuid, message: Uuid, revision: i32) -> Binding {
    Binding::new("message.revision")
        .with(tenant.as_bytes())
        .with(conversation.as_bytes())
        .with(message.as_bytes())
        .with(&revision.to_be_bytes())
}

fn key_version(key: &DataKey) -> StoreResult<Option<i32>> {
    i32::try_from(key.version())
        .map(Some)
        .map_err(|error| corrupt("data key version", error))
}

/// The content columns: kind, text, ciphertext, algorithm, key id.
type ContentColumns = (
    String,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
);

/// The content columns of `content`; the text column only when `text_in_column` (sealed text
/// goes into the sealed column instead, and is not copied).
fn content_columns(content: Option<&Content>, text_in_column: bool) -> ContentColumns {
    match content {
        Some(Content::Text(text)) => (
            ContentKind::Text.as_str().to_owned(),
            text_in_column.then(|| text.clone()),
            None,
            None,
            None,
        ),
        Some(Content::Encrypted {
            ciphertext,
            algorithm,
            key_id,
        }) => (
            ContentKind::Encrypted.as_str().to_owned(),
            None,
            Some(ciphertext.clone()),
            Some(algorithm.clone()),
            Some(key_id.clone()),
        ),
        None => (NONE.to_owned(), None, None, None, None),
    }
}

fn content_from_columns(what: &str, columns: ContentColumns) -> StoreResult<Option<Content>> {
    let (kind, text, ciphertext, algorithm, key_id) = columns;
    match kind.as_str() {
        "text" => {
            Ok(Some(Content::Text(text.ok_or_else(|| {
                corrupt(what, "text content without text")
            })?)))
        }
        "encrypted" => match (ciphertext, algorithm, key_id) {
            (Some(ciphertext), Some(algorithm), Some(key_id)) => Ok(Some(Content::Encrypted {
                ciphertext,
                algorithm,
                key_id,
            })),
            _ => Err(corrupt(what, "encrypted content with a missing part")),
        },
        NONE => Ok(None),
        other => Err(corrupt(what, format!("unknown content kind {other:?}"))),
    }
}

/// `message` of `tenant` as a row, its text and metadata sealed with `key` (plaintext columns
/// when `None`). `fingerprint` is what [`super::MessageStore::send`] keeps for retries.
pub fn message_to_row(
    tenant: &str,
    message: &Message,
    fingerprint: &str,
    key: Option<&DataKey>,
) -> StoreResult<message::Model> {
    let sealing = key.is_some() && !message.is_deleted();
    let (content_kind, text, ciphertext, cipher_algorithm, cipher_key_id) =
        content_columns(message.content.as_ref(), !sealing);
    let mentions =
        serde_json::to_string(&message.mentions).map_err(|error| corrupt("mentions", error))?;
    let (metadata, key_version, sealed) = match key {
        _ if message.is_deleted() => ("{}".to_owned(), None, None),
        None => (
            serde_json::to_string(&message.metadata).map_err(|error| corrupt("metadata", error))?,
            Some(0),
            None,
        ),
        Some(key) => {
            let body = serde_json::to_vec(&SealedBody {
                t: message.content.as_ref().and_then(Content::text),
                m: &message.metadata,
            })
            .map_err(|error| corrupt("message body", error))?;
            let sealed = key
                .seal(
                    &message_binding(tenant, message.conversation, message.id),
                    &body,
                )
                .map_err(|error| corrupt("sealing a message", error))?;
            ("{}".to_owned(), key_version(key)?, Some(sealed))
        }
    };
    Ok(message::Model {
        id: message.id,
        tenant_id: tenant.to_owned(),
        conversation_id: message.conversation,
        sequence: message.sequence,
        sender_id: message.sender.clone(),
        content_kind,
        text,
        ciphertext,
        cipher_algorithm,
        cipher_key_id,
        parent_id: message.parent,
        mention_ids: mentions,
        metadata,
        has_attachments: message.has_attachments,
        reply_count: message.reply_count,
        last_reply_at: message.last_reply_at,
        request_id: message.request_id.clone().map(String::from),
        payload_hash: fingerprint.to_owned(),
        created_at: message.created_at,
        edited_at: message.edited_at,
        deleted_at: message.deleted_at,
        revision_count: message.revision_count,
        key_version,
        sealed,
    })
}

/// Opens a sealed value with the key version it names.
async fn open_value<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    tenant: &str,
    binding: &Binding,
    sealed: &[u8],
) -> StoreResult<Vec<u8>> {
    let version = crypto::key_version(sealed).map_err(|error| corrupt("sealed value", error))?;
    let key = keys.version(connection, tenant, version).await?;
    key.open(binding, sealed)
        .map_err(|error| corrupt("sealed value", error))
}

/// A message row as a message, its sealed column opened and its attachments read.
pub async fn message_from_row<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    row: message::Model,
) -> StoreResult<Message> {
    let tenant = row.tenant_id.clone();
    let mut messages = [decode_message(keys, connection, row).await?];
    super::attachments::attach(keys, connection, &tenant, &mut messages).await?;
    let [message] = messages;
    Ok(message)
}

async fn decode_message<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    row: message::Model,
) -> StoreResult<Message> {
    let what = format!("message {}", row.id);
    let (text, metadata) = match &row.sealed {
        Some(sealed) => {
            let binding = message_binding(&row.tenant_id, row.conversation_id, row.id);
            let plaintext = open_value(keys, connection, &row.tenant_id, &binding, sealed)
                .await
                .map_err(|error| corrupt(&what, error))?;
            let body: OpenedBody =
                serde_json::from_slice(&plaintext).map_err(|error| corrupt(&what, error))?;
            (body.t, body.m)
        }
        None => (
            row.text,
            serde_json::from_str(&row.metadata).map_err(|error| corrupt(&what, error))?,
        ),
    };
    Ok(Message {
        id: row.id,
        conversation: row.conversation_id,
        sequence: row.sequence,
        sender: row.sender_id,
        content: content_from_columns(
            &what,
            (
                row.content_kind,
                text,
                row.ciphertext,
                row.cipher_algorithm,
                row.cipher_key_id,
            ),
        )?,
        parent: row.parent_id,
        mentions: serde_json::from_str(&row.mention_ids).map_err(|error| corrupt(&what, error))?,
        metadata,
        has_attachments: row.has_attachments,
        attachments: Vec::new(),
        reply_count: row.reply_count,
        last_reply_at: row.last_reply_at,
        request_id: row.request_id.map(RequestId::trusted),
        created_at: row.created_at,
        edited_at: row.edited_at,
        deleted_at: row.deleted_at,
        revision_count: row.revision_count,
    })
}

/// [`message_from_row`] of many rows.
pub async fn messages_from_rows<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    rows: Vec<message::Model>,
) -> StoreResult<Vec<Message>> {
    let Some(tenant) = rows.first().map(|row| row.tenant_id.clone()) else {
        return Ok(Vec::new());
    };
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        messages.push(decode_message(keys, connection, row).await?);
    }
    super::attachments::attach(keys, connection, &tenant, &mut messages).await?;
    Ok(messages)
}

/// `revision` of a message of `conversation` as a row, its text sealed with `key`.
pub fn revision_to_row(
    tenant: &str,
    conversation: Uuid,
    revision: &Revision,
    key: Option<&DataKey>,
) -> StoreResult<revision::Model> {
    let (content_kind, text, ciphertext, cipher_algorithm, cipher_key_id) =
        content_columns(revision.content.as_ref(), true);
    let (text, key_version, sealed) = match (key, text) {
        (None, text) => (text, Some(0), None),
        (Some(_), None) => (None, None, None),
        (Some(key), Some(text)) => {
            let binding =
                revision_binding(tenant, conversation, revision.message, revision.revision);
            let sealed = key
                .seal(&binding, text.as_bytes())
                .map_err(|error| corrupt("sealing a revision", error))?;
            (None, key_version(key)?, Some(sealed))
        }
    };
    Ok(revision::Model {
        tenant_id: tenant.to_owned(),
        message_id: revision.message,
        revision: revision.revision,
        content_kind,
        text,
        ciphertext,
        cipher_algorithm,
        cipher_key_id,
        created_at: revision.created_at,
        key_version,
        sealed,
    })
}

/// A revision row of a message of `conversation` as a revision, its text opened.
pub async fn revision_from_row<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    conversation: Uuid,
    row: revision::Model,
) -> StoreResult<Revision> {
    let what = format!("revision {} of message {}", row.revision, row.message_id);
    let text = match &row.sealed {
        Some(sealed) => {
            let binding =
                revision_binding(&row.tenant_id, conversation, row.message_id, row.revision);
            let plaintext = open_value(keys, connection, &row.tenant_id, &binding, sealed)
                .await
                .map_err(|error| corrupt(&what, error))?;
            Some(String::from_utf8(plaintext).map_err(|error| corrupt(&what, error))?)
        }
        None => row.text,
    };
    Ok(Revision {
        message: row.message_id,
        revision: row.revision,
        content: content_from_columns(
            &what,
            (
                row.content_kind,
                text,
                row.ciphertext,
                row.cipher_algorithm,
                row.cipher_key_id,
            ),
        )?,
        created_at: row.created_at,
    })
}

/// A reaction as a row.
pub fn reaction_to_row(tenant: &str, reaction: &Reaction) -> reaction::Model {
    reaction::Model {
        tenant_id: tenant.to_owned(),
        message_id: reaction.message,
        user_id: reaction.user.clone(),
        emoji: reaction.emoji.clone(),
        conversation_id: reaction.conversation,
        created_at: reaction.created_at,
    }
}

/// A reaction row as a reaction.
pub fn reaction_from_row(row: reaction::Model) -> Reaction {
    Reaction {
        conversation: row.conversation_id,
        message: row.message_id,
        user: row.user_id,
        emoji: row.emoji,
        created_at: row.created_at,
    }
}

/// A read-state row as a read state.
pub fn read_state_from_row(row: read_state::Model) -> ReadState {
    ReadState {
        conversation: row.conversation_id,
        user: row.user_id,
        last_read_sequence: row.last_read_sequence,
        updated_at: row.updated_at,
    }
}
