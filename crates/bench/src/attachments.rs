//! The attachments scenario: upload and download throughput (MiB/s) of 10 MiB files, 8 in
//! flight, beside the same-run floor of writing and reading the same bytes straight to the same
//! object store (multipart writes of the service's part size, streamed reads), and the resident
//! memory of a message-service process during one 1 GiB upload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use messaging_proto::message::v1 as pb;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::Digest as _;

use crate::report::{Measurement, Report};
use crate::setup::Deployment;
use crate::streams::resident_bytes;

const MIB: usize = 1024 * 1024;
const FILE: usize = 10 * MIB;
const IN_FLIGHT: usize = 8;
const CHUNK: usize = 256 * 1024;

fn file_bytes() -> Bytes {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    Bytes::from(
        (0..FILE)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect::<Vec<u8>>(),
    )
}

fn throughput(measurement: &Measurement) -> f64 {
    measurement.per_second * (FILE / MIB) as f64
}

fn upload_requests(
    conversation: &str,
    bytes: &Bytes,
) -> impl futures::Stream<Item = pb::UploadAttachmentRequest> + Send + 'static + use<> {
    let metadata = pb::UploadAttachmentRequest {
        metadata: Some(pb::AttachmentUploadMetadata {
            conversation_id: conversation.to_owned(),
            file_name: "bench.bin".to_owned(),
            content_type: "application/octet-stream".to_owned(),
            size_bytes: bytes.len() as i64,
            sha256: message_service::blobs::hex(&sha2::Sha256::digest(bytes)),
            ..Default::default()
        }),
        chunk: Bytes::new(),
    };
    let bytes = bytes.clone();
    futures::stream::iter(
        std::iter::once(metadata).chain((0..bytes.len()).step_by(CHUNK).map(move |start| {
            pb::UploadAttachmentRequest {
                metadata: None,
                chunk: bytes.slice(start..(start + CHUNK).min(bytes.len())),
            }
        })),
    )
}

/// Runs the scenario and adds its lines to `report`.
pub async fn attachments(
    deployment: &Deployment,
    report: &mut Report,
    phase: Duration,
) -> anyhow::Result<()> {
    let bytes = file_bytes();
    let settings = &deployment.message_settings.message_service.attachments;
    let blobs = message_service::admin::Blobs::from_settings(&settings.store)?;
    let part_size = settings.store.part_size_bytes;

    // Floors: the same bytes straight to and from the same object store.
    let objects: Arc<dyn ObjectStore> = blobs.objects().clone();
    let written = {
        let (objects, bytes) = (objects.clone(), bytes.clone());
        crate::load(
            "object store floor (write)",
            IN_FLIGHT,
            phase,
            move |index| {
                let (objects, bytes) = (objects.clone(), bytes.clone());
                async move {
                    let path = object_store::path::Path::from(format!("bench-floor/{index}"));
                    let Ok(upload) = objects.put_multipart(&path).await else {
                        return false;
                    };
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
                    for start in (0..bytes.len()).step_by(CHUNK) {
                        if writer.wait_for_capacity(1).await.is_err() {
                            return false;
                        }
                        writer.put(bytes.slice(start..(start + CHUNK).min(bytes.len())));
                    }
                    writer.finish().await.is_ok()
                }
            },
        )
        .await
    };
    let written_count = written.operations.max(1);
    let read = {
        let objects = objects.clone();
        crate::load(
            "object store floor (read)",
            IN_FLIGHT,
            phase,
            move |index| {
                let objects = objects.clone();
                async move {
                    let path = object_store::path::Path::from(format!(
                        "bench-floor/{}",
                        index % written_count
                    ));
                    let Ok(result) = objects.get(&path).await else {
                        return false;
                    };
                    let mut stream = result.into_stream();
                    let mut total = 0;
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            Ok(chunk) => total += chunk.len(),
                            Err(_) => return false,
                        }
                    }
                    total == FILE
                }
            },
        )
        .await
    };

    // The service: uploads, then downloads of what was uploaded.
    let conversation = deployment
        .create_groups("uma", &["bob"], 1)
        .await?
        .remove(0);
    let uploaded_ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let upload = {
        let client = deployment.message_client("uma");
        let (ids, bytes, conversation) =
            (uploaded_ids.clone(), bytes.clone(), conversation.clone());
        crate::load("upload (10 MiB files)", IN_FLIGHT, phase, move |_| {
            let mut client = client.clone();
            let requests = upload_requests(&conversation, &bytes);
            let ids = ids.clone();
            async move {
                match client.upload_attachment(requests).await {
                    Ok(response) => {
                        if let Some(attachment) = response.into_inner().attachment
                            && let Ok(mut ids) = ids.lock()
                        {
                            ids.push(attachment.attachment_id);
                        }
                        true
                    }
                    Err(_) => false,
                }
            }
        })
        .await
    };
    let ids: Vec<String> = uploaded_ids
        .lock()
        .map(|ids| ids.clone())
        .unwrap_or_default();
    anyhow::ensure!(!ids.is_empty(), "no upload succeeded");
    let download = {
        let client = deployment.message_client("uma");
        let ids = Arc::new(ids);
        crate::load("download (10 MiB files)", IN_FLIGHT, phase, move |index| {
            let mut client = client.clone();
            let id = ids[usize::try_from(index).unwrap_or(0) % ids.len()].clone();
            let conversation = conversation.clone();
            async move {
                let Ok(response) = client
                    .download_attachment(pb::DownloadAttachmentRequest {
                        conversation_id: conversation,
                        attachment_id: id,
                        ..Default::default()
                    })
                    .await
                else {
                    return false;
                };
                let mut stream = response.into_inner();
                let mut total = 0;
                loop {
                    match stream.message().await {
                        Ok(Some(chunk)) => total += chunk.chunk.len(),
                        Ok(None) => break total == FILE,
                        Err(_) => break false,
                    }
                }
            }
        })
        .await
    };
    report.note(
        "attachments: upload",
        format!(
            "{:.0} MiB/s = {:.2}x the object store's write floor ({:.0} MiB/s), 8 in flight, {} errors",
            throughput(&upload),
            throughput(&upload) / throughput(&written).max(f64::MIN_POSITIVE),
            throughput(&written),
            upload.errors
        ),
    );
    report.note(
        "attachments: download",
        format!(
            "{:.0} MiB/s = {:.2}x the object store's read floor ({:.0} MiB/s), 8 in flight, {} errors",
            throughput(&download),
            throughput(&download) / throughput(&read).max(f64::MIN_POSITIVE),
            throughput(&read),
            download.errors
        ),
    );
    for measurement in [written, read, upload, download] {
        report.push(measurement);
    }
    report.note(
        "attachments: 1 GiB upload",
        one_gib_upload(deployment).await?,
    );
    Ok(())
}

/// Uploads 1 GiB to a message-service process of its own and samples its resident memory.
async fn one_gib_upload(deployment: &Deployment) -> anyhow::Result<String> {
    const SIZE: usize = 1024 * MIB;
    let process = deployment.spawn_message_service(&[]).await?;
    let pid = process.pid;
    let conversation = deployment
        .create_groups("gia", &["bob"], 1)
        .await?
        .remove(0);
    let mut client = deployment.message_client_on(process.channel.clone(), "gia");
    // The content: one 1 MiB block repeated, hashed up front without holding the whole.
    let block = file_bytes().slice(0..MIB);
    let mut hasher = sha2::Sha256::new();
    for _ in 0..SIZE / MIB {
        hasher.update(&block);
    }
    let metadata = pb::UploadAttachmentRequest {
        metadata: Some(pb::AttachmentUploadMetadata {
            conversation_id: conversation,
            file_name: "large.bin".to_owned(),
            content_type: "application/octet-stream".to_owned(),
            size_bytes: SIZE as i64,
            sha256: message_service::blobs::hex(&hasher.finalize()),
            ..Default::default()
        }),
        chunk: Bytes::new(),
    };
    let requests = futures::stream::iter(std::iter::once(metadata).chain((0..SIZE / MIB).map(
        move |_| pb::UploadAttachmentRequest {
            metadata: None,
            chunk: block.clone(),
        },
    )));
    let before = resident_bytes(pid)?;
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            while let Ok(now) = resident_bytes(pid) {
                peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let outcome = client.upload_attachment(requests).await;
    let took = started.elapsed();
    sampler.abort();
    let after = resident_bytes(pid)?;
    drop(process);
    let attachment = outcome?.into_inner().attachment.unwrap_or_default();
    anyhow::ensure!(
        attachment.size_bytes == SIZE as i64,
        "the 1 GiB upload stored {} bytes",
        attachment.size_bytes
    );
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    Ok(format!(
        "message-service resident memory {:.1} MiB before, {:.1} MiB at most during, {:.1} MiB after (growth {:.1} MiB); {:.0} MiB/s",
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        after as f64 / MIB as f64,
        peak.saturating_sub(before) as f64 / MIB as f64,
        SIZE as f64 / MIB as f64 / took.as_secs_f64()
    ))
}
