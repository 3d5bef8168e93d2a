//! The gRPC adapter: each handler parses its request (`request`), calls one use case
//! (`crate::app`) and converts the result (`response`). No rules live here beyond field
//! validation.

pub mod request;
pub mod response;

use messaging_outbox::EventSettings;
use messaging_outbox::stream::{self, AdmitAll, Item, ItemStream, StreamSpec};
use messaging_platform::validate::{self, principal_id, resource_id};
use messaging_platform::{ApiError, ApiResult, Caller, FieldViolations};
use messaging_proto::conversation::v1 as pb;
use pb::conversation_service_server::ConversationService;
use tonic::{Request, Response, Status};

use crate::app::Conversations;
use request::{action_from_proto, grantable_role, id_only, participant_specs};
use response::{
    conversation_to_proto, denial_to_proto, kind_to_proto, participant_to_proto, role_to_proto,
};

/// `messaging.conversation.v1.ConversationService` over the use cases.
#[derive(Debug, Clone)]
pub struct ConversationGrpc {
    app: Conversations,
    events: EventSettings,
    /// The outbox WatchEvents streams read.
    db: sea_orm::DatabaseConnection,
}

impl ConversationGrpc {
    /// The adapter over `app`; `events` tunes WatchEvents streams, which read `db`.
    pub fn new(app: Conversations, events: EventSettings, db: sea_orm::DatabaseConnection) -> Self {
        Self { app, events, db }
    }
}

fn respond<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl ConversationService for ConversationGrpc {
    async fn create_conversation(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Result<Response<pb::CreateConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let new = request::new_conversation(request, &caller)?;
                let (view, created) = self.app.create(&caller, new).await?;
                Ok(pb::CreateConversationResponse {
                    conversation: Some(conversation_to_proto(view)?),
                    created,
                })
            }
            .await,
        )
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::GetConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let id = id_only("conversation_id", &request.get_ref().conversation_id)?;
                let view = self.app.get(&caller, id).await?;
                Ok(pb::GetConversationResponse {
                    conversation: Some(conversation_to_proto(view)?),
                })
            }
            .await,
        )
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let list = request::list_request(request)?;
                let (views, next_page_token) = self.app.list(&caller, &list).await?;
                Ok(pb::ListConversationsResponse {
                    conversations: views
                        .into_iter()
                        .map(conversation_to_proto)
                        .collect::<ApiResult<_>>()?,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn update_conversation(
        &self,
        request: Request<pb::UpdateConversationRequest>,
    ) -> Result<Response<pb::UpdateConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (id, title, description, etag) = request::update(request)?;
                let view = self
                    .app
                    .update(&caller, id, title.as_deref(), description, etag.as_deref())
                    .await?;
                Ok(pb::UpdateConversationResponse {
                    conversation: Some(conversation_to_proto(view)?),
                })
            }
            .await,
        )
    }

    async fn archive_conversation(
        &self,
        request: Request<pb::ArchiveConversationRequest>,
    ) -> Result<Response<pb::ArchiveConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let id = id_only("conversation_id", &request.get_ref().conversation_id)?;
                let view = self.app.set_archived(&caller, id, true).await?;
                Ok(pb::ArchiveConversationResponse {
                    conversation: Some(conversation_to_proto(view)?),
                })
            }
            .await,
        )
    }

    async fn unarchive_conversation(
        &self,
        request: Request<pb::UnarchiveConversationRequest>,
    ) -> Result<Response<pb::UnarchiveConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let id = id_only("conversation_id", &request.get_ref().conversation_id)?;
                let view = self.app.set_archived(&caller, id, false).await?;
                Ok(pb::UnarchiveConversationResponse {
                    conversation: Some(conversation_to_proto(view)?),
                })
            }
            .await,
        )
    }

    async fn delete_conversation(
        &self,
        request: Request<pb::DeleteConversationRequest>,
    ) -> Result<Response<pb::DeleteConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let id = id_only("conversation_id", &request.get_ref().conversation_id)?;
                let view = self.app.delete(&caller, id).await?;
                Ok(pb::DeleteConversationResponse {
                    conversation: Some(conversation_to_proto(view)?),
                })
            }
            .await,
        )
    }

    async fn undelete_conversation(
        &self,
        request: Request<pb::UndeleteConversationRequest>,
    ) -> Result<Response<pb::UndeleteConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let id = id_only("conversation_id", &request.get_ref().conversation_id)?;
                let view = self.app.undelete(&caller, id).await?;
                Ok(pb::UndeleteConversationResponse {
                    conversation: Some(conversation_to_proto(view)?),
                })
            }
            .await,
        )
    }

    async fn add_participants(
        &self,
        request: Request<pb::AddParticipantsRequest>,
    ) -> Result<Response<pb::AddParticipantsResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let id = violations.check(resource_id("conversation_id", &request.conversation_id));
                if request.participants.is_empty() {
                    violations.add("participants", "required");
                }
                let specs = participant_specs(
                    &mut violations,
                    "participants",
                    &request.participants,
                    &caller,
                );
                let Some(id) = id else {
                    return Err(violations.into_error());
                };
                violations.finish()?;
                let rows = self.app.add_participants(&caller, id, specs).await?;
                Ok(pb::AddParticipantsResponse {
                    participants: rows
                        .into_iter()
                        .map(participant_to_proto)
                        .collect::<ApiResult<_>>()?,
                })
            }
            .await,
        )
    }

    async fn remove_participant(
        &self,
        request: Request<pb::RemoveParticipantRequest>,
    ) -> Result<Response<pb::RemoveParticipantResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let id = violations.check(resource_id("conversation_id", &request.conversation_id));
                let user = violations.check(principal_id("user_id", &request.user_id));
                let (Some(id), Some(user)) = (id, user) else {
                    return Err(violations.into_error());
                };
                let view = self.app.remove_participant(&caller, id, &user).await?;
                Ok(pb::RemoveParticipantResponse {
                    conversation: Some(conversation_to_proto(view)?),
                })
            }
            .await,
        )
    }

    async fn update_participant_role(
        &self,
        request: Request<pb::UpdateParticipantRoleRequest>,
    ) -> Result<Response<pb::UpdateParticipantRoleResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let id = violations.check(resource_id("conversation_id", &request.conversation_id));
                let user = violations.check(principal_id("user_id", &request.user_id));
                let role = violations.check(grantable_role("role", request.role, None));
                let (Some(id), Some(user), Some(role)) = (id, user, role) else {
                    return Err(violations.into_error());
                };
                let row = self.app.update_role(&caller, id, &user, role).await?;
                Ok(pb::UpdateParticipantRoleResponse {
                    participant: Some(participant_to_proto(row)?),
                })
            }
            .await,
        )
    }

    async fn list_participants(
        &self,
        request: Request<pb::ListParticipantsRequest>,
    ) -> Result<Response<pb::ListParticipantsResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let (id, roles, size) = request::participants_page(request)?;
                let (rows, next_page_token) = self
                    .app
                    .list_participants(&caller, id, &roles, size, &request.page_token)
                    .await?;
                Ok(pb::ListParticipantsResponse {
                    participants: rows
                        .into_iter()
                        .map(participant_to_proto)
                        .collect::<ApiResult<_>>()?,
                    next_page_token,
                })
            }
            .await,
        )
    }

    async fn join_conversation(
        &self,
        request: Request<pb::JoinConversationRequest>,
    ) -> Result<Response<pb::JoinConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let id = id_only("conversation_id", &request.get_ref().conversation_id)?;
                let row = self.app.join(&caller, id).await?;
                Ok(pb::JoinConversationResponse {
                    participant: Some(participant_to_proto(row)?),
                })
            }
            .await,
        )
    }

    async fn leave_conversation(
        &self,
        request: Request<pb::LeaveConversationRequest>,
    ) -> Result<Response<pb::LeaveConversationResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let id = id_only("conversation_id", &request.get_ref().conversation_id)?;
                self.app.leave(&caller, id).await?;
                Ok(pb::LeaveConversationResponse {})
            }
            .await,
        )
    }

    async fn transfer_ownership(
        &self,
        request: Request<pb::TransferOwnershipRequest>,
    ) -> Result<Response<pb::TransferOwnershipResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let id = violations.check(resource_id("conversation_id", &request.conversation_id));
                let new_owner =
                    violations.check(principal_id("new_owner_id", &request.new_owner_id));
                let (Some(id), Some(new_owner)) = (id, new_owner) else {
                    return Err(violations.into_error());
                };
                let view = self.app.transfer_ownership(&caller, id, &new_owner).await?;
                Ok(pb::TransferOwnershipResponse {
                    conversation: Some(conversation_to_proto(view)?),
                })
            }
            .await,
        )
    }

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<ItemStream<pb::WatchEventsResponse>>, Status> {
        respond(
            async {
                let caller = Caller::from_request_any_tenant(&request)?;
                if !caller.is_service {
                    return Err(ApiError::PermissionDenied(
                        "only callers with the service role may watch events".to_owned(),
                    ));
                }
                let mut violations = FieldViolations::new();
                let resume = violations.check(stream::parse_position(
                    "after_position",
                    &request.get_ref().after_position,
                ));
                let Some(resume) = resume else {
                    return Err(violations.into_error());
                };
                let spec = StreamSpec {
                    tenant: (!caller.spans_every_tenant()).then(|| caller.tenant_id.to_string()),
                    resume,
                    heartbeat_interval: self.events.heartbeat_interval,
                    buffer: self.events.stream_buffer,
                    resume_field: "after_position",
                };
                stream::open(&self.db, self.app.bus(), spec, AdmitAll, |item| {
                    use pb::watch_events_response::Item as Out;
                    let item = match item {
                        Item::Event(event) => Out::Event(*event),
                        Item::ResyncRequired(position) => {
                            Out::ResyncRequired(messaging_outbox::contract::ResyncRequired {
                                position: position.to_string(),
                            })
                        }
                        Item::Heartbeat(time) => Out::Heartbeat(time),
                    };
                    pb::WatchEventsResponse { item: Some(item) }
                })
                .await
                .map_err(ApiError::from)
            }
            .await,
        )
    }

    async fn get_event_head(
        &self,
        request: Request<pb::GetEventHeadRequest>,
    ) -> Result<Response<pb::GetEventHeadResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request_any_tenant(&request)?;
                let head = self.app.event_head(&caller).await?;
                Ok(pb::GetEventHeadResponse {
                    position: head.to_string(),
                })
            }
            .await,
        )
    }

    async fn erase_participations(
        &self,
        request: Request<pb::EraseParticipationsRequest>,
    ) -> Result<Response<pb::EraseParticipationsResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let user = violations.check(principal_id("user_id", &request.user_id));
                let limit = match request.limit {
                    0 => Some(100),
                    limit @ 1..=500 => Some(limit as u64),
                    _ => {
                        violations.add("limit", "must be 0 (100) to 500");
                        None
                    }
                };
                let (Some(user), Some(limit)) = (user, limit) else {
                    return Err(violations.into_error());
                };
                let (removed, remaining) =
                    self.app.erase_participations(&caller, &user, limit).await?;
                Ok(pb::EraseParticipationsResponse {
                    removed: removed as i32,
                    remaining,
                })
            }
            .await,
        )
    }

    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                let request = request.get_ref();
                let mut violations = FieldViolations::new();
                let id = violations.check(resource_id("conversation_id", &request.conversation_id));
                let user = if request.user_id.is_empty() {
                    Some(caller.user_id.to_string())
                } else {
                    violations.check(validate::principal_id("user_id", &request.user_id))
                };
                let action = violations.check(action_from_proto("action", request.action));
                let (Some(id), Some(user), Some(action)) = (id, user, action) else {
                    return Err(violations.into_error());
                };
                let user_is_admin = request
                    .user_roles
                    .iter()
                    .any(|role| role == messaging_platform::auth::ROLE_ADMIN);
                let answer = self
                    .app
                    .check_permission(&caller, id, &user, user_is_admin, action)
                    .await?;
                Ok(pb::CheckPermissionResponse {
                    allowed: answer.denial.is_none(),
                    role: role_to_proto(answer.role).into(),
                    denial_reason: denial_to_proto(answer.denial).into(),
                    conversation_type: kind_to_proto(answer.kind).into(),
                    archived: answer.archived,
                })
            }
            .await,
        )
    }
}
