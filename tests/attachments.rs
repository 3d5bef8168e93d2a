//! Attachments over real gRPC, on SQLite with the local file system and on PostgreSQL with a
//! real S3-compatible server (SeaweedFS): uploads and downloads with checksums, limits,
//! resuming, ranges, sniffing, scanning (ClamAV with the EICAR file), encryption at rest of the
//! stored objects, tampering, permissions and tenants, messages carrying attachments, and the
//! removal of a deleted message's objects.

#[path = "messages/common.rs"]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TENANT, code, team};
use futures::StreamExt;
use message_service::blobs::{AttachmentSettings, Blobs, StoreSettings};
use messaging_e2e::{
    Backend, MessageClient, MessagingHarness, attachment_metadata as metadata, backend_tests,
    clamd_or_skip, eventually, s3_or_skip, text_message, upload_attachment as upload_with,
    violated_fields,
};
use messaging_proto::message::v1 as pb;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::Digest as _;
use tonic::Code;

const MIB: usize = 1024 * 1024;
/// The EICAR test file: harmless, and detected by every scanner by design.
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

struct Setup {
    harness: MessagingHarness,
    /// The deployment's object store, to look at what it holds.
    blobs: Blobs,
    conversation: String,
}

/// Both services on `backend`, attachments on the local file system (SQLite) or the test S3
/// server (PostgreSQL), adjusted by `adjust`; `None` when the S3 server is to be skipped.
async fn setup(backend: Backend, adjust: impl FnOnce(&mut AttachmentSettings)) -> Option<Setup> {
    let s3 = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(s3_or_skip().await?),
    };
    let mut store: Option<StoreSettings> = None;
    let harness = MessagingHarness::start_with(backend, |settings| {
        let attachments = &mut settings.message_service.attachments;
        if let Some(s3) = s3 {
            attachments.store = s3;
        }
        attachments.sweep_interval = Duration::from_millis(200);
        adjust(attachments);
        store = Some(attachments.store.clone());
    })
    .await;
    let blobs = Blobs::from_settings(&store.expect("store settings")).expect("object store");
    let conversation = team(&harness).await;
    Some(Setup {
        harness,
        blobs,
        conversation,
    })
}

fn sha(bytes: &[u8]) -> String {
    message_service::blobs::hex(&sha2::Sha256::digest(bytes))
}

/// Deterministic bytes that no signature matches.
fn content(size: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

async fn upload(
    client: &mut MessageClient,
    conversation: &str,
    name: &str,
    kind: &str,
    bytes: &[u8],
) -> Result<pb::Attachment, tonic::Status> {
    upload_with(client, metadata(conversation, name, kind, bytes), bytes).await
}

async fn download(
    client: &mut MessageClient,
    conversation: &str,
    id: &str,
    offset: i64,
    length: i64,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = client
        .download_attachment(pb::DownloadAttachmentRequest {
            conversation_id: conversation.to_owned(),
            attachment_id: id.to_owned(),
            offset,
            length,
        })
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        assert!(chunk.chunk.len() <= 64 * 1024, "chunks are at most 64 KiB");
        bytes.extend_from_slice(&chunk.chunk);
    }
    Ok(bytes)
}

async fn get(
    client: &mut MessageClient,
    conversation: &str,
    id: &str,
) -> Result<pb::Attachment, tonic::Status> {
    client
        .get_attachment(pb::GetAttachmentRequest {
            conversation_id: conversation.to_owned(),
            attachment_id: id.to_owned(),
        })
        .await
        .map(|response| response.into_inner().attachment.expect("attachment"))
}

/// Every object the store holds (one removed between listing and reading is left out).
async fn objects(blobs: &Blobs) -> Vec<(String, Bytes)> {
    let store = blobs.objects();
    let listed: Vec<object_store::ObjectMeta> = store
        .list(None)
        .map(|meta| meta.expect("listing"))
        .collect()
        .await;
    let mut all = Vec::new();
    for meta in listed {
        let object = match store.get(&meta.location).await {
            Ok(object) => object,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(error) => panic!("reading {}: {error}", meta.location),
        };
        all.push((
            meta.location.to_string(),
            object.bytes().await.expect("bytes"),
        ));
    }
    all
}

async fn wait_until_empty(blobs: &Blobs, what: &str) {
    eventually(Duration::from_secs(20), what, || async {
        objects(blobs).await.is_empty()
    })
    .await;
}

fn attachment_message(conversation: &str, text: &str, ids: &[&str]) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        attachment_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        ..text_message(conversation, text)
    }
}

async fn round_trips_every_size(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    for size in [0, 1, 5 * MIB, 64 * MIB] {
        let bytes = content(size);
        let stored = upload(
            &mut bob,
            &setup.conversation,
            "data.bin",
            "application/octet-stream",
            &bytes,
        )
        .await
        .unwrap_or_else(|status| panic!("upload of {size} bytes: {status:?}"));
        assert_eq!(stored.size_bytes, size as i64);
        assert_eq!(stored.uploaded_bytes, size as i64);
        assert_eq!(stored.sha256, sha(&bytes));
        assert_eq!(stored.state(), pb::AttachmentState::Clean);
        assert_eq!(stored.uploader_id, "bob");
        let back = download(&mut bob, &setup.conversation, &stored.attachment_id, 0, 0)
            .await
            .unwrap_or_else(|status| panic!("download of {size} bytes: {status:?}"));
        assert_eq!(back.len(), size);
        assert_eq!(sha(&back), sha(&bytes), "{size} bytes come back unchanged");
    }
}

async fn refuses_a_checksum_mismatch_and_keeps_nothing(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    let bytes = content(300 * 1024);
    let id = uuid::Uuid::new_v4().to_string();
    let claimed = pb::AttachmentUploadMetadata {
        sha256: sha(b"something else"),
        attachment_id: id.clone(),
        ..metadata(
            &setup.conversation,
            "a.bin",
            "application/octet-stream",
            &bytes,
        )
    };
    let refused = upload_with(&mut bob, claimed, &bytes)
        .await
        .expect_err("mismatch");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["metadata.sha256"]);
    assert_eq!(
        code(
            bob.get_attachment(pb::GetAttachmentRequest {
                conversation_id: setup.conversation.clone(),
                attachment_id: id,
            })
            .await
        ),
        Code::NotFound
    );
    wait_until_empty(&setup.blobs, "the refused upload's objects are removed").await;
}

async fn refuses_oversize_mid_stream(backend: Backend) {
    let Some(setup) = setup(backend, |settings| settings.max_size_bytes = MIB as u64).await else {
        return;
    };
    let bob = setup.harness.client(TENANT, "bob");
    // Streams that would never end: the refusals must come while they are still sending.
    let refused = |size_bytes: usize| {
        let metadata = pb::AttachmentUploadMetadata {
            size_bytes: size_bytes as i64,
            ..metadata(
                &setup.conversation,
                "big.bin",
                "application/octet-stream",
                b"",
            )
        };
        let endless = futures::stream::iter([pb::UploadAttachmentRequest {
            metadata: Some(metadata),
            chunk: Bytes::new(),
        }])
        .chain(futures::stream::repeat_with(|| {
            pb::UploadAttachmentRequest {
                metadata: None,
                chunk: Bytes::from(vec![7_u8; 64 * 1024]),
            }
        }));
        let mut bob = bob.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(30), bob.upload_attachment(endless))
                .await
                .expect("refused before the end")
                .expect_err("refused")
        }
    };
    let declared_too_big = refused(2 * MIB).await;
    assert_eq!(declared_too_big.code(), Code::ResourceExhausted);
    let more_than_declared = refused(100 * 1024).await;
    assert_eq!(more_than_declared.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&more_than_declared), ["chunk"]);
    wait_until_empty(&setup.blobs, "nothing of the refused uploads is kept").await;
}

async fn resumes_an_interrupted_upload(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    let bytes = content(MIB + 12_345);
    let id = uuid::Uuid::new_v4().to_string();
    let first = pb::AttachmentUploadMetadata {
        attachment_id: id.clone(),
        ..metadata(
            &setup.conversation,
            "long.bin",
            "application/octet-stream",
            &bytes,
        )
    };
    // The stream ends after 300,000 bytes: the whole 64 KiB frames among them are kept.
    let cut = upload_with(&mut bob, first.clone(), &bytes[..300_000])
        .await
        .expect_err("incomplete");
    assert_eq!(cut.code(), Code::InvalidArgument);
    assert!(
        cut.message().contains("resume with offset 262144"),
        "{}",
        cut.message()
    );
    let pending = get(&mut bob, &setup.conversation, &id)
        .await
        .expect("unfinished upload");
    assert_eq!(pending.state(), pb::AttachmentState::Uploading);
    assert_eq!(pending.uploaded_bytes, 262_144);
    assert_eq!(
        code(
            bob.download_attachment(pb::DownloadAttachmentRequest {
                conversation_id: setup.conversation.clone(),
                attachment_id: id.clone(),
                ..Default::default()
            })
            .await
        ),
        Code::FailedPrecondition,
        "an unfinished upload is not served"
    );
    // A wrong offset is refused, naming the right one.
    let wrong = upload_with(
        &mut bob,
        pb::AttachmentUploadMetadata {
            offset: 300_000,
            ..first.clone()
        },
        &bytes[300_000..],
    )
    .await
    .expect_err("wrong offset");
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    assert!(
        wrong.message().contains("offset 262144"),
        "{}",
        wrong.message()
    );
    // Another user cannot take the upload over.
    let mut mia = setup.harness.client(TENANT, "mia");
    let taken = upload_with(
        &mut mia,
        pb::AttachmentUploadMetadata {
            offset: 262_144,
            ..first.clone()
        },
        &bytes[262_144..],
    )
    .await
    .expect_err("not hers");
    assert_eq!(taken.code(), Code::AlreadyExists);
    let done = upload_with(
        &mut bob,
        pb::AttachmentUploadMetadata {
            offset: 262_144,
            ..first
        },
        &bytes[262_144..],
    )
    .await
    .expect("resumed");
    assert_eq!(done.attachment_id, id);
    assert_eq!(done.uploaded_bytes, bytes.len() as i64);
    let back = download(&mut bob, &setup.conversation, &id, 0, 0)
        .await
        .expect("download");
    assert_eq!(sha(&back), sha(&bytes));
}

async fn serves_byte_ranges(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    let bytes = content(200_000);
    let id = upload(
        &mut bob,
        &setup.conversation,
        "r.bin",
        "application/octet-stream",
        &bytes,
    )
    .await
    .expect("upload")
    .attachment_id;
    let size = bytes.len() as i64;
    let range = |offset: i64, length: i64| {
        let mut bob = bob.clone();
        let conversation = setup.conversation.clone();
        let id = id.clone();
        async move { download(&mut bob, &conversation, &id, offset, length).await }
    };
    assert_eq!(range(0, 1).await.expect("first byte"), bytes[..1]);
    assert_eq!(
        range(size - 1, 1).await.expect("last byte"),
        bytes[bytes.len() - 1..]
    );
    assert_eq!(
        range(65_000, 70_000).await.expect("across frames"),
        bytes[65_000..135_000]
    );
    assert_eq!(
        range(199_990, 100).await.expect("cut at the end"),
        bytes[199_990..]
    );
    assert!(range(size, 0).await.expect("at the end").is_empty());
    assert_eq!(
        range(size + 1, 0).await.expect_err("past the end").code(),
        Code::OutOfRange
    );
    let negative = range(-1, 0).await.expect_err("negative");
    assert_eq!(violated_fields(&negative), ["offset"]);
}

async fn sniffs_types_and_refuses_forbidden_ones(backend: Backend) {
    let Some(setup) = setup(backend, |settings| {
        settings.allowed_content_types =
            message_service::domain::attachment::AllowedTypes::new(vec![
                "image/*".to_owned(),
                "text/plain".to_owned(),
            ]);
    })
    .await
    else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    let png = upload(
        &mut bob,
        &setup.conversation,
        "notes.txt",
        "text/plain",
        PNG,
    )
    .await
    .expect("a PNG declared as text");
    assert_eq!(png.content_type, "image/png", "the bytes decide");
    assert_eq!(
        png.declared_content_type, "text/plain",
        "the declaration is kept"
    );
    let text = upload(
        &mut bob,
        &setup.conversation,
        "a.txt",
        "text/plain",
        b"plain words",
    )
    .await
    .expect("text");
    assert_eq!(text.content_type, "text/plain");
    let declared = upload(
        &mut bob,
        &setup.conversation,
        "a.pdf",
        "application/pdf",
        b"%PDF-1.7",
    )
    .await
    .expect_err("declared forbidden");
    assert_eq!(violated_fields(&declared), ["metadata.content_type"]);
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend(content(20_000));
    let sniffed = upload(&mut bob, &setup.conversation, "a.txt", "text/plain", &pdf)
        .await
        .expect_err("sniffed forbidden");
    assert_eq!(sniffed.code(), Code::InvalidArgument);
    assert!(
        sniffed.message().contains("application/pdf"),
        "{}",
        sniffed.message()
    );
}

async fn pending_scans_are_not_served(backend: Backend) {
    // A scanner that cannot be reached: attachments stay pending.
    let Some(setup) = setup(backend, |settings| {
        settings.scanner.kind = message_service::blobs::scan::ScannerKind::Clamav;
        settings.scanner.address = Some("127.0.0.1:9".to_owned());
    })
    .await
    else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    let pending = upload(
        &mut bob,
        &setup.conversation,
        "p.bin",
        "application/octet-stream",
        b"wait",
    )
    .await
    .expect("upload");
    assert_eq!(pending.state(), pb::AttachmentState::Pending);
    let refused = download(&mut bob, &setup.conversation, &pending.attachment_id, 0, 0)
        .await
        .expect_err("not scanned");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let sent = bob
        .send_message(attachment_message(
            &setup.conversation,
            "soon",
            &[&pending.attachment_id],
        ))
        .await
        .expect("a pending attachment can be sent")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(sent.attachments[0].state(), pb::AttachmentState::Pending);
}

async fn clamav_finds_eicar(backend: Backend) {
    let Some(address) = clamd_or_skip().await else {
        return;
    };
    let Some(setup) = setup(backend, |settings| {
        settings.scanner.kind = message_service::blobs::scan::ScannerKind::Clamav;
        settings.scanner.address = Some(address);
    })
    .await
    else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    let infected = upload(
        &mut bob,
        &setup.conversation,
        "eicar.com",
        "application/octet-stream",
        EICAR.as_bytes(),
    )
    .await
    .expect("upload");
    let clean = upload(
        &mut bob,
        &setup.conversation,
        "fine.txt",
        "text/plain",
        b"nothing to see",
    )
    .await
    .expect("upload");
    for (attachment, expected) in [
        (&infected, pb::AttachmentState::Infected),
        (&clean, pb::AttachmentState::Clean),
    ] {
        let mut bob = bob.clone();
        let conversation = setup.conversation.clone();
        eventually(Duration::from_secs(30), "the scanner decides", || {
            let mut bob = bob.clone();
            let conversation = conversation.clone();
            let id = attachment.attachment_id.clone();
            async move {
                get(&mut bob, &conversation, &id)
                    .await
                    .expect("get")
                    .state()
                    == expected
            }
        })
        .await;
        let downloaded = download(&mut bob, &conversation, &attachment.attachment_id, 0, 0).await;
        match expected {
            pb::AttachmentState::Clean => {
                assert_eq!(downloaded.expect("clean"), b"nothing to see");
            }
            _ => assert_eq!(
                downloaded.expect_err("infected").code(),
                Code::FailedPrecondition
            ),
        }
    }
    let refused = bob
        .send_message(attachment_message(
            &setup.conversation,
            "x",
            &[&infected.attachment_id],
        ))
        .await
        .expect_err("infected files are not sent");
    assert_eq!(violated_fields(&refused), ["attachment_ids[0]"]);
}

async fn stored_objects_hold_no_plaintext_and_detect_tampering(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    let canary = b"the-canary-sings-at-dawn";
    let mut bytes = content(150_000);
    bytes[70_000..70_000 + canary.len()].copy_from_slice(canary);
    bytes[..canary.len()].copy_from_slice(canary);
    let id = upload(
        &mut bob,
        &setup.conversation,
        "canary-report.txt",
        "text/plain",
        &bytes,
    )
    .await
    .expect("upload")
    .attachment_id;
    let stored = objects(&setup.blobs).await;
    assert!(!stored.is_empty());
    for (path, object) in &stored {
        assert!(
            !object.windows(canary.len()).any(|window| window == canary),
            "object {path} holds plaintext"
        );
        assert!(
            !path.contains("canary"),
            "object names hold no file name: {path}"
        );
    }
    // One flipped bit in the second frame.
    let (path, object) = &stored[0];
    let mut tampered = object.to_vec();
    tampered[70_000] ^= 1;
    setup
        .blobs
        .objects()
        .put(
            &object_store::path::Path::from(path.as_str()),
            tampered.into(),
        )
        .await
        .expect("tamper");
    let whole = download(&mut bob, &setup.conversation, &id, 0, 0)
        .await
        .expect_err("tampered");
    assert_eq!(whole.code(), Code::DataLoss);
    let second_frame = download(&mut bob, &setup.conversation, &id, 66_000, 10)
        .await
        .expect_err("tampered frame");
    assert_eq!(second_frame.code(), Code::DataLoss);
    assert_eq!(
        download(&mut bob, &setup.conversation, &id, 0, 100)
            .await
            .expect("the first frame is intact"),
        bytes[..100]
    );
}

async fn permissions_and_tenants(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let conversation = &setup.conversation;
    let mut bob = setup.harness.client(TENANT, "bob");
    let mut mia = setup.harness.client(TENANT, "mia");
    let mut vic = setup.harness.client(TENANT, "vic");
    let mut stranger = setup.harness.client(TENANT, "zed");
    let mut other_tenant = setup.harness.client("globex", "bob");
    let file = b"quarterly numbers".to_vec();
    let refused = upload(&mut vic, conversation, "v.txt", "text/plain", &file).await;
    assert_eq!(refused.expect_err("viewer").code(), Code::PermissionDenied);
    let refused = upload(&mut stranger, conversation, "z.txt", "text/plain", &file).await;
    assert_eq!(refused.expect_err("stranger").code(), Code::NotFound);
    let refused = upload(
        &mut other_tenant,
        conversation,
        "g.txt",
        "text/plain",
        &file,
    )
    .await;
    assert_eq!(refused.expect_err("other tenant").code(), Code::NotFound);
    let id = upload(&mut bob, conversation, "q.txt", "text/plain", &file)
        .await
        .expect("member")
        .attachment_id;
    // Until it is sent, only its uploader sees it.
    for client in [&mut mia, &mut vic] {
        assert_eq!(
            get(client, conversation, &id)
                .await
                .expect_err("unsent")
                .code(),
            Code::NotFound
        );
    }
    let refused = mia
        .send_message(attachment_message(conversation, "mine now", &[&id]))
        .await
        .expect_err("someone else's attachment");
    assert_eq!(violated_fields(&refused), ["attachment_ids[0]"]);
    // Nor in another conversation, by its uploader.
    let mut alice = setup.harness.conversations.client(TENANT, "alice");
    let elsewhere = messaging_e2e::create_group(
        &mut alice,
        "Elsewhere",
        &[("bob", messaging_proto::conversation::v1::Role::Member)],
    )
    .await;
    let refused = bob
        .send_message(attachment_message(&elsewhere, "wrong place", &[&id]))
        .await
        .expect_err("another conversation");
    assert_eq!(violated_fields(&refused), ["attachment_ids[0]"]);
    bob.send_message(attachment_message(conversation, "numbers", &[&id]))
        .await
        .expect("send");
    for client in [&mut mia, &mut vic, &mut bob] {
        assert_eq!(
            download(client, conversation, &id, 0, 0)
                .await
                .expect("readers"),
            file
        );
    }
    for client in [&mut stranger, &mut other_tenant] {
        assert_eq!(
            get(client, conversation, &id)
                .await
                .expect_err("outsider")
                .code(),
            Code::NotFound
        );
        assert_eq!(
            download(client, conversation, &id, 0, 0)
                .await
                .expect_err("outsider")
                .code(),
            Code::NotFound
        );
    }
    // The same id in another tenant is another attachment entirely.
    let mut globex_owner = setup.harness.conversations.client("globex", "bob");
    let globex_conversation = messaging_e2e::create_group(&mut globex_owner, "Globex", &[]).await;
    let clash = pb::AttachmentUploadMetadata {
        attachment_id: id.clone(),
        ..metadata(&globex_conversation, "g.txt", "text/plain", b"globex")
    };
    let theirs = upload_with(&mut other_tenant, clash, b"globex")
        .await
        .expect("own tenant");
    assert_eq!(theirs.attachment_id, id);
    assert_eq!(
        download(&mut bob, conversation, &id, 0, 0)
            .await
            .expect("still ours"),
        file
    );
    let sent_twice = bob
        .send_message(attachment_message(conversation, "again", &[&id]))
        .await
        .expect_err("sent already");
    assert_eq!(violated_fields(&sent_twice), ["attachment_ids[0]"]);
}

async fn messages_carry_attachments_and_filter_by_them(backend: Backend) {
    let Some(setup) = setup(backend, |settings| settings.max_per_message = 2).await else {
        return;
    };
    let conversation = &setup.conversation;
    let mut bob = setup.harness.client(TENANT, "bob");
    let a = upload(&mut bob, conversation, "a.png", "image/png", PNG)
        .await
        .expect("a");
    let b = upload(&mut bob, conversation, "b.txt", "text/plain", b"bee")
        .await
        .expect("b");
    let c = upload(&mut bob, conversation, "c.txt", "text/plain", b"sea")
        .await
        .expect("c");
    let too_many = bob
        .send_message(attachment_message(
            conversation,
            "three",
            &[&a.attachment_id, &b.attachment_id, &c.attachment_id],
        ))
        .await
        .expect_err("over the limit");
    assert_eq!(violated_fields(&too_many), ["attachment_ids"]);
    let sent = bob
        .send_message(pb::SendMessageRequest {
            content: None,
            ..attachment_message(conversation, "", &[&b.attachment_id, &a.attachment_id])
        })
        .await
        .expect("attachments only")
        .into_inner()
        .message
        .expect("message");
    let names: Vec<&str> = sent
        .attachments
        .iter()
        .map(|a| a.file_name.as_str())
        .collect();
    assert_eq!(names, ["b.txt", "a.png"], "in the order sent");
    assert_eq!(sent.attachments[1].sha256, sha(PNG));
    assert_eq!(sent.attachments[1].message_id, sent.message_id);
    bob.send_message(text_message(conversation, "report without files"))
        .await
        .expect("plain");
    bob.send_message(attachment_message(
        conversation,
        "report with files",
        &[&c.attachment_id],
    ))
    .await
    .expect("with");
    let listed = bob
        .list_messages(pb::ListMessagesRequest {
            conversation_id: conversation.clone(),
            has_attachments: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .messages;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|message| !message.attachments.is_empty()));
    let fetched = bob
        .get_message(pb::GetMessageRequest {
            conversation_id: conversation.clone(),
            message_id: sent.message_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(fetched.attachments.len(), 2);
    let hits = bob
        .search_messages(pb::SearchMessagesRequest {
            query: "report".to_owned(),
            has_attachments: true,
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
        .hits;
    assert_eq!(hits.len(), 1);
    let hit = hits[0].message.as_ref().expect("message");
    assert_eq!(hit.attachments[0].file_name, "c.txt");
}

async fn deleting_the_message_removes_the_objects(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let conversation = &setup.conversation;
    let mut bob = setup.harness.client(TENANT, "bob");
    let attachment = upload(
        &mut bob,
        conversation,
        "gone.bin",
        "application/octet-stream",
        &content(100_000),
    )
    .await
    .expect("upload");
    let sent = bob
        .send_message(attachment_message(
            conversation,
            "soon gone",
            &[&attachment.attachment_id],
        ))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("message");
    assert!(!objects(&setup.blobs).await.is_empty());
    bob.delete_message(pb::DeleteMessageRequest {
        conversation_id: conversation.clone(),
        message_id: sent.message_id,
    })
    .await
    .expect("delete");
    assert_eq!(
        get(&mut bob, conversation, &attachment.attachment_id)
            .await
            .expect_err("detached")
            .code(),
        Code::NotFound
    );
    wait_until_empty(&setup.blobs, "the deleted message's objects are removed").await;
}

async fn abandoned_uploads_are_cleaned_up(backend: Backend) {
    let Some(setup) = setup(backend, |settings| {
        settings.abandon_after = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    let mut bob = setup.harness.client(TENANT, "bob");
    let bytes = content(200_000);
    let id = uuid::Uuid::new_v4().to_string();
    let cut = upload_with(
        &mut bob,
        pb::AttachmentUploadMetadata {
            attachment_id: id.clone(),
            ..metadata(
                &setup.conversation,
                "left.bin",
                "application/octet-stream",
                &bytes,
            )
        },
        &bytes[..150_000],
    )
    .await
    .expect_err("incomplete");
    assert_eq!(cut.code(), Code::InvalidArgument);
    wait_until_empty(&setup.blobs, "the abandoned upload's objects are removed").await;
    assert_eq!(
        get(&mut bob, &setup.conversation, &id)
            .await
            .expect_err("gone")
            .code(),
        Code::NotFound
    );
}

backend_tests!(
    round_trips_every_size,
    refuses_a_checksum_mismatch_and_keeps_nothing,
    refuses_oversize_mid_stream,
    resumes_an_interrupted_upload,
    serves_byte_ranges,
    sniffs_types_and_refuses_forbidden_ones,
    pending_scans_are_not_served,
    clamav_finds_eicar,
    stored_objects_hold_no_plaintext_and_detect_tampering,
    permissions_and_tenants,
    messages_carry_attachments_and_filter_by_them,
    deleting_the_message_removes_the_objects,
    abandoned_uploads_are_cleaned_up,
);
