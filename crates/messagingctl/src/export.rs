//! `messagingctl export`: a user's data (ComplianceService.ExportUserData) as JSON Lines, one
//! item per line in protobuf's canonical JSON, with the attachments' bytes in a folder beside
//! the file. It talks to message-service over gRPC as a tenant administrator (a token minted
//! with `auth.hs256_secret`), so the export is audited like any other. A dropped stream is
//! resumed from the last item's cursor; `--resume` continues a file an earlier run left.

use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use messaging_platform::auth::{Bearer, ROLE_ADMIN, TokenIssuer};
use messaging_proto::message::v1 as pb;
use pb::compliance_service_client::ComplianceServiceClient;
use pb::export_user_data_response::Item;
use pb::message_service_client::MessageServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::Settings;

/// What `messagingctl export` was asked.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The user whose data is exported.
    #[arg(long)]
    user: String,
    /// The JSON Lines file to write; attachments go to FILE.attachments/ by attachment id.
    #[arg(long)]
    out: PathBuf,
    /// message-service's address (default: `http://` and message_service.listen).
    #[arg(long)]
    endpoint: Option<String>,
    /// The administrator the audit log names as the exporter.
    #[arg(long = "as", default_value = "messagingctl")]
    actor: String,
    /// Continue the file an interrupted run left, after its last complete item.
    #[arg(long)]
    resume: bool,
}

/// Consecutive failed attempts to resume a dropped stream before giving up.
const RETRIES: u32 = 5;

pub async fn run(settings: &Settings, args: ExportArgs) -> anyhow::Result<()> {
    let endpoint = args
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.message_service.listen));
    let token = TokenIssuer::from_settings(&settings.auth)?.issue(
        &args.tenant,
        &args.actor,
        &[ROLE_ADMIN],
        Duration::from_secs(3600),
    )?;
    let bearer = Bearer::new(&token).context("the token is not a valid header value")?;
    let channel = Channel::from_shared(endpoint.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to message-service at {endpoint}"))?;
    let mut compliance = ComplianceServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut messages = MessageServiceClient::with_interceptor(channel, bearer);

    let attachments = attachments_folder(&args.out);
    std::fs::create_dir_all(&attachments)
        .with_context(|| format!("creating {}", attachments.display()))?;
    let (mut file, mut cursor) = open_output(&args.out, args.resume)?;
    let bar = ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
        "{spinner} {pos} items exported, {msg} ({elapsed})",
    )?);
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut fetched = Fetched::default();
    bar.set_message(fetched.to_string());
    let mut failures = 0;
    loop {
        let request = pb::ExportUserDataRequest {
            user_id: args.user.clone(),
            cursor: cursor.clone(),
        };
        let outcome = async {
            let mut stream = compliance.export_user_data(request).await?.into_inner();
            while let Some(item) = stream.message().await? {
                write_item(&mut file, &item)?;
                if let Some(Item::Message(message)) = &item.item {
                    for attachment in &message.attachments {
                        match download(&mut messages, message, attachment, &attachments).await {
                            Ok(bytes) => {
                                fetched.bytes += bytes;
                                fetched.files += 1;
                                bar.set_message(fetched.to_string());
                            }
                            // Not servable (still being scanned, infected, or gone since):
                            // its metadata is in the export, its bytes are not.
                            Err(error) if unservable(&error) => bar.println(format!(
                                "attachment {} not downloaded: {error}",
                                attachment.attachment_id
                            )),
                            Err(error) => return Err(error),
                        }
                    }
                }
                cursor = item.cursor;
                bar.inc(1);
            }
            anyhow::Ok(())
        }
        .await;
        file.flush()?;
        match outcome {
            Ok(()) => break,
            Err(error) if failures < RETRIES && retryable(&error) => {
                failures += 1;
                bar.println(format!(
                    "the stream broke ({error}); resuming after the last item"
                ));
                tokio::time::sleep(Duration::from_millis(200 << failures)).await;
            }
            Err(error) => {
                bar.abandon();
                return Err(error.context(format!(
                    "exporting {} of {} (rerun with --resume to continue)",
                    args.user, args.tenant
                )));
            }
        }
    }
    bar.finish();
    eprintln!(
        "exported {} items of {} to {}, {} into {}",
        bar.position(),
        args.user,
        args.out.display(),
        fetched,
        attachments.display()
    );
    Ok(())
}

/// What was downloaded.
#[derive(Default)]
struct Fetched {
    files: u64,
    bytes: u64,
}

impl std::fmt::Display for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let noun = if self.files == 1 {
            "attachment"
        } else {
            "attachments"
        };
        write!(
            f,
            "{} {noun} ({})",
            self.files,
            indicatif::HumanBytes(self.bytes)
        )
    }
}

/// `FILE.attachments` beside `out`.
fn attachments_folder(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".attachments");
    out.with_file_name(name)
}

/// The output file, new or (with `resume`) cut after its last complete line, and the cursor of
/// that line (empty: from the start).
fn open_output(out: &Path, resume: bool) -> anyhow::Result<(std::fs::File, String)> {
    if !resume || !out.exists() {
        let file =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        return Ok((file, String::new()));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let mut complete = 0;
    let mut cursor = String::new();
    let mut reader = std::io::BufReader::new(&file);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 || !line.ends_with('\n') {
            break;
        }
        complete += read as u64;
        let item: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{} holds a line that is not JSON", out.display()))?;
        cursor = item["cursor"].as_str().unwrap_or_default().to_owned();
    }
    file.set_len(complete)?;
    file.seek(std::io::SeekFrom::End(0))?;
    Ok((file, cursor))
}

fn write_item(file: &mut std::fs::File, item: &pb::ExportUserDataResponse) -> anyhow::Result<()> {
    // Straight from the dynamic message, so fields keep their proto order.
    let mut line = serde_json::to_vec(&messaging_proto::json::dynamic(item)?)?;
    line.push(b'\n');
    file.write_all(&line)?;
    Ok(())
}

/// Downloads `attachment` into `folder` unless a file of its size is there already (from an
/// earlier run); returns the bytes downloaded.
async fn download(
    client: &mut MessageServiceClient<InterceptedService<Channel, Bearer>>,
    message: &pb::Message,
    attachment: &pb::Attachment,
    folder: &Path,
) -> anyhow::Result<u64> {
    let path = folder.join(&attachment.attachment_id);
    let size = u64::try_from(attachment.size_bytes).unwrap_or_default();
    if std::fs::metadata(&path).is_ok_and(|existing| existing.len() == size) {
        return Ok(0);
    }
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial)?;
    let mut stream = client
        .download_attachment(pb::DownloadAttachmentRequest {
            conversation_id: message.conversation_id.clone(),
            attachment_id: attachment.attachment_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut written = 0;
    while let Some(piece) = stream.message().await? {
        file.write_all(&piece.chunk)?;
        written += piece.chunk.len() as u64;
    }
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    Ok(written)
}

fn status(error: &anyhow::Error) -> Option<Code> {
    error
        .downcast_ref::<tonic::Status>()
        .map(tonic::Status::code)
}

/// Whether an attachment cannot be served (pending, infected, deleted meanwhile).
fn unservable(error: &anyhow::Error) -> bool {
    matches!(
        status(error),
        Some(Code::FailedPrecondition | Code::NotFound)
    )
}

/// Whether a failed export is worth resuming: the connection or the server gave way, not the
/// request.
fn retryable(error: &anyhow::Error) -> bool {
    matches!(
        status(error),
        Some(Code::Unavailable | Code::Unknown | Code::Internal | Code::Aborted | Code::Cancelled)
    )
}
