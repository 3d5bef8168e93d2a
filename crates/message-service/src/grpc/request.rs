//! Requests as domain values: every field checked, each problem reported as a field violation
//! (all of a request's problems at once), nothing else.

use std::collections::HashSet;
use std::time::Duration;

use messaging_outbox::stream;
use messaging_platform::time::from_timestamp;
use messaging_platform::validate::{page_size, principal_id, resource_id};
use messaging_platform::{ApiError, ApiResult, FieldViolations};
use messaging_proto::message::v1 as pb;
use uuid::Uuid;

use crate::app::{self, ListRequest, SearchRequest, Start};
use crate::domain::attachment::Upload;
use crate::domain::content::{self, Content};
use crate::domain::message::mentions;
use crate::domain::{Edit, MessageFilter, NewMessage};

/// Default and largest page of messages, revisions and reactions.
const PAGE: (u64, u64) = (50, 200);
/// Default and largest page of search hits.
const SEARCH_PAGE: (u64, u64) = (20, 100);
/// Longest search query.
const MAX_QUERY_CHARS: usize = 512;

fn single(violation: tonic_types::FieldViolation) -> ApiError {
    ApiError::InvalidArgument(vec![violation])
}

fn encrypted(
    violations: &mut FieldViolations,
    field: &str,
    payload: &pb::EncryptedPayload,
    max: usize,
) -> Option<Content> {
    violations.check(content::encrypted(
        field,
        &payload.ciphertext,
        &payload.algorithm,
        &payload.key_id,
        max,
    ))
}

/// `page_size` of the message, revision and reaction listings.
pub fn page(value: i32) -> ApiResult<u64> {
    page_size("page_size", value, PAGE.0, PAGE.1).map_err(single)
}

/// A reaction's emoji.
pub fn emoji(value: &str) -> ApiResult<String> {
    crate::domain::emoji::emoji("emoji", value).map_err(single)
}

/// An optional emoji filter (empty: every emoji).
pub fn emoji_filter(value: &str) -> ApiResult<Option<String>> {
    if value.is_empty() {
        Ok(None)
    } else {
        emoji(value).map(Some)
    }
}

/// SendMessage.
pub fn new_message(request: &pb::SendMessageRequest, max: usize) -> ApiResult<NewMessage> {
    use pb::send_message_request::Content as Body;
    let mut violations = FieldViolations::new();
    let conversation = violations.check(resource_id("conversation_id", &request.conversation_id));
    let content = match &request.content {
        Some(Body::Text(text)) if !text.is_empty() => violations
            .check(content::text("text", text, max))
            .map(Content::Text),
        Some(Body::Encrypted(payload)) => encrypted(&mut violations, "encrypted", payload, max),
        _ => None,
    };
    let empty_text = match &request.content {
        None => true,
        Some(Body::Text(text)) => text.is_empty(),
        Some(Body::Encrypted(_)) => false,
    };
    if empty_text && request.attachment_ids.is_empty() {
        violations.add("text", "required unless attachments are sent");
    }
    let mut attachments = Vec::with_capacity(request.attachment_ids.len());
    for (index, id) in request.attachment_ids.iter().enumerate() {
        let field = format!("attachment_ids[{index}]");
        if let Some(id) = violations.check(resource_id(&field, id)) {
            if attachments.contains(&id) {
                violations.add(field, "names an attachment given already");
            } else {
                attachments.push(id);
            }
        }
    }
    let parent = if request.parent_id.is_empty() {
        None
    } else {
        violations.check(resource_id("parent_id", &request.parent_id))
    };
    let mentions = mentions(&mut violations, "mention_ids", &request.mention_ids);
    let metadata = violations.check(crate::domain::metadata::metadata(
        "metadata",
        &request.metadata,
    ));
    let request_id = violations
        .check(messaging_platform::idempotency::parse_request_id(
            "request_id",
            &request.request_id,
        ))
        .flatten();
    let search_tokens = match &request.content {
        Some(Body::Encrypted(payload)) => content::client_tokens(
            &mut violations,
            "encrypted.search_tokens",
            &payload.search_tokens,
        ),
        _ => Vec::new(),
    };
    let (Some(conversation), Some(metadata)) = (conversation, metadata) else {
        return Err(violations.into_error());
    };
    violations.finish()?;
    Ok(NewMessage {
        conversation,
        content,
        parent,
        mentions,
        metadata,
        request_id,
        search_tokens,
        attachments,
    })
}

/// The metadata of an upload stream's first message.
pub fn upload(metadata: Option<&pb::AttachmentUploadMetadata>) -> ApiResult<Upload> {
    let Some(metadata) = metadata else {
        return Err(ApiError::invalid(
            "metadata",
            "the first message of an upload must carry the metadata",
        ));
    };
    Upload::parse(
        &metadata.conversation_id,
        &metadata.file_name,
        &metadata.content_type,
        metadata.size_bytes,
        &metadata.sha256,
        &metadata.attachment_id,
        metadata.offset,
    )
}

/// GetAttachment and DownloadAttachment's ids.
pub fn attachment_ids(conversation: &str, attachment: &str) -> ApiResult<(Uuid, Uuid)> {
    let mut violations = FieldViolations::new();
    let conversation = violations.check(resource_id("conversation_id", conversation));
    let attachment = violations.check(resource_id("attachment_id", attachment));
    violations.finish()?;
    Ok((
        conversation.unwrap_or_default(),
        attachment.unwrap_or_default(),
    ))
}

/// DownloadAttachment's byte range.
pub fn byte_range(offset: i64, length: i64) -> ApiResult<(u64, u64)> {
    let mut violations = FieldViolations::new();
    let offset = u64::try_from(offset).unwrap_or_else(|_| {
        violations.add("offset", "must not be negative");
        0
    });
    let length = u64::try_from(length).unwrap_or_else(|_| {
        violations.add("length", "must not be negative (0: to the end)");
        0
    });
    violations.finish()?;
    Ok((offset, length))
}

/// ListMessages.
pub fn list_request(request: &pb::ListMessagesRequest) -> ApiResult<ListRequest> {
    let mut violations = FieldViolations::new();
    let conversation = violations.check(resource_id("conversation_id", &request.conversation_id));
    let size = violations.check(page_size("page_size", request.page_size, PAGE.0, PAGE.1));
    if request.start_sequence < 0 {
        violations.add("start_sequence", "must not be negative");
    }
    let start = match pb::ListDirection::try_from(request.direction) {
        Ok(pb::ListDirection::Around) => violations
            .check(resource_id("around_message_id", &request.around_message_id))
            .map(Start::Around),
        Ok(pb::ListDirection::Forward) if request.start_sequence > 0 => {
            Some(Start::ForwardFrom(request.start_sequence))
        }
        Ok(pb::ListDirection::Forward) => Some(Start::Oldest),
        Ok(pb::ListDirection::Backward | pb::ListDirection::Unspecified)
            if request.start_sequence > 0 =>
        {
            Some(Start::BackwardFrom(request.start_sequence))
        }
        Ok(_) => Some(Start::Newest),
        Err(_) => {
            violations.add("direction", "unknown direction");
            None
        }
    };
    let filter = message_filter(
        &mut violations,
        FilterFields {
            sender_id: &request.sender_id,
            thread_id: &request.thread_id,
            has_attachments: request.has_attachments,
            start_time: &request.start_time,
            end_time: &request.end_time,
        },
    );
    let (Some(conversation), Some(page_size), Some(start)) = (conversation, size, start) else {
        return Err(violations.into_error());
    };
    violations.finish()?;
    Ok(ListRequest {
        conversation,
        start,
        filter,
        page_size,
        page_token: request.page_token.clone(),
    })
}

/// UpdateMessage: the conversation, the message and the edit its mask asks for (`content`
/// when no mask is given).
pub fn edit(request: &pb::UpdateMessageRequest, max: usize) -> ApiResult<(Uuid, Uuid, Edit)> {
    use pb::update_message_request::Content as Body;
    let (conversation, message) = ids(&request.conversation_id, &request.message_id)?;
    let mut violations = FieldViolations::new();
    let paths: Vec<&str> = match &request.update_mask {
        Some(mask) if !mask.paths.is_empty() => mask.paths.iter().map(String::as_str).collect(),
        _ => vec!["content"],
    };
    let mut edit = Edit::default();
    for path in paths {
        match path {
            "content" => {
                edit.content = match &request.content {
                    Some(Body::Text(text)) if !text.is_empty() => violations
                        .check(content::text("text", text, max))
                        .map(Content::Text),
                    Some(Body::Encrypted(payload)) => {
                        edit.search_tokens = content::client_tokens(
                            &mut violations,
                            "encrypted.search_tokens",
                            &payload.search_tokens,
                        );
                        encrypted(&mut violations, "encrypted", payload, max)
                    }
                    _ => {
                        violations.add("text", "required: to remove a message, delete it");
                        None
                    }
                }
            }
            "metadata" => {
                edit.metadata = violations.check(crate::domain::metadata::metadata(
                    "metadata",
                    &request.metadata,
                ))
            }
            "mention_ids" => {
                edit.mentions = Some(mentions(
                    &mut violations,
                    "mention_ids",
                    &request.mention_ids,
                ))
            }
            other => violations.add(
                "update_mask",
                format!("unknown path {other:?}: use content, metadata, mention_ids"),
            ),
        }
    }
    violations.finish()?;
    Ok((conversation, message, edit))
}

/// MarkRead: the conversation and the sequence.
pub fn mark_read(request: &pb::MarkReadRequest) -> ApiResult<(Uuid, i64)> {
    let mut violations = FieldViolations::new();
    let conversation = violations.check(resource_id("conversation_id", &request.conversation_id));
    if request.up_to_sequence < 0 {
        violations.add("up_to_sequence", "must not be negative");
    }
    let Some(conversation) = conversation else {
        return Err(violations.into_error());
    };
    violations.finish()?;
    Ok((conversation, request.up_to_sequence))
}

/// GetUnreadCounts: the conversations, each once.
pub fn unread_conversations(request: &pb::GetUnreadCountsRequest) -> ApiResult<Vec<Uuid>> {
    let mut violations = FieldViolations::new();
    let mut seen = HashSet::new();
    let ids: Vec<Uuid> = conversation_ids(&mut violations, &request.conversation_ids)
        .into_iter()
        .filter(|id| seen.insert(*id))
        .collect();
    violations.finish()?;
    Ok(ids)
}

/// SearchMessages, with the time the client gave the call.
pub fn search_request(
    request: &pb::SearchMessagesRequest,
    time_left: Option<Duration>,
) -> ApiResult<SearchRequest> {
    let mut violations = FieldViolations::new();
    let query_chars = request.query.chars().count();
    if query_chars > MAX_QUERY_CHARS {
        violations.add("query", format!("at most {MAX_QUERY_CHARS} characters"));
    }
    if let Some(problem) = messaging_platform::validate::free_text_problem(&request.query) {
        violations.add("query", problem);
    }
    if query_chars == 0 && request.search_tokens.is_empty() {
        violations.add("query", "required unless search_tokens are given");
    }
    let client_tokens =
        content::client_tokens(&mut violations, "search_tokens", &request.search_tokens);
    let conversations = conversation_ids(&mut violations, &request.conversation_ids);
    let filter = message_filter(
        &mut violations,
        FilterFields {
            sender_id: &request.sender_id,
            thread_id: &request.thread_id,
            has_attachments: request.has_attachments,
            start_time: &request.start_time,
            end_time: &request.end_time,
        },
    );
    let size = violations.check(page_size(
        "page_size",
        request.page_size,
        SEARCH_PAGE.0,
        SEARCH_PAGE.1,
    ));
    let Some(page_size) = size else {
        return Err(violations.into_error());
    };
    violations.finish()?;
    Ok(SearchRequest {
        query: request.query.clone(),
        client_tokens,
        conversations,
        filter,
        page_size,
        page_token: request.page_token.clone(),
        time_left,
    })
}

/// Subscribe: where to resume, and which conversations (empty: all the caller's).
pub fn subscription(request: &pb::SubscribeRequest) -> ApiResult<(Option<i64>, Vec<Uuid>)> {
    let mut violations = FieldViolations::new();
    let resume = violations
        .check(stream::parse_position(
            "resume_position",
            &request.resume_position,
        ))
        .flatten();
    let conversations = conversation_ids(&mut violations, &request.conversation_ids);
    violations.finish()?;
    Ok((resume, conversations))
}

/// SendTypingIndicator: the conversation and the thread, if any.
pub fn typing(request: &pb::SendTypingIndicatorRequest) -> ApiResult<(Uuid, Option<Uuid>)> {
    let mut violations = FieldViolations::new();
    let conversation = violations.check(resource_id("conversation_id", &request.conversation_id));
    let parent = if request.parent_id.is_empty() {
        None
    } else {
        violations.check(resource_id("parent_id", &request.parent_id))
    };
    let Some(conversation) = conversation else {
        return Err(violations.into_error());
    };
    violations.finish()?;
    Ok((conversation, parent))
}

/// `conversation_ids` of Subscribe and SearchMessages: at most 1,000 UUIDs.
fn conversation_ids(violations: &mut FieldViolations, ids: &[String]) -> Vec<Uuid> {
    if ids.len() > app::MAX_UNREAD_CONVERSATIONS {
        violations.add(
            "conversation_ids",
            format!("at most {} conversations", app::MAX_UNREAD_CONVERSATIONS),
        );
    }
    ids.iter()
        .enumerate()
        .filter_map(|(index, id)| {
            violations.check(resource_id(&format!("conversation_ids[{index}]"), id))
        })
        .collect()
}

/// The filter fields ListMessages and SearchMessages share.
struct FilterFields<'a> {
    sender_id: &'a str,
    thread_id: &'a str,
    has_attachments: bool,
    start_time: &'a Option<prost_types::Timestamp>,
    end_time: &'a Option<prost_types::Timestamp>,
}

fn message_filter(violations: &mut FieldViolations, fields: FilterFields<'_>) -> MessageFilter {
    let sender = if fields.sender_id.is_empty() {
        None
    } else {
        violations.check(principal_id("sender_id", fields.sender_id))
    };
    let thread = if fields.thread_id.is_empty() {
        None
    } else {
        violations.check(resource_id("thread_id", fields.thread_id))
    };
    let mut time = |field: &str, value: &Option<prost_types::Timestamp>| {
        value.as_ref().and_then(|timestamp| {
            let parsed = from_timestamp(timestamp);
            if parsed.is_none() {
                violations.add(field, "is not a valid timestamp");
            }
            parsed
        })
    };
    let start = time("start_time", fields.start_time);
    let end = time("end_time", fields.end_time);
    if let (Some(start), Some(end)) = (start, end)
        && start >= end
    {
        violations.add("end_time", "must be after start_time");
    }
    MessageFilter {
        sender,
        thread,
        has_attachments: fields.has_attachments,
        start,
        end,
    }
}

/// Validates the (conversation, message) pair most RPCs take.
pub fn ids(conversation: &str, message: &str) -> ApiResult<(Uuid, Uuid)> {
    let mut violations = FieldViolations::new();
    let conversation = violations.check(resource_id("conversation_id", conversation));
    let message = violations.check(resource_id("message_id", message));
    match (conversation, message) {
        (Some(conversation), Some(message)) => Ok((conversation, message)),
        _ => Err(violations.into_error()),
    }
}

/// A lone `conversation_id`.
pub fn conversation_id(value: &str) -> ApiResult<Uuid> {
    resource_id("conversation_id", value).map_err(single)
}
