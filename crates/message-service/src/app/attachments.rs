//! UploadAttachment, GetAttachment, DownloadAttachment, and the sweeper's work: scanning
//! pending attachments and removing the objects of deleted and abandoned ones.
//!
//! An upload streams straight through: each piece is hashed, sniffed (the first 8 KiB), sealed
//! frame by frame and handed to a multipart upload, so memory stays bounded by the part size.
//! When the stream breaks, every whole frame received is kept and acknowledged (the
//! attachment's `uploaded`), so the client can resume there; a bad upload (too many bytes, a
//! forbidden type, a wrong SHA-256) keeps nothing.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use messaging_platform::{ApiError, ApiResult, Caller, TenantId};
use sha2::Digest as _;
use uuid::Uuid;

use super::Messages;
use crate::blobs::frames::{FRAME, Frames};
use crate::blobs::scan::{Scanner, Verdict};
use crate::blobs::{AttachmentSettings, Blobs, Layout, SegmentWriter, hex};
use crate::domain::Action;
use crate::domain::attachment::{Attachment, AttachmentState, SNIFF_BYTES, Upload, sniff};

/// Content storage and scanning, shared by the attachment use cases and the sweeper.
#[derive(Debug, Clone)]
pub struct Files {
    /// The object store.
    pub blobs: Blobs,
    /// The scanner.
    pub scanner: Scanner,
    /// Limits and timings.
    pub settings: Arc<AttachmentSettings>,
    /// Wakes the sweeper.
    pub sweeps: Arc<tokio::sync::Notify>,
}

/// How an upload stream ended before its content was complete.
enum Stop {
    /// The stream broke or ended early: keep the whole frames received, so it can be resumed.
    Keep(ApiError),
    /// The upload is wrong (too many bytes, a forbidden type): keep nothing.
    Discard(ApiError),
    /// Object storage failed: keep what was acknowledged before this stream.
    Storage(ApiError),
}

/// The state of one upload stream.
struct Receiving {
    hasher: sha2::Sha256,
    head: Vec<u8>,
    received: u64,
    type_checked: bool,
}

impl Receiving {
    fn take(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        let room = SNIFF_BYTES.saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..room]);
        self.received += bytes.len() as u64;
    }
}

impl Messages {
    pub(super) fn files(&self) -> ApiResult<&Files> {
        self.files
            .as_deref()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("attachments are not configured")))
    }

    /// What wakes the sweeper (`None` without attachments).
    pub fn sweep_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.files.as_ref().map(|files| files.sweeps.clone())
    }

    /// UploadAttachment: `content` is the stream's bytes after the metadata; an `Err` item means
    /// the stream broke (or carried something invalid) there.
    pub async fn upload(
        &self,
        caller: &Caller,
        upload: Upload,
        mut content: BoxStream<'static, ApiResult<Bytes>>,
    ) -> ApiResult<Attachment> {
        let files = self.files()?;
        self.limits.check_write(caller)?;
        let limits = files.settings.limits(&caller.tenant_id);
        let size = u64::try_from(upload.size).unwrap_or(u64::MAX);
        if size > limits.max_size_bytes {
            return Err(ApiError::ResourceExhausted(format!(
                "the attachment has {size} bytes; this deployment takes at most {}",
                limits.max_size_bytes
            )));
        }
        if !limits.allowed.allows(&upload.declared_type) {
            return Err(ApiError::invalid(
                "metadata.content_type",
                format!("{} is not an allowed type here", upload.declared_type),
            ));
        }
        self.gate
            .require(caller, upload.conversation, Action::Post)
            .await?;
        let tenant = &caller.tenant_id;
        let (mut attachment, mut layout) = self.begin(caller, &upload).await?;
        let key = self
            .store
            .upload_key(tenant, Some(layout.key_version))
            .await?;
        let frames = Frames::new(key, tenant, attachment.id, size);
        let mut state = Receiving {
            hasher: sha2::Sha256::new(),
            head: Vec::new(),
            received: 0,
            type_checked: false,
        };
        if attachment.uploaded > 0 {
            // Resuming: what was stored counts towards the hash and the sniffed head.
            let mut stored = files.blobs.read(
                frames.clone(),
                &layout,
                size,
                0..attachment.uploaded as u64,
                "",
            );
            while let Some(chunk) = stored.next().await {
                state.take(&chunk?);
            }
        }
        let acknowledged = attachment.uploaded;
        let mut writer = files
            .blobs
            .writer(frames.clone(), &layout, state.received / FRAME as u64)
            .await?;
        let stop = receive(&mut content, &mut writer, &mut state, size, &limits.allowed).await;
        let complete = stop.is_none() && state.received == size;
        let broken = match stop {
            Some(Stop::Discard(error)) => {
                let _ = writer.abort().await;
                self.discard(files, tenant, attachment.id).await?;
                return Err(error);
            }
            Some(Stop::Storage(error)) => {
                let _ = writer.abort().await;
                return Err(error);
            }
            Some(Stop::Keep(error)) => Some(error),
            None => None,
        };
        if complete
            && !state.type_checked
            && let Err(error) = check_type(&state.head, &limits.allowed)
        {
            let _ = writer.abort().await;
            self.discard(files, tenant, attachment.id).await?;
            return Err(error);
        }
        let segment = writer.finish(complete).await?;
        let uploaded = if complete {
            upload.size
        } else {
            i64::try_from(state.received / FRAME as u64 * FRAME as u64).unwrap_or(i64::MAX)
        };
        if let Some(segment) = segment {
            let key = segment.key.clone();
            layout.segments.push(segment);
            if !self
                .store
                .add_segment(tenant, attachment.id, &layout, acknowledged, uploaded)
                .await?
            {
                files.blobs.remove_segment(&layout.storage, &key).await?;
                return Err(ApiError::Aborted(
                    "another stream of this upload stored its bytes first; ask GetAttachment \
                     for uploaded_bytes and resume from there"
                        .to_owned(),
                ));
            }
        }
        attachment.uploaded = uploaded;
        if !complete {
            return Err(broken.unwrap_or_else(|| {
                ApiError::invalid(
                    "chunk",
                    format!(
                        "the stream ended after {} of {size} bytes; {uploaded} are stored: \
                         resume with offset {uploaded}",
                        state.received
                    ),
                )
            }));
        }
        let digest = hex(&state.hasher.clone().finalize());
        if digest != upload.sha256 {
            self.discard(files, tenant, attachment.id).await?;
            return Err(ApiError::invalid(
                "metadata.sha256",
                format!(
                    "the content received has SHA-256 {digest}, not the declared one; nothing \
                     was kept"
                ),
            ));
        }
        let content_type = sniff(&state.head)
            .map(str::to_owned)
            .unwrap_or_else(|| upload.declared_type.clone());
        let next = if files.scanner.is_none() {
            AttachmentState::Clean
        } else {
            AttachmentState::Pending
        };
        self.store
            .set_state(
                tenant,
                attachment.id,
                AttachmentState::Uploading,
                next,
                Some(&content_type),
            )
            .await?;
        if next == AttachmentState::Pending {
            files.sweeps.notify_one();
        }
        attachment.state = next;
        attachment.content_type = content_type;
        Ok(attachment)
    }

    /// The attachment this upload writes to: a new one, or the interrupted one it resumes.
    async fn begin(&self, caller: &Caller, upload: &Upload) -> ApiResult<(Attachment, Layout)> {
        let tenant = &caller.tenant_id;
        if let Some(id) = upload.id
            && let Some((existing, layout)) = self.store.attachment(tenant, id).await?
        {
            if !upload.resumes(&existing, &caller.user_id)
                || existing.state != AttachmentState::Uploading
            {
                return Err(ApiError::AlreadyExists(
                    "metadata.attachment_id names another attachment: choose a new id, or \
                     resume an unfinished upload with exactly its metadata"
                        .to_owned(),
                ));
            }
            if existing.uploaded != upload.offset {
                return Err(ApiError::FailedPrecondition(format!(
                    "the upload has {} bytes stored: resume with offset {}",
                    existing.uploaded, existing.uploaded
                )));
            }
            return Ok((existing, layout));
        }
        if upload.offset > 0 {
            return Err(ApiError::FailedPrecondition(
                "no unfinished upload has this attachment_id: start it with offset 0".to_owned(),
            ));
        }
        let key = self.store.upload_key(tenant, None).await?;
        let attachment = Attachment {
            id: upload.id.unwrap_or_else(Uuid::now_v7),
            conversation: upload.conversation,
            uploader: caller.user_id.to_string(),
            file_name: upload.file_name.clone(),
            declared_type: upload.declared_type.clone(),
            content_type: upload.declared_type.clone(),
            size: upload.size,
            sha256: upload.sha256.clone(),
            uploaded: 0,
            state: AttachmentState::Uploading,
            message: None,
            created_at: messaging_platform::time::now(),
        };
        let layout = Layout {
            storage: Uuid::new_v4().simple().to_string(),
            key_version: key.map_or(0, |key| key.version()),
            segments: Vec::new(),
        };
        if !self
            .store
            .start_upload(tenant, &attachment, &layout)
            .await?
        {
            return Err(ApiError::AlreadyExists(
                "metadata.attachment_id names another attachment: choose a new id".to_owned(),
            ));
        }
        Ok((attachment, layout))
    }

    async fn discard(&self, files: &Files, tenant: &TenantId, id: Uuid) -> ApiResult<()> {
        self.store.discard(tenant, id).await?;
        files.sweeps.notify_one();
        Ok(())
    }

    /// GetAttachment.
    pub async fn attachment(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
    ) -> ApiResult<Attachment> {
        Ok(self.visible(caller, conversation, id).await?.0)
    }

    async fn visible(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
    ) -> ApiResult<(Attachment, Layout)> {
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        match self.store.attachment(&caller.tenant_id, id).await? {
            Some((attachment, layout))
                if attachment.conversation == conversation
                    && attachment.visible_to(&caller.user_id) =>
            {
                Ok((attachment, layout))
            }
            _ => Err(ApiError::NotFound("attachment")),
        }
    }

    /// DownloadAttachment: the bytes of `offset..offset + length` (0: to the end).
    pub async fn download(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
        offset: u64,
        length: u64,
    ) -> ApiResult<BoxStream<'static, ApiResult<Bytes>>> {
        let files = self.files()?;
        let (attachment, layout) = self.visible(caller, conversation, id).await?;
        if let Some(reason) = attachment.unservable() {
            return Err(ApiError::FailedPrecondition(reason.to_owned()));
        }
        let size = u64::try_from(attachment.size).unwrap_or_default();
        if offset > size {
            return Err(ApiError::OutOfRange(format!(
                "offset {offset} is past the end of the attachment ({size} bytes)"
            )));
        }
        let end = if length == 0 {
            size
        } else {
            offset.saturating_add(length).min(size)
        };
        let key = self
            .store
            .upload_key(&caller.tenant_id, Some(layout.key_version))
            .await?;
        let frames = Frames::new(key, &caller.tenant_id, id, size);
        Ok(files
            .blobs
            .read(frames, &layout, size, offset..end, &attachment.sha256)
            .map(|chunk| chunk.map_err(ApiError::from))
            .boxed())
    }

    /// Scans up to `limit` pending attachments, the longest waiting first; how many got a
    /// verdict. One the scanner cannot take now stays pending for the next sweep.
    pub async fn scan_pending(&self, limit: u64) -> ApiResult<usize> {
        let files = self.files()?;
        let mut decided = 0;
        for (tenant, id) in self.store.unscanned(limit).await? {
            let Some((attachment, layout)) = self.store.attachment(&tenant, id).await? else {
                continue;
            };
            let size = u64::try_from(attachment.size).unwrap_or_default();
            let key = self
                .store
                .upload_key(&tenant, Some(layout.key_version))
                .await?;
            let frames = Frames::new(key, &tenant, id, size);
            let content = files
                .blobs
                .read(frames, &layout, size, 0..size, &attachment.sha256)
                .map(|chunk| chunk.map_err(std::io::Error::other));
            let next = match files.scanner.scan(content).await {
                Ok(Verdict::Clean) => AttachmentState::Clean,
                Ok(Verdict::Infected(signature)) => {
                    tracing::warn!(attachment = %id, signature, "the scanner found malware");
                    AttachmentState::Infected
                }
                Err(error) => {
                    tracing::warn!(attachment = %id, error, "scan failed; retrying later");
                    continue;
                }
            };
            if self
                .store
                .set_state(&tenant, id, AttachmentState::Pending, next, None)
                .await?
            {
                decided += 1;
            }
        }
        Ok(decided)
    }

    /// Removes the objects of up to `limit` deleted or abandoned attachments, then forgets them;
    /// how many.
    pub async fn remove_discarded(&self, limit: u64) -> ApiResult<usize> {
        let files = self.files()?;
        let abandoned_before = chrono::Duration::from_std(files.settings.abandon_after)
            .ok()
            .and_then(|age| messaging_platform::time::now().checked_sub_signed(age))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let sweepable = self.store.sweepable(abandoned_before, limit).await?;
        let count = sweepable.len();
        for (tenant, id, storage) in sweepable {
            files.blobs.remove(&storage).await?;
            self.store.forget(&tenant, id).await?;
        }
        Ok(count)
    }
}

/// Takes the stream's bytes until it ends (`None`) or must stop.
async fn receive(
    content: &mut BoxStream<'static, ApiResult<Bytes>>,
    writer: &mut SegmentWriter,
    state: &mut Receiving,
    size: u64,
    allowed: &crate::domain::attachment::AllowedTypes,
) -> Option<Stop> {
    while let Some(piece) = content.next().await {
        let bytes = match piece {
            Ok(bytes) => bytes,
            Err(error) => return Some(Stop::Keep(error)),
        };
        if state.received + bytes.len() as u64 > size {
            return Some(Stop::Discard(ApiError::invalid(
                "chunk",
                format!("the stream carries more than metadata.size_bytes ({size}) bytes"),
            )));
        }
        state.take(&bytes);
        if !state.type_checked && state.head.len() >= SNIFF_BYTES {
            state.type_checked = true;
            if let Err(error) = check_type(&state.head, allowed) {
                return Some(Stop::Discard(error));
            }
        }
        if let Err(error) = writer.write(&bytes).await {
            return Some(Stop::Storage(error.into()));
        }
    }
    None
}

/// Refuses content whose sniffed type the deployment does not allow.
fn check_type(head: &[u8], allowed: &crate::domain::attachment::AllowedTypes) -> ApiResult<()> {
    match sniff(head) {
        Some(sniffed) if !allowed.allows(sniffed) => Err(ApiError::invalid(
            "chunk",
            format!(
                "the content is {sniffed}, which is not an allowed type here; nothing was kept"
            ),
        )),
        _ => Ok(()),
    }
}
