//! Attachment content in object storage (the `object_store` crate): the local file system by
//! default, any S3-compatible store in production.
//!
//! An attachment's content is one or more **segments**, one per upload stream (a resumed
//! upload adds one), each an object of whole frames ([`frames`]) written as it arrives with a
//! multipart upload, so that no file is ever held in memory. Objects are named by a random
//! storage key and a random segment key: neither the file name nor the tenant appear in object
//! storage, and with encryption at rest neither does a byte of plaintext.

pub mod frames;
pub mod scan;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use messaging_platform::config::Secret;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use serde::Deserialize;

use crate::domain::attachment::AllowedTypes;
use frames::{FRAME, Frames};

/// What can go wrong with stored content.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Object storage failed.
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    /// A frame does not open: tampered, truncated, reordered or moved objects.
    #[error("stored content is corrupt: {0}")]
    Corrupt(String),
}

impl From<BlobError> for messaging_platform::ApiError {
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::Corrupt(detail) => Self::DataLoss(detail),
            BlobError::Store(object_store::Error::NotFound { path, .. }) => {
                Self::DataLoss(format!("stored object {path} is missing"))
            }
            BlobError::Store(error) => {
                tracing::warn!(%error, "object storage failed");
                Self::Unavailable("attachment storage is unavailable; retry later".to_owned())
            }
        }
    }
}

/// `[message_service.attachments]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AttachmentSettings {
    /// Largest attachment, in bytes; default 100 MiB.
    pub max_size_bytes: u64,
    /// Media types allowed, exact (`application/pdf`) or by family (`image/*`), checked against
    /// both the declared and the sniffed type; empty (the default) allows all.
    pub allowed_content_types: AllowedTypes,
    /// Most attachments on one message; default 10.
    pub max_per_message: usize,
    /// How long an unfinished upload, or a finished one that no message carries, is kept;
    /// default 24 h.
    #[serde(with = "humantime_serde")]
    pub abandon_after: Duration,
    /// How often the sweeper looks for attachments to scan or delete (it is also woken when a
    /// message with attachments is deleted or an upload completes); default 1 min.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Where content is stored (`[message_service.attachments.store]`).
    pub store: StoreSettings,
    /// The malware scanner (`[message_service.attachments.scanner]`).
    pub scanner: scan::ScannerSettings,
    /// Overrides by tenant id (`[message_service.attachments.tenants.acme]`).
    pub tenants: std::collections::HashMap<String, TenantAttachmentLimits>,
}

/// The attachment limits of one tenant that differ from the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TenantAttachmentLimits {
    /// Overrides `max_size_bytes`.
    pub max_size_bytes: Option<u64>,
    /// Overrides `allowed_content_types`.
    pub allowed_content_types: Option<AllowedTypes>,
    /// Overrides `max_per_message`.
    pub max_per_message: Option<usize>,
}

/// The attachment limits that apply to one tenant.
#[derive(Debug, Clone)]
pub struct AttachmentLimits {
    /// Largest attachment.
    pub max_size_bytes: u64,
    /// Allowed types.
    pub allowed: AllowedTypes,
    /// Most attachments per message.
    pub max_per_message: usize,
}

impl AttachmentSettings {
    /// The limits of `tenant`.
    pub fn limits(&self, tenant: &str) -> AttachmentLimits {
        let overrides = self.tenants.get(tenant).cloned().unwrap_or_default();
        AttachmentLimits {
            max_size_bytes: overrides.max_size_bytes.unwrap_or(self.max_size_bytes),
            allowed: overrides
                .allowed_content_types
                .unwrap_or_else(|| self.allowed_content_types.clone()),
            max_per_message: overrides.max_per_message.unwrap_or(self.max_per_message),
        }
    }
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        Self {
            max_size_bytes: 100 * 1024 * 1024,
            allowed_content_types: AllowedTypes::default(),
            max_per_message: 10,
            abandon_after: Duration::from_secs(24 * 60 * 60),
            sweep_interval: Duration::from_secs(60),
            store: StoreSettings::default(),
            scanner: scan::ScannerSettings::default(),
            tenants: std::collections::HashMap::new(),
        }
    }
}

/// Which object store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A directory of the local file system.
    #[default]
    Local,
    /// An S3-compatible service.
    S3,
}

/// `[message_service.attachments.store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// `local` (default) or `s3`.
    pub kind: StoreKind,
    /// `local`: the directory; default `data/attachments`.
    pub path: PathBuf,
    /// `s3`: the endpoint URL (for S3-compatible services); AWS's when unset.
    pub endpoint: Option<String>,
    /// `s3`: the bucket (it must exist).
    pub bucket: Option<String>,
    /// `s3`: the region; default `us-east-1`.
    pub region: String,
    /// `s3`: allow a plain `http://` endpoint; default false.
    pub allow_http: bool,
    /// `s3`: the access key id; by default `AWS_ACCESS_KEY_ID` from the environment.
    pub access_key_id: Option<Secret>,
    /// `s3`: the secret key; by default `AWS_SECRET_ACCESS_KEY` from the environment.
    pub secret_access_key: Option<Secret>,
    /// Objects go under this prefix (for example `messaging/`); default none.
    pub prefix: String,
    /// Bytes per part of a multipart upload: what one upload holds in memory at most (twice,
    /// while one part is sent); default 5 MiB, S3's smallest.
    pub part_size_bytes: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            kind: StoreKind::Local,
            path: PathBuf::from("data/attachments"),
            endpoint: None,
            bucket: None,
            region: "us-east-1".to_owned(),
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            prefix: String::new(),
            part_size_bytes: 5 * 1024 * 1024,
        }
    }
}

/// Where an attachment's content is: its storage key, the key version its frames are sealed
/// with (0: not encrypted), and its segments in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Random name of the attachment's objects.
    pub storage: String,
    /// Data key version (0: encryption at rest was off).
    pub key_version: u32,
    /// The segments, in order.
    pub segments: Vec<Segment>,
}

/// One object of whole frames.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// Random name of the object within the attachment's.
    pub key: String,
    /// Frames it holds.
    pub frames: u64,
}

impl Layout {
    /// Frames stored in all segments.
    pub fn frames(&self) -> u64 {
        self.segments.iter().map(|segment| segment.frames).sum()
    }
}

/// The object store, under its prefix.
#[derive(Debug, Clone)]
pub struct Blobs {
    objects: Arc<dyn ObjectStore>,
    part_size: usize,
}

impl Blobs {
    /// The store `settings` name.
    pub fn from_settings(settings: &StoreSettings) -> anyhow::Result<Self> {
        let objects: Arc<dyn ObjectStore> = match settings.kind {
            StoreKind::Local => {
                std::fs::create_dir_all(&settings.path).map_err(|error| {
                    anyhow::anyhow!(
                        "cannot create message_service.attachments.store.path {}: {error}",
                        settings.path.display()
                    )
                })?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
                    &settings.path,
                )?)
            }
            StoreKind::S3 => {
                let bucket = settings.bucket.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("message_service.attachments.store.bucket is required for s3")
                })?;
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(&settings.region)
                    .with_allow_http(settings.allow_http);
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &settings.access_key_id {
                    builder = builder.with_access_key_id(key.expose());
                }
                if let Some(secret) = &settings.secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose());
                }
                Arc::new(builder.build()?)
            }
        };
        let objects: Arc<dyn ObjectStore> = if settings.prefix.trim_matches('/').is_empty() {
            objects
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                objects,
                settings.prefix.trim_matches('/'),
            ))
        };
        Ok(Self {
            objects,
            part_size: settings.part_size_bytes.max(5 * 1024 * 1024),
        })
    }

    /// The object store itself (for operators' tools and tests).
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    fn path(storage: &str, segment: &str) -> Path {
        Path::from(format!("{storage}/{segment}"))
    }

    /// Starts writing a new segment of `layout`'s attachment, its first frame being
    /// `first_frame`.
    pub async fn writer(
        &self,
        frames: Frames,
        layout: &Layout,
        first_frame: u64,
    ) -> Result<SegmentWriter, BlobError> {
        let segment = uuid::Uuid::new_v4().simple().to_string();
        let path = Self::path(&layout.storage, &segment);
        let upload = self.objects.put_multipart(&path).await?;
        Ok(SegmentWriter {
            upload: WriteMultipart::new_with_chunk_size(upload, self.part_size),
            frames,
            segment,
            next_frame: first_frame,
            written: 0,
            buffer: Vec::with_capacity(FRAME),
        })
    }

    /// The content of `range` (clipped to the content), as it streams from storage: chunks of
    /// at most one frame, each opened and checked. When the range is the whole content, its
    /// SHA-256 is checked against `sha256` before the last chunk is let through.
    pub fn read(
        &self,
        frames: Frames,
        layout: &Layout,
        size: u64,
        range: Range<u64>,
        sha256: &str,
    ) -> futures::stream::BoxStream<'static, Result<Bytes, BlobError>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let reader = Reader {
            objects: self.objects.clone(),
            frames,
            layout: layout.clone(),
            size,
            range: range.start.min(size)..range.end.min(size),
            sha256: sha256.to_owned(),
        };
        tokio::spawn(async move {
            if let Err(error) = reader.run(&sender).await {
                let _ = sender.send(Err(error)).await;
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver).boxed()
    }

    /// Deletes every object of the attachment stored under `storage`.
    pub async fn remove(&self, storage: &str) -> Result<(), BlobError> {
        let prefix = Path::from(storage);
        let mut listing = self.objects.list(Some(&prefix));
        while let Some(object) = listing.next().await {
            match self.objects.delete(&object?.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Deletes one segment (written by a stream whose commit lost a race).
    pub async fn remove_segment(&self, storage: &str, segment: &str) -> Result<(), BlobError> {
        match self.objects.delete(&Self::path(storage, segment)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// Writes one segment: content in, sealed frames out to a multipart upload.
pub struct SegmentWriter {
    upload: WriteMultipart,
    frames: Frames,
    segment: String,
    next_frame: u64,
    written: u64,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SegmentWriter")
            .field("segment", &self.segment)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl SegmentWriter {
    /// Adds `content`: every frame it completes is sealed and handed to the upload, which
    /// sends a part whenever one is full (waiting while one is in flight already).
    pub async fn write(&mut self, mut content: &[u8]) -> Result<(), BlobError> {
        while !content.is_empty() {
            let take = (FRAME - self.buffer.len()).min(content.len());
            self.buffer.extend_from_slice(&content[..take]);
            content = &content[take..];
            if self.buffer.len() == FRAME {
                self.seal_buffer().await?;
            }
        }
        Ok(())
    }

    async fn seal_buffer(&mut self) -> Result<(), BlobError> {
        let frame = self
            .frames
            .seal(self.next_frame, &self.buffer)
            .map_err(|error| BlobError::Corrupt(error.to_string()))?;
        self.upload.wait_for_capacity(1).await?;
        self.upload.put(Bytes::from(frame));
        self.next_frame += 1;
        self.written += 1;
        self.buffer.clear();
        Ok(())
    }

    /// Ends the segment with every whole frame received (the bytes of a partial frame are
    /// dropped: a resumed upload sends them again), or, when `complete`, with the content's
    /// last, shorter frame too. `None` when the segment holds no frame (nothing is kept).
    pub async fn finish(mut self, complete: bool) -> Result<Option<Segment>, BlobError> {
        if complete && !self.buffer.is_empty() {
            self.seal_buffer().await?;
        }
        if self.written == 0 {
            self.upload.abort().await?;
            return Ok(None);
        }
        self.upload.finish().await?;
        Ok(Some(Segment {
            key: self.segment,
            frames: self.written,
        }))
    }

    /// Gives the segment up, keeping nothing.
    pub async fn abort(self) -> Result<(), BlobError> {
        self.upload.abort().await?;
        Ok(())
    }
}

struct Reader {
    objects: Arc<dyn ObjectStore>,
    frames: Frames,
    layout: Layout,
    size: u64,
    range: Range<u64>,
    sha256: String,
}

type Chunks = tokio::sync::mpsc::Sender<Result<Bytes, BlobError>>;

impl Reader {
    /// Reads the frames the range touches, segment by segment (one ranged read each), and sends
    /// the part of each frame inside the range. Stops quietly when the receiver is gone.
    async fn run(self, sender: &Chunks) -> Result<(), BlobError> {
        use sha2::Digest as _;
        if self.range.is_empty() {
            return Ok(());
        }
        let whole = self.range.start == 0 && self.range.end == self.size;
        let mut hasher = whole.then(sha2::Sha256::new);
        let first = self.range.start / FRAME as u64;
        let last = (self.range.end - 1) / FRAME as u64;
        let stored = self.frames.stored_len();
        let overhead = self.frames.overhead() as u64;
        let mut segment_first = 0;
        let mut held: Option<Bytes> = None;
        for segment in &self.layout.segments {
            let segment_end = segment_first + segment.frames;
            let from = first.max(segment_first);
            let to = (last + 1).min(segment_end);
            if from < to {
                let path = Blobs::path(&self.layout.storage, &segment.key);
                let start = (from - segment_first) * stored;
                let end = (to - segment_first - 1) * stored
                    + frame_content_len(to - 1, self.size)
                    + overhead;
                let options = GetOptions {
                    range: Some(GetRange::Bounded(start..end)),
                    ..GetOptions::default()
                };
                let mut body = self.objects.get_opts(&path, options).await?.into_stream();
                let mut pending = Vec::with_capacity(stored as usize);
                let mut index = from;
                while index < to {
                    let want = (frame_content_len(index, self.size) + overhead) as usize;
                    while pending.len() < want {
                        match body.next().await {
                            Some(bytes) => pending.extend_from_slice(&bytes?),
                            None => {
                                return Err(BlobError::Corrupt(format!(
                                    "segment {} ends inside frame {index}",
                                    segment.key
                                )));
                            }
                        }
                    }
                    let rest = pending.split_off(want);
                    let content = self
                        .frames
                        .open(index, &pending)
                        .map_err(|_| BlobError::Corrupt(format!("frame {index} does not open")))?;
                    pending = rest;
                    let frame_start = index * FRAME as u64;
                    let lo = self.range.start.saturating_sub(frame_start) as usize;
                    let hi = (self.range.end - frame_start).min(content.len() as u64) as usize;
                    if let Some(hasher) = &mut hasher {
                        hasher.update(&content);
                    }
                    let chunk = Bytes::from(content).slice(lo..hi);
                    if let Some(previous) = held.replace(chunk)
                        && sender.send(Ok(previous)).await.is_err()
                    {
                        return Ok(());
                    }
                    index += 1;
                }
            }
            segment_first = segment_end;
        }
        if segment_first <= last {
            return Err(BlobError::Corrupt(
                "the stored segments end before the content does".to_owned(),
            ));
        }
        if let Some(hasher) = hasher {
            let digest = hex(&hasher.finalize());
            if digest != self.sha256 {
                return Err(BlobError::Corrupt(format!(
                    "the content's SHA-256 is {digest}, not the stored {}",
                    self.sha256
                )));
            }
        }
        if let Some(chunk) = held {
            let _ = sender.send(Ok(chunk)).await;
        }
        Ok(())
    }
}

/// Content bytes of frame `index` of a content of `size` bytes.
fn frame_content_len(index: u64, size: u64) -> u64 {
    (size - index * FRAME as u64).min(FRAME as u64)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}
