//! The attachment RPCs' streams: an upload's request stream as the metadata and a stream of
//! bytes, and a download's bytes as response messages.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use messaging_platform::{ApiError, ApiResult};
use messaging_proto::message::v1 as pb;
use tonic::{Status, Streaming};

use crate::domain::attachment::Upload;

/// Most bytes one upload message may carry.
pub const MAX_CHUNK: usize = 1024 * 1024;

/// A download's response stream.
pub type DownloadStream = BoxStream<'static, Result<pb::DownloadAttachmentResponse, Status>>;

fn chunk(bytes: Bytes) -> ApiResult<Bytes> {
    if bytes.len() > MAX_CHUNK {
        return Err(ApiError::invalid(
            "chunk",
            format!(
                "carries {} bytes; at most {MAX_CHUNK} per message",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Reads the first message's metadata; the rest of the stream becomes the content (an `Err`
/// where it broke or carried something invalid).
pub async fn split_upload(
    mut stream: Streaming<pb::UploadAttachmentRequest>,
) -> ApiResult<(Upload, BoxStream<'static, ApiResult<Bytes>>)> {
    let first = stream
        .message()
        .await
        .map_err(|status| ApiError::invalid("metadata", format!("no metadata: {status}")))?
        .ok_or_else(|| ApiError::invalid("metadata", "required: the stream was empty"))?;
    let upload = super::request::upload(first.metadata.as_ref())?;
    let head = chunk(first.chunk)?;
    let rest = stream.map(|item| match item {
        Ok(message) if message.metadata.is_some() => Err(ApiError::invalid(
            "metadata",
            "only the first message of an upload carries metadata",
        )),
        Ok(message) => chunk(message.chunk),
        Err(status) => Err(ApiError::Aborted(format!(
            "the upload stream broke ({}); ask GetAttachment for uploaded_bytes and resume",
            status.message()
        ))),
    });
    Ok((
        upload,
        futures::stream::iter([Ok(head)])
            .filter(|head| std::future::ready(!matches!(head, Ok(bytes) if bytes.is_empty())))
            .chain(rest)
            .boxed(),
    ))
}

/// A download's bytes as response messages.
pub fn download_stream(content: BoxStream<'static, ApiResult<Bytes>>) -> DownloadStream {
    content
        .map(|chunk| {
            chunk
                .map(|chunk| pb::DownloadAttachmentResponse { chunk })
                .map_err(Status::from)
        })
        .boxed()
}
