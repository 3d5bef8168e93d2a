//! The gRPC adapters: field validation and conversion around the use cases. RPCs of later
//! releases (search, streams, attachments, compliance) keep the generated UNIMPLEMENTED
//! answer, after authentication.

use std::collections::{BTreeMap, HashSet};

use messaging_platform::outbox::stream;
use messaging_platform::time::{from_timestamp, to_timestamp};
use messaging_platform::validate::{page_size, principal_id, resource_id};
use messaging_platform::{ApiError, ApiResult, Caller, FieldViolations};
use messaging_proto::message::v1 as pb;
use messaging_proto::message::v1::compliance_service_server::ComplianceService;
use messaging_proto::message::v1::message_service_server::MessageService;
use tonic::{Request, Response, Status};

use crate::app::{self, Edit, ListRequest, Messages, NewMessage, Start};
use crate::convert::{message_to_proto, read_state_to_proto, summaries_to_proto};
use crate::domain::{self, Content};
use crate::store::MessageFilter;
use crate::streams::{self, StreamSettings};

/// Default and largest page of messages, revisions and reactions.
const PAGE: (u64, u64) = (50, 200);
/// Default and largest page of search hits.
const SEARCH_PAGE: (u64, u64) = (20, 100);
/// Longest search query.
const MAX_QUERY_CHARS: usize = 512;

/// `messaging.message.v1.MessageService`.
#[derive(Debug, Clone)]
pub struct MessageGrpc {
    app: Messages,
    streams: StreamSettings,
    typing_limiter: moka::sync::Cache<(String, uuid::Uuid, String), ()>,
}

impl MessageGrpc {
    /// The adapter over `app`.
    pub fn new(app: Messages, streams: StreamSettings) -> Self {
        let typing_limiter = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(
                streams
                    .typing_interval
                    .max(std::time::Duration::from_millis(1)),
            )
            .build();
        Self {
            app,
            streams,
            typing_limiter,
        }
    }
}

/// `messaging.message.v1.ComplianceService`.
#[derive(Debug, Clone, Default)]
pub struct ComplianceGrpc;

#[tonic::async_trait]
impl ComplianceService for ComplianceGrpc {}

fn respond<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

fn encrypted(
    violations: &mut FieldViolations,
    field: &str,
    payload: &pb::EncryptedPayload,
    max: usize,
) -> Option<Content> {
    violations.check(domain::encrypted(
        field,
        &payload.ciphertext,
        &payload.algorithm,
        &payload.key_id,
        max,
    ))
}

/// Most client search tokens per payload or query, and their largest size in bytes.
const MAX_CLIENT_TOKENS: usize = 256;
const MAX_CLIENT_TOKEN_BYTES: usize = 128;

fn client_tokens(
    violations: &mut FieldViolations,
    field: &str,
    tokens: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    if tokens.len() > MAX_CLIENT_TOKENS {
        violations.add(field, format!("at most {MAX_CLIENT_TOKENS} tokens"));
        return Vec::new();
    }
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() || token.len() > MAX_CLIENT_TOKEN_BYTES {
            violations.add(
                format!("{field}[{index}]"),
                format!("must be 1 to {MAX_CLIENT_TOKEN_BYTES} bytes"),
            );
        }
    }
    let mut unique = tokens.to_vec();
    unique.sort();
    unique.dedup();
    unique
}

fn mentions(violations: &mut FieldViolations, field: &str, ids: &[String]) -> Vec<String> {
    if ids.len() > domain::MAX_MENTIONS {
        violations.add(field, format!("at most {} mentions", domain::MAX_MENTIONS));
        return Vec::new();
    }
    let mut seen = HashSet::new();
    ids.iter()
        .enumerate()
        .filter_map(|(index, id)| violations.check(principal_id(&format!("{field}[{index}]"), id)))
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// `conversation_ids` of Subscribe and SearchMessages: at most 1,000 UUIDs.
fn conversation_ids(violations: &mut FieldViolations, ids: &[String]) -> Vec<uuid::Uuid> {
    if ids.len() > app::MAX_UNREAD_CONVERSATIONS {
        violations.add("conversation_ids", "at most 1000 conversations");
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
fn ids(conversation: &str, message: &str) -> ApiResult<(uuid::Uuid, uuid::Uuid)> {
    let mut violations = FieldViolations::new();
    let conversation = violations.check(resource_id("conversation_id", conversation));
    let message = violations.check(resource_id("message_id", message));
    match (conversation, message) {
        (Some(conversation), Some(message)) => Ok((conversation, message)),
        _ => Err(violations.into_error()),
    }
}

fn conversation_id(value: &str) -> ApiResult<uuid::Uuid> {
    resource_id("conversation_id", value)
        .map_err(|violation| ApiError::InvalidArgument(vec![violation]))
}

fn emoji(value: &str) -> ApiResult<String> {
    domain::emoji("emoji", value).map_err(|violation| ApiError::InvalidArgument(vec![violation]))
}

#[tonic::async_trait]
impl MessageService for MessageGrpc {
    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let max = self.app.policy().max_body_bytes;
                let mut violations = FieldViolations::new();
                let conversation =
                    violations.check(resource_id("conversation_id", &request.conversation_id));
                let content = match &request.content {
                    Some(pb::send_message_request::Content::Text(text)) if !text.is_empty() => {
                        violations
                            .check(domain::text("text", text, max))
                            .map(Content::Text)
                    }
                    Some(pb::send_message_request::Content::Encrypted(payload)) => {
                        encrypted(&mut violations, "encrypted", payload, max)
                    }
                    _ => None,
                };
                let empty_text = match &request.content {
                    None => true,
                    Some(pb::send_message_request::Content::Text(text)) => text.is_empty(),
                    Some(pb::send_message_request::Content::Encrypted(_)) => false,
                };
                if empty_text && request.attachment_ids.is_empty() {
                    violations.add("text", "required unless attachments are sent");
                }
                if !request.attachment_ids.is_empty() {
                    violations.add(
                        "attachment_ids",
                        "no such attachment: attachments are not available in this release",
                    );
                }
                let parent = if request.parent_id.is_empty() {
                    None
                } else {
                    violations.check(resource_id("parent_id", &request.parent_id))
                };
                let mentions = mentions(&mut violations, "mention_ids", &request.mention_ids);
                let metadata = violations.check(domain::metadata("metadata", &request.metadata));
                let request_id = violations
                    .check(messaging_platform::idempotency::parse_request_id(
                        "request_id",
                        &request.request_id,
                    ))
                    .flatten();
                let search_tokens = match &request.content {
                    Some(pb::send_message_request::Content::Encrypted(payload)) => client_tokens(
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
                let new = NewMessage {
                    conversation,
                    content,
                    parent,
                    mentions,
                    metadata,
                    request_id,
                    search_tokens,
                };
                let view = self.app.send(&caller, new).await?;
                Ok(pb::SendMessageResponse {
                    message: Some(message_to_proto(view)),
                })
            }
            .await,
        )
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let (conversation, message) = ids(
                    &request.get_ref().conversation_id,
                    &request.get_ref().message_id,
                )?;
                let view = self.app.get(&caller, conversation, message).await?;
                Ok(pb::GetMessageResponse {
                    message: Some(message_to_proto(view)),
                })
            }
            .await,
        )
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let conversation =
                    violations.check(resource_id("conversation_id", &request.conversation_id));
                let size =
                    violations.check(page_size("page_size", request.page_size, PAGE.0, PAGE.1));
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
                let (Some(conversation), Some(page_size), Some(start)) =
                    (conversation, size, start)
                else {
                    return Err(violations.into_error());
                };
                violations.finish()?;
                let list = ListRequest {
                    conversation,
                    start,
                    filter,
                    page_size,
                    page_token: request.page_token.clone(),
                };
                let page = self.app.list(&caller, &list).await?;
                Ok(pb::ListMessagesResponse {
                    messages: page.messages.into_iter().map(message_to_proto).collect(),
                    next_page_token: page.next_page_token,
                    previous_page_token: page.previous_page_token,
                })
            }
            .await,
        )
    }

    async fn update_message(
        &self,
        request: Request<pb::UpdateMessageRequest>,
    ) -> Result<Response<pb::UpdateMessageResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (conversation, message) = ids(&request.conversation_id, &request.message_id)?;
                let max = self.app.policy().max_body_bytes;
                let mut violations = FieldViolations::new();
                let paths: Vec<&str> = match &request.update_mask {
                    Some(mask) if !mask.paths.is_empty() => {
                        mask.paths.iter().map(String::as_str).collect()
                    }
                    _ => vec!["content"],
                };
                let mut edit = Edit::default();
                for path in paths {
                    match path {
                        "content" => {
                            edit.content = match &request.content {
                                Some(pb::update_message_request::Content::Text(text))
                                    if !text.is_empty() =>
                                {
                                    violations
                                        .check(domain::text("text", text, max))
                                        .map(Content::Text)
                                }
                                Some(pb::update_message_request::Content::Encrypted(payload)) => {
                                    edit.search_tokens = client_tokens(
                                        &mut violations,
                                        "encrypted.search_tokens",
                                        &payload.search_tokens,
                                    );
                                    encrypted(&mut violations, "encrypted", payload, max)
                                }
                                _ => {
                                    violations
                                        .add("text", "required: to remove a message, delete it");
                                    None
                                }
                            }
                        }
                        "metadata" => {
                            edit.metadata = violations
                                .check(domain::metadata("metadata", &request.metadata))
                                .map(|m: BTreeMap<_, _>| m)
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
                let view = self
                    .app
                    .update(&caller, conversation, message, edit)
                    .await?;
                Ok(pb::UpdateMessageResponse {
                    message: Some(message_to_proto(view)),
                })
            }
            .await,
        )
    }

    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::DeleteMessageResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let (conversation, message) = ids(
                    &request.get_ref().conversation_id,
                    &request.get_ref().message_id,
                )?;
                let view = self.app.delete(&caller, conversation, message).await?;
                Ok(pb::DeleteMessageResponse {
                    message: Some(message_to_proto(view)),
                })
            }
            .await,
        )
    }

    async fn list_message_revisions(
        &self,
        request: Request<pb::ListMessageRevisionsRequest>,
    ) -> Result<Response<pb::ListMessageRevisionsResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (conversation, message) = ids(&request.conversation_id, &request.message_id)?;
                let size = page_size("page_size", request.page_size, PAGE.0, PAGE.1)
                    .map_err(|violation| ApiError::InvalidArgument(vec![violation]))?;
                let (rows, next_page_token) = self
                    .app
                    .revisions(&caller, conversation, message, size, &request.page_token)
                    .await?;
                Ok(pb::ListMessageRevisionsResponse {
                    revisions: rows
                        .into_iter()
                        .map(|row| {
                            let content = app::row_content(
                                &row.content_kind,
                                &row.text,
                                &row.ciphertext,
                                &row.cipher_algorithm,
                                &row.cipher_key_id,
                            );
                            pb::MessageRevision {
                                message_id: row.message_id.to_string(),
                                revision: row.revision,
                                content: content.map(|content| match content {
                                    Content::Text(text) => {
                                        pb::message_revision::Content::Text(text)
                                    }
                                    Content::Encrypted {
                                        ciphertext,
                                        algorithm,
                                        key_id,
                                    } => pb::message_revision::Content::Encrypted(
                                        pb::EncryptedPayload {
                                            ciphertext,
                                            algorithm,
                                            key_id,
                                            search_tokens: Vec::new(),
                                        },
                                    ),
                                }),
                                create_time: Some(to_timestamp(row.created_at)),
                            }
                        })
                        .collect(),
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn add_reaction(
        &self,
        request: Request<pb::AddReactionRequest>,
    ) -> Result<Response<pb::AddReactionResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (conversation, message) = ids(&request.conversation_id, &request.message_id)?;
                let emoji = emoji(&request.emoji)?;
                let reactions = self
                    .app
                    .react(&caller, conversation, message, &emoji, true)
                    .await?;
                Ok(pb::AddReactionResponse {
                    reactions: summaries_to_proto(reactions),
                })
            }
            .await,
        )
    }

    async fn remove_reaction(
        &self,
        request: Request<pb::RemoveReactionRequest>,
    ) -> Result<Response<pb::RemoveReactionResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (conversation, message) = ids(&request.conversation_id, &request.message_id)?;
                let emoji = emoji(&request.emoji)?;
                let reactions = self
                    .app
                    .react(&caller, conversation, message, &emoji, false)
                    .await?;
                Ok(pb::RemoveReactionResponse {
                    reactions: summaries_to_proto(reactions),
                })
            }
            .await,
        )
    }

    async fn list_reactions(
        &self,
        request: Request<pb::ListReactionsRequest>,
    ) -> Result<Response<pb::ListReactionsResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (conversation, message) = ids(&request.conversation_id, &request.message_id)?;
                let filter = if request.emoji.is_empty() {
                    None
                } else {
                    Some(emoji(&request.emoji)?)
                };
                let size = page_size("page_size", request.page_size, PAGE.0, PAGE.1)
                    .map_err(|violation| ApiError::InvalidArgument(vec![violation]))?;
                let (rows, next_page_token) = self
                    .app
                    .reactions(
                        &caller,
                        conversation,
                        message,
                        filter.as_deref(),
                        size,
                        &request.page_token,
                    )
                    .await?;
                Ok(pb::ListReactionsResponse {
                    reactions: rows
                        .into_iter()
                        .map(|row| pb::Reaction {
                            message_id: row.message_id.to_string(),
                            user_id: row.user_id,
                            emoji: row.emoji,
                            create_time: Some(to_timestamp(row.created_at)),
                        })
                        .collect(),
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let conversation =
                    violations.check(resource_id("conversation_id", &request.conversation_id));
                if request.up_to_sequence < 0 {
                    violations.add("up_to_sequence", "must not be negative");
                }
                let Some(conversation) = conversation else {
                    return Err(violations.into_error());
                };
                violations.finish()?;
                let state = self
                    .app
                    .mark_read(&caller, conversation, request.up_to_sequence)
                    .await?;
                Ok(pb::MarkReadResponse {
                    read_state: Some(read_state_to_proto(state)),
                })
            }
            .await,
        )
    }

    async fn get_read_state(
        &self,
        request: Request<pb::GetReadStateRequest>,
    ) -> Result<Response<pb::GetReadStateResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let conversation = conversation_id(&request.get_ref().conversation_id)?;
                let states = self.app.read_states(&caller, conversation).await?;
                Ok(pb::GetReadStateResponse {
                    read_states: states.into_iter().map(read_state_to_proto).collect(),
                })
            }
            .await,
        )
    }

    async fn get_unread_counts(
        &self,
        request: Request<pb::GetUnreadCountsRequest>,
    ) -> Result<Response<pb::GetUnreadCountsResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                if request.conversation_ids.len() > app::MAX_UNREAD_CONVERSATIONS {
                    violations.add(
                        "conversation_ids",
                        format!("at most {} conversations", app::MAX_UNREAD_CONVERSATIONS),
                    );
                }
                let mut seen = HashSet::new();
                let ids: Vec<uuid::Uuid> = request
                    .conversation_ids
                    .iter()
                    .enumerate()
                    .filter_map(|(index, id)| {
                        violations.check(resource_id(&format!("conversation_ids[{index}]"), id))
                    })
                    .filter(|id| seen.insert(*id))
                    .collect();
                violations.finish()?;
                let counts = self.app.unread_counts(&caller, ids).await?;
                Ok(pb::GetUnreadCountsResponse {
                    counts: counts
                        .into_iter()
                        .map(|(id, unread)| pb::UnreadCount {
                            conversation_id: id.to_string(),
                            unread_count: unread.unread,
                            unread_mention_count: unread.mentions,
                            last_read_sequence: unread.last_read_sequence,
                            last_sequence: unread.last_sequence,
                        })
                        .collect(),
                })
            }
            .await,
        )
    }

    async fn search_messages(
        &self,
        request: Request<pb::SearchMessagesRequest>,
    ) -> Result<Response<pb::SearchMessagesResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let time_left = messaging_platform::server::time_left(&request);
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let query_chars = request.query.chars().count();
                if query_chars > MAX_QUERY_CHARS {
                    violations.add("query", format!("at most {MAX_QUERY_CHARS} characters"));
                }
                if let Some(problem) =
                    messaging_platform::validate::free_text_problem(&request.query)
                {
                    violations.add("query", problem);
                }
                if query_chars == 0 && request.search_tokens.is_empty() {
                    violations.add("query", "required unless search_tokens are given");
                }
                let client_tokens =
                    client_tokens(&mut violations, "search_tokens", &request.search_tokens);
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
                let (hits, next_page_token) = self
                    .app
                    .search(
                        &caller,
                        app::SearchRequest {
                            query: request.query.clone(),
                            client_tokens,
                            conversations,
                            filter,
                            page_size,
                            page_token: request.page_token.clone(),
                            time_left,
                        },
                    )
                    .await?;
                Ok(pb::SearchMessagesResponse {
                    hits: hits
                        .into_iter()
                        .map(|hit| pb::SearchHit {
                            message: Some(message_to_proto(hit.view)),
                            snippet: hit.snippet,
                            score: hit.score as f64 / 1_000.0,
                        })
                        .collect(),
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<streams::SubscribeStream>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let resume = violations
                    .check(stream::parse_position(
                        "resume_position",
                        &request.resume_position,
                    ))
                    .flatten();
                let conversations = conversation_ids(&mut violations, &request.conversation_ids);
                violations.finish()?;
                streams::subscribe(&self.app, &self.streams, caller, resume, conversations).await
            }
            .await,
        )
    }

    async fn send_typing_indicator(
        &self,
        request: Request<pb::SendTypingIndicatorRequest>,
    ) -> Result<Response<pb::SendTypingIndicatorResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let conversation =
                    violations.check(resource_id("conversation_id", &request.conversation_id));
                let parent = if request.parent_id.is_empty() {
                    None
                } else {
                    violations.check(resource_id("parent_id", &request.parent_id))
                };
                let Some(conversation) = conversation else {
                    return Err(violations.into_error());
                };
                violations.finish()?;
                streams::typing(
                    &self.app,
                    &self.typing_limiter,
                    &caller,
                    conversation,
                    parent,
                )
                .await?;
                Ok(pb::SendTypingIndicatorResponse {})
            }
            .await,
        )
    }
}
