//! Re-encryption after a key rotation: rewrites, in small batches, the rows sealed with older
//! data key versions (or stored in plaintext before encryption was switched on) with the
//! tenant's newest version. Each batch is its own short transaction that rewrites a row only
//! if it still has the version it was read with, so live writes (which already use the newest
//! version) are never blocked for long or overwritten, and an interrupted run resumes where it
//! stopped: the rows still to do are exactly those with an older version.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::StoreError;
use super::entity::{message, revision};
use super::keys::{KeyError, Keyring};
use super::rows::{message_from_row, message_to_row, revision_from_row, revision_to_row};
use super::search::{index_entries, replace_search_entries};

fn key_error(error: StoreError) -> KeyError {
    match error {
        StoreError::Database(error) => KeyError::Db(error),
        StoreError::Keys(error) => error,
        other => KeyError::Corrupt(other.to_string()),
    }
}

/// Rows of a tenant still sealed with an older version (or plaintext).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stale {
    /// Messages.
    pub messages: u64,
    /// Revisions.
    pub revisions: u64,
}

impl Stale {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.messages + self.revisions
    }
}

async fn newest_version<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    tenant: &str,
) -> Result<i32, KeyError> {
    let key = keys
        .current(connection, tenant)
        .await?
        .ok_or(KeyError::Disabled)?;
    i32::try_from(key.version()).map_err(|error| KeyError::Corrupt(error.to_string()))
}

/// How many rows of `tenant` are not yet sealed with its newest data key version.
pub async fn stale(
    db: &DatabaseConnection,
    keys: &Keyring,
    tenant: &str,
) -> Result<Stale, KeyError> {
    let newest = newest_version(keys, db, tenant).await?;
    let messages = message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::KeyVersion.lt(newest))
        .count(db)
        .await?;
    let revisions = revision::Entity::find()
        .filter(revision::Column::TenantId.eq(tenant))
        .filter(revision::Column::KeyVersion.lt(newest))
        .count(db)
        .await?;
    Ok(Stale {
        messages,
        revisions,
    })
}

/// Re-encrypts up to `batch` messages and `batch` revisions of `tenant` with its newest key,
/// in one transaction. Returns how many rows it rewrote; 0 means none are left (rows that a
/// concurrent writer changed in the meantime are left to that writer, which used the newest
/// key already).
pub async fn reencrypt_batch(
    db: &DatabaseConnection,
    keys: &Keyring,
    tenant: &str,
    batch: u64,
) -> Result<u64, KeyError> {
    let transaction = messaging_platform::db::begin_write(db).await?;
    let newest = newest_version(keys, &transaction, tenant).await?;
    let key = keys.current(&transaction, tenant).await?;
    let search_key = keys.search(&transaction, tenant).await?;
    let mut rewritten = 0;
    let messages = message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::KeyVersion.lt(newest))
        .order_by_asc(message::Column::Id)
        .limit(batch)
        .lock_exclusive()
        .all(&transaction)
        .await?;
    for row in messages {
        let was = row.key_version;
        let fingerprint = row.payload_hash.clone();
        let message = message_from_row(keys, &transaction, row)
            .await
            .map_err(key_error)?;
        if was == Some(0)
            && let Some(text) = message.content.as_ref().and_then(|content| content.text())
        {
            // Written with encryption off: its tokens were keyed with the development key.
            let content = crate::domain::Content::Text(text.to_owned());
            let entries = index_entries(&search_key, Some(&content), &[]);
            replace_search_entries(
                &transaction,
                tenant,
                message.conversation,
                message.id,
                entries,
            )
            .await?;
        }
        let row =
            message_to_row(tenant, &message, &fingerprint, key.as_deref()).map_err(key_error)?;
        let updated = message::Entity::update_many()
            .col_expr(message::Column::Sealed, Expr::value(row.sealed))
            .col_expr(message::Column::KeyVersion, Expr::value(row.key_version))
            .col_expr(message::Column::Text, Expr::value(row.text))
            .col_expr(message::Column::Metadata, Expr::value(row.metadata))
            .filter(message::Column::TenantId.eq(tenant))
            .filter(message::Column::Id.eq(row.id))
            .filter(message::Column::KeyVersion.eq(was))
            .exec(&transaction)
            .await?;
        rewritten += updated.rows_affected;
    }
    let revisions = revision::Entity::find()
        .filter(revision::Column::TenantId.eq(tenant))
        .filter(revision::Column::KeyVersion.lt(newest))
        .order_by_asc(revision::Column::MessageId)
        .order_by_asc(revision::Column::Revision)
        .limit(batch)
        .lock_exclusive()
        .all(&transaction)
        .await?;
    let message_ids: Vec<uuid::Uuid> = revisions.iter().map(|row| row.message_id).collect();
    let owners: std::collections::HashMap<uuid::Uuid, uuid::Uuid> =
        super::messages::rows_by_id(&transaction, tenant, &message_ids)
            .await?
            .into_iter()
            .map(|row| (row.id, row.conversation_id))
            .collect();
    for row in revisions {
        let Some(conversation) = owners.get(&row.message_id).copied() else {
            continue;
        };
        let was = row.key_version;
        let revision = revision_from_row(keys, &transaction, conversation, row)
            .await
            .map_err(key_error)?;
        let row =
            revision_to_row(tenant, conversation, &revision, key.as_deref()).map_err(key_error)?;
        let updated = revision::Entity::update_many()
            .col_expr(revision::Column::Sealed, Expr::value(row.sealed))
            .col_expr(revision::Column::KeyVersion, Expr::value(row.key_version))
            .col_expr(revision::Column::Text, Expr::value(row.text))
            .filter(revision::Column::TenantId.eq(tenant))
            .filter(revision::Column::MessageId.eq(row.message_id))
            .filter(revision::Column::Revision.eq(row.revision))
            .filter(revision::Column::KeyVersion.eq(was))
            .exec(&transaction)
            .await?;
        rewritten += updated.rows_affected;
    }
    transaction.commit().await?;
    Ok(rewritten)
}

/// Kinds of stored events that carry message content, and so are sealed (so are the copied
/// conversation events, `super::participants::TITLED_KINDS`, which carry titles).
const CONTENT_KINDS: [&str; 2] = ["message.created", "message.edited"];

/// Seals `tenant`'s stored content events (kept for `events.retention`) with its newest key:
/// those sealed with older versions and those stored in plaintext while encryption was off.
/// Walks them by insertion order in batches; a payload changed meanwhile is left alone.
/// Returns how many it rewrote.
pub async fn reseal_events(
    db: &DatabaseConnection,
    keys: &Keyring,
    tenant: &str,
    batch: u64,
) -> Result<u64, KeyError> {
    use messaging_outbox::{entity::event, open_sealed_payload, seal_payload};
    use messaging_platform::crypto;
    let corrupt = |error: crypto::CryptoError| KeyError::Corrupt(error.to_string());
    let mut after = 0_i64;
    let mut rewritten = 0;
    loop {
        let transaction = messaging_platform::db::begin_write(db).await?;
        let key = keys
            .current(&transaction, tenant)
            .await?
            .ok_or(KeyError::Disabled)?;
        let rows = event::Entity::find()
            .filter(event::Column::TenantId.eq(tenant))
            .filter(
                event::Column::Kind.is_in(
                    CONTENT_KINDS
                        .into_iter()
                        .chain(super::participants::TITLED_KINDS),
                ),
            )
            .filter(event::Column::Id.gt(after))
            .order_by_asc(event::Column::Id)
            .limit(batch)
            .all(&transaction)
            .await?;
        let Some(last) = rows.last() else {
            transaction.commit().await?;
            return Ok(rewritten);
        };
        after = last.id;
        for row in rows {
            let plaintext = if crypto::is_sealed(&row.payload) {
                let version = crypto::key_version(&row.payload).map_err(corrupt)?;
                if version == key.version() {
                    continue;
                }
                let old = keys.version(&transaction, tenant, version).await?;
                open_sealed_payload(
                    &old,
                    tenant,
                    row.conversation_id,
                    row.event_id,
                    &row.payload,
                )
                .map_err(corrupt)?
            } else {
                row.payload.clone()
            };
            let sealed = seal_payload(&key, tenant, row.conversation_id, row.event_id, &plaintext)
                .map_err(corrupt)?;
            let updated = event::Entity::update_many()
                .col_expr(event::Column::Payload, Expr::value(sealed))
                .filter(event::Column::Id.eq(row.id))
                .filter(event::Column::Payload.eq(row.payload))
                .exec(&transaction)
                .await?;
            rewritten += updated.rows_affected;
        }
        transaction.commit().await?;
    }
}
