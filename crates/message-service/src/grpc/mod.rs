//! The gRPC adapter: each handler parses its request into domain values (`request`), calls
//! one use case (`crate::app`), and turns the answer into its response (`response`). Errors
//! become `tonic::Status` in one place (`messaging_platform::ApiError`). Subscribe and typing
//! indicators, which are gRPC streams and bus events rather than stored state, are `streams`.

pub mod attachments;
pub mod compliance;
pub mod request;
pub mod response;
pub mod streams;

use messaging_platform::{ApiResult, Caller};
use messaging_proto::message::v1 as pb;
use messaging_proto::message::v1::message_service_server::MessageService;
use tonic::{Request, Response, Status};

use crate::app::Messages;
use response::{
    attachment_to_proto, reaction_to_proto, read_state_to_proto, revision_to_proto,
    summaries_to_proto, view_to_proto,
};
use streams::Live;

/// `messaging.message.v1.MessageService`.
#[derive(Debug, Clone)]
pub struct MessageGrpc {
    app: Messages,
    live: Live,
}

impl MessageGrpc {
    /// The adapter over the use cases and the live streams.
    pub fn new(app: Messages, live: Live) -> Self {
        Self { app, live }
    }
}

pub use compliance::ComplianceGrpc;

fn respond<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
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
                let max = self.app.policy().max_body_bytes;
                let new = request::new_message(request.get_ref(), max)?;
                let sent = self.app.send(&caller, new).await?;
                let message = match sent.rendered {
                    Some(rendered) => rendered.into_proto(),
                    None => view_to_proto(&sent.view),
                };
                Ok(pb::SendMessageResponse {
                    message: Some(message),
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
                let request = request.get_ref();
                let (conversation, message) =
                    request::ids(&request.conversation_id, &request.message_id)?;
                let view = self.app.get(&caller, conversation, message).await?;
                Ok(pb::GetMessageResponse {
                    message: Some(view_to_proto(&view)),
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
                let list = request::list_request(request.get_ref())?;
                let page = self.app.list(&caller, &list).await?;
                Ok(pb::ListMessagesResponse {
                    messages: page.messages.iter().map(view_to_proto).collect(),
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
                let max = self.app.policy().max_body_bytes;
                let (conversation, message, edit) = request::edit(request.get_ref(), max)?;
                let view = self
                    .app
                    .update(&caller, conversation, message, edit)
                    .await?;
                Ok(pb::UpdateMessageResponse {
                    message: Some(view_to_proto(&view)),
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
                let request = request.get_ref();
                let (conversation, message) =
                    request::ids(&request.conversation_id, &request.message_id)?;
                let view = self.app.delete(&caller, conversation, message).await?;
                Ok(pb::DeleteMessageResponse {
                    message: Some(view_to_proto(&view)),
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
                let (conversation, message) =
                    request::ids(&request.conversation_id, &request.message_id)?;
                let size = request::page(request.page_size)?;
                let (revisions, next_page_token) = self
                    .app
                    .revisions(&caller, conversation, message, size, &request.page_token)
                    .await?;
                Ok(pb::ListMessageRevisionsResponse {
                    revisions: revisions.iter().map(revision_to_proto).collect(),
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
                let (conversation, message) =
                    request::ids(&request.conversation_id, &request.message_id)?;
                let emoji = request::emoji(&request.emoji)?;
                let reactions = self
                    .app
                    .react(&caller, conversation, message, &emoji, true)
                    .await?;
                Ok(pb::AddReactionResponse {
                    reactions: summaries_to_proto(&reactions),
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
                let (conversation, message) =
                    request::ids(&request.conversation_id, &request.message_id)?;
                let emoji = request::emoji(&request.emoji)?;
                let reactions = self
                    .app
                    .react(&caller, conversation, message, &emoji, false)
                    .await?;
                Ok(pb::RemoveReactionResponse {
                    reactions: summaries_to_proto(&reactions),
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
                let (conversation, message) =
                    request::ids(&request.conversation_id, &request.message_id)?;
                let emoji = request::emoji_filter(&request.emoji)?;
                let size = request::page(request.page_size)?;
                let (reactions, next_page_token) = self
                    .app
                    .reactions(
                        &caller,
                        conversation,
                        message,
                        emoji.as_deref(),
                        size,
                        &request.page_token,
                    )
                    .await?;
                Ok(pb::ListReactionsResponse {
                    reactions: reactions.iter().map(reaction_to_proto).collect(),
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
                let (conversation, up_to) = request::mark_read(request.get_ref())?;
                let state = self.app.mark_read(&caller, conversation, up_to).await?;
                Ok(pb::MarkReadResponse {
                    read_state: Some(read_state_to_proto(&state)),
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
                let conversation = request::conversation_id(&request.get_ref().conversation_id)?;
                let states = self.app.read_states(&caller, conversation).await?;
                Ok(pb::GetReadStateResponse {
                    read_states: states.iter().map(read_state_to_proto).collect(),
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
                let ids = request::unread_conversations(request.get_ref())?;
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
                let search = request::search_request(request.get_ref(), time_left)?;
                let (hits, next_page_token) = self.app.search(&caller, search).await?;
                Ok(pb::SearchMessagesResponse {
                    hits: hits
                        .iter()
                        .map(|hit| pb::SearchHit {
                            message: Some(view_to_proto(&hit.view)),
                            snippet: hit.snippet.clone(),
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
                let (resume, conversations) = request::subscription(request.get_ref())?;
                self.live.subscribe(caller, resume, conversations).await
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
                let (conversation, parent) = request::typing(request.get_ref())?;
                self.live.typing(&caller, conversation, parent).await?;
                Ok(pb::SendTypingIndicatorResponse {})
            }
            .await,
        )
    }

    async fn upload_attachment(
        &self,
        request: Request<tonic::Streaming<pb::UploadAttachmentRequest>>,
    ) -> Result<Response<pb::UploadAttachmentResponse>, Status> {
        let caller = Caller::from_request(&request).map_err(Status::from)?;
        let (upload, content) = attachments::split_upload(request.into_inner()).await?;
        // In a task of its own: when the client goes away, the handler is dropped, but the
        // upload still keeps and acknowledges what arrived, so that it can be resumed.
        let app = self.app.clone();
        let stored = tokio::spawn(async move { app.upload(&caller, upload, content).await })
            .await
            .map_err(|error| Status::internal(format!("upload task failed: {error}")))?;
        respond(stored.map(|attachment| pb::UploadAttachmentResponse {
            attachment: Some(attachment_to_proto(&attachment)),
        }))
    }

    async fn get_attachment(
        &self,
        request: Request<pb::GetAttachmentRequest>,
    ) -> Result<Response<pb::GetAttachmentResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (conversation, id) =
                    request::attachment_ids(&request.conversation_id, &request.attachment_id)?;
                let attachment = self.app.attachment(&caller, conversation, id).await?;
                Ok(pb::GetAttachmentResponse {
                    attachment: Some(attachment_to_proto(&attachment)),
                })
            }
            .await,
        )
    }

    async fn download_attachment(
        &self,
        request: Request<pb::DownloadAttachmentRequest>,
    ) -> Result<Response<attachments::DownloadStream>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (conversation, id) =
                    request::attachment_ids(&request.conversation_id, &request.attachment_id)?;
                let (offset, length) = request::byte_range(request.offset, request.length)?;
                let content = self
                    .app
                    .download(&caller, conversation, id, offset, length)
                    .await?;
                Ok(attachments::download_stream(content))
            }
            .await,
        )
    }
}
