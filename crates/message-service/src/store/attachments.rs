//! [`AttachmentStore`] on SQL: attachment rows (file names sealed like message text), their
//! content's layout, the link to the message that carries them, and what the sweeper finds.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use messaging_platform::crypto::{Binding, DataKey};
use messaging_platform::time::now;
use messaging_platform::{ApiError, FieldViolations, TenantId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::attachment;
use super::keys::Keyring;
use super::{AttachmentStore, SqlStore, StoreError, StoreResult};
use crate::blobs::{Layout, Segment};
use crate::domain::Message;
use crate::domain::attachment::{Attachment, AttachmentState};

fn name_binding(tenant: &str, id: Uuid) -> Binding {
    Binding::new("attachment.name")
        .with(tenant.as_bytes())
        .with(id.as_bytes())
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("attachment {what}: {error}"))
}

async fn from_row<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    row: attachment::Model,
) -> StoreResult<(Attachment, Layout)> {
    let key_version = u32::try_from(row.key_version).map_err(|error| corrupt("key", error))?;
    let name = if key_version == 0 {
        row.file_name
    } else {
        keys.version(connection, &row.tenant_id, key_version)
            .await?
            .open(&name_binding(&row.tenant_id, row.id), &row.file_name)
            .map_err(|error| corrupt("name", error))?
    };
    let file_name = String::from_utf8(name).map_err(|error| corrupt("name", error))?;
    let state = AttachmentState::parse(&row.state)
        .ok_or_else(|| corrupt("state", format!("unknown state {:?}", row.state)))?;
    let segments: Vec<Segment> =
        serde_json::from_str(&row.segments).map_err(|error| corrupt("segments", error))?;
    Ok((
        Attachment {
            id: row.id,
            conversation: row.conversation_id,
            uploader: row.uploader_id,
            file_name,
            declared_type: row.declared_type,
            content_type: row.content_type,
            size: row.size_bytes,
            sha256: row.sha256,
            uploaded: row.uploaded_bytes,
            state,
            message: row.message_id,
            created_at: row.created_at,
        },
        Layout {
            storage: row.storage_key,
            key_version,
            segments,
        },
    ))
}

fn live(tenant: &str) -> Condition {
    Condition::all()
        .add(attachment::Column::TenantId.eq(tenant))
        .add(attachment::Column::DeletedAt.is_null())
}

/// The attachments of `messages` that carry some, in the order they were sent.
pub(super) async fn attach<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    tenant: &str,
    messages: &mut [Message],
) -> StoreResult<()> {
    let ids: Vec<Uuid> = messages
        .iter()
        .filter(|message| message.has_attachments && !message.is_deleted())
        .map(|message| message.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows = attachment::Entity::find()
        .filter(live(tenant))
        .filter(attachment::Column::MessageId.is_in(ids))
        .order_by_asc(attachment::Column::Position)
        .all(connection)
        .await?;
    let mut by_message: HashMap<Uuid, Vec<Attachment>> = HashMap::new();
    for row in rows {
        let (attachment, _) = from_row(keys, connection, row).await?;
        if let Some(message) = attachment.message {
            by_message.entry(message).or_default().push(attachment);
        }
    }
    for message in messages {
        if let Some(attachments) = by_message.remove(&message.id) {
            message.attachments = attachments;
        }
    }
    Ok(())
}

/// Links `ids` to message `message` of `sender` in `conversation`, within the send's
/// transaction: each must be the sender's, of this conversation, complete, not infected and
/// not sent yet (an INVALID_ARGUMENT naming each that is not). Returns them in order.
pub(super) async fn link<C: ConnectionTrait>(
    keys: &Keyring,
    connection: &C,
    tenant: &str,
    sender: &str,
    conversation: Uuid,
    message: Uuid,
    ids: &[Uuid],
) -> StoreResult<Vec<Attachment>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = attachment::Entity::find()
        .filter(live(tenant))
        .filter(attachment::Column::Id.is_in(ids.to_vec()))
        .all(connection)
        .await?;
    let mut found = HashMap::new();
    for row in rows {
        let (attachment, _) = from_row(keys, connection, row).await?;
        found.insert(attachment.id, attachment);
    }
    let mut violations = FieldViolations::new();
    let mut linked = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let problem = match found.remove(id) {
            Some(attachment) => match attachment.unsendable(sender, conversation) {
                Some(problem) => Some(problem),
                None => {
                    linked.push(attachment);
                    None
                }
            },
            None => Some("no such attachment of yours in this conversation"),
        };
        if let Some(problem) = problem {
            violations.add(format!("attachment_ids[{index}]"), problem);
        }
    }
    violations.finish().map_err(StoreError::Rejected)?;
    let at = now();
    for (position, attachment) in linked.iter_mut().enumerate() {
        let updated = attachment::Entity::update_many()
            .col_expr(attachment::Column::MessageId, Expr::value(message))
            .col_expr(
                attachment::Column::Position,
                Expr::value(i32::try_from(position).unwrap_or(i32::MAX)),
            )
            .col_expr(attachment::Column::UpdatedAt, Expr::value(at))
            .filter(live(tenant))
            .filter(attachment::Column::Id.eq(attachment.id))
            .filter(attachment::Column::MessageId.is_null())
            .exec(connection)
            .await?;
        if updated.rows_affected != 1 {
            return Err(StoreError::Rejected(ApiError::invalid(
                format!("attachment_ids[{position}]"),
                "was sent with another message already",
            )));
        }
        attachment.message = Some(message);
    }
    Ok(linked)
}

/// Marks the attachments of deleted message `message` for removal, within the delete's
/// transaction; the sweeper removes their objects. Whether there were any.
pub(super) async fn detach<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    message: Uuid,
) -> StoreResult<bool> {
    let at = now();
    // The file name goes at once (it is content); the objects wait for the sweeper.
    let updated = attachment::Entity::update_many()
        .col_expr(attachment::Column::DeletedAt, Expr::value(at))
        .col_expr(attachment::Column::UpdatedAt, Expr::value(at))
        .col_expr(attachment::Column::FileName, Expr::value(Vec::<u8>::new()))
        .filter(live(tenant))
        .filter(attachment::Column::MessageId.eq(message))
        .exec(connection)
        .await?;
    Ok(updated.rows_affected > 0)
}

#[async_trait::async_trait]
impl AttachmentStore for SqlStore {
    async fn attachment(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> StoreResult<Option<(Attachment, Layout)>> {
        let row = attachment::Entity::find()
            .filter(live(tenant.as_str()))
            .filter(attachment::Column::Id.eq(id))
            .one(&self.db)
            .await?;
        match row {
            Some(row) => Ok(Some(from_row(&self.keys, &self.db, row).await?)),
            None => Ok(None),
        }
    }

    async fn upload_key(
        &self,
        tenant: &TenantId,
        version: Option<u32>,
    ) -> StoreResult<Option<Arc<DataKey>>> {
        match version {
            None => Ok(self.keys.current(&self.db, tenant.as_str()).await?),
            Some(0) => Ok(None),
            Some(version) => Ok(Some(
                self.keys
                    .version(&self.db, tenant.as_str(), version)
                    .await?,
            )),
        }
    }

    async fn start_upload(
        &self,
        tenant: &TenantId,
        attachment: &Attachment,
        layout: &Layout,
    ) -> StoreResult<bool> {
        let tenant = tenant.as_str();
        let file_name = if layout.key_version == 0 {
            attachment.file_name.as_bytes().to_vec()
        } else {
            self.keys
                .version(&self.db, tenant, layout.key_version)
                .await?
                .seal(
                    &name_binding(tenant, attachment.id),
                    attachment.file_name.as_bytes(),
                )
                .map_err(|error| corrupt("name", error))?
        };
        let row = attachment::Model {
            tenant_id: tenant.to_owned(),
            id: attachment.id,
            conversation_id: attachment.conversation,
            uploader_id: attachment.uploader.clone(),
            message_id: None,
            position: 0,
            file_name,
            key_version: i32::try_from(layout.key_version)
                .map_err(|error| corrupt("key", error))?,
            declared_type: attachment.declared_type.clone(),
            content_type: attachment.content_type.clone(),
            size_bytes: attachment.size,
            sha256: attachment.sha256.clone(),
            uploaded_bytes: attachment.uploaded,
            state: attachment.state.as_str().to_owned(),
            storage_key: layout.storage.clone(),
            segments: "[]".to_owned(),
            created_at: attachment.created_at,
            updated_at: attachment.created_at,
            deleted_at: None,
        };
        let inserted = attachment::Entity::insert(attachment::ActiveModel::from(row))
            .on_conflict_do_nothing()
            .exec_without_returning(&self.db)
            .await?;
        Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(count) if count > 0))
    }

    async fn add_segment(
        &self,
        tenant: &TenantId,
        id: Uuid,
        layout: &Layout,
        uploaded_before: i64,
        uploaded: i64,
    ) -> StoreResult<bool> {
        let segments =
            serde_json::to_string(&layout.segments).map_err(|error| corrupt("segments", error))?;
        let updated = attachment::Entity::update_many()
            .col_expr(attachment::Column::Segments, Expr::value(segments))
            .col_expr(attachment::Column::UploadedBytes, Expr::value(uploaded))
            .col_expr(attachment::Column::UpdatedAt, Expr::value(now()))
            .filter(live(tenant.as_str()))
            .filter(attachment::Column::Id.eq(id))
            .filter(attachment::Column::State.eq(AttachmentState::Uploading.as_str()))
            .filter(attachment::Column::UploadedBytes.eq(uploaded_before))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    async fn set_state(
        &self,
        tenant: &TenantId,
        id: Uuid,
        from: AttachmentState,
        to: AttachmentState,
        content_type: Option<&str>,
    ) -> StoreResult<bool> {
        let mut update = attachment::Entity::update_many()
            .col_expr(attachment::Column::State, Expr::value(to.as_str()))
            .col_expr(attachment::Column::UpdatedAt, Expr::value(now()));
        if let Some(content_type) = content_type {
            update = update.col_expr(
                attachment::Column::ContentType,
                Expr::value(content_type.to_owned()),
            );
        }
        let updated = update
            .filter(live(tenant.as_str()))
            .filter(attachment::Column::Id.eq(id))
            .filter(attachment::Column::State.eq(from.as_str()))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    async fn discard(&self, tenant: &TenantId, id: Uuid) -> StoreResult<()> {
        attachment::Entity::update_many()
            .col_expr(attachment::Column::DeletedAt, Expr::value(now()))
            .filter(live(tenant.as_str()))
            .filter(attachment::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn sweepable(
        &self,
        abandoned_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<(TenantId, Uuid, String)>> {
        // Abandoned ones are marked first, so that a send cannot link what is being removed.
        attachment::Entity::update_many()
            .col_expr(attachment::Column::DeletedAt, Expr::value(now()))
            .filter(attachment::Column::DeletedAt.is_null())
            .filter(attachment::Column::MessageId.is_null())
            .filter(attachment::Column::UpdatedAt.lt(abandoned_before))
            .exec(&self.db)
            .await?;
        let rows: Vec<(String, Uuid, String)> = attachment::Entity::find()
            .select_only()
            .column(attachment::Column::TenantId)
            .column(attachment::Column::Id)
            .column(attachment::Column::StorageKey)
            .filter(attachment::Column::DeletedAt.is_not_null())
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, id, storage)| (TenantId::trusted(tenant), id, storage))
            .collect())
    }

    async fn forget(&self, tenant: &TenantId, id: Uuid) -> StoreResult<()> {
        attachment::Entity::delete_many()
            .filter(attachment::Column::TenantId.eq(tenant.as_str()))
            .filter(attachment::Column::Id.eq(id))
            .filter(attachment::Column::DeletedAt.is_not_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn unscanned(&self, limit: u64) -> StoreResult<Vec<(TenantId, Uuid)>> {
        let rows: Vec<(String, Uuid)> = attachment::Entity::find()
            .select_only()
            .column(attachment::Column::TenantId)
            .column(attachment::Column::Id)
            .filter(attachment::Column::DeletedAt.is_null())
            .filter(attachment::Column::State.eq(AttachmentState::Pending.as_str()))
            .order_by_asc(attachment::Column::UpdatedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, id)| (TenantId::trusted(tenant), id))
            .collect())
    }
}
