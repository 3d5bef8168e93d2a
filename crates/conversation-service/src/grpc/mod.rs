//! The gRPC adapter: validates and converts requests into the use cases' inputs, and their
//! results into responses. No rules live here beyond field validation.

use std::collections::HashSet;

use messaging_platform::outbox::EventSettings;
use messaging_platform::outbox::stream::{self, AdmitAll, Item, ItemStream, StreamSpec};
use messaging_platform::validate::{self, page_size, principal_id, resource_id};
use messaging_platform::{ApiError, ApiResult, Caller, FieldViolations};
use messaging_proto::conversation::v1 as pb;
use pb::conversation_service_server::ConversationService;
use tonic::{Request, Response, Status};
use tonic_types::FieldViolation;

use crate::app::{ConversationView, Conversations, ListRequest, NewConversation};
use crate::domain::{self, Action, Denial, Kind, Role};
use crate::store::{Archived, ConversationFilter, Membership, ParticipantRow};

/// Most conversations per ListConversations page, and the default.
const CONVERSATION_PAGE: (u64, u64) = (50, 200);
/// Most participants per ListParticipants page, and the default.
const PARTICIPANT_PAGE: (u64, u64) = (100, 500);
/// `messaging.conversation.v1.ConversationService` over the use cases.
#[derive(Debug, Clone)]
pub struct ConversationGrpc {
    app: Conversations,
    events: EventSettings,
}

impl ConversationGrpc {
    /// The adapter over `app`; `events` tunes WatchEvents streams.
    pub fn new(app: Conversations, events: EventSettings) -> Self {
        Self { app, events }
    }
}

fn kind_to_proto(kind: Kind) -> pb::ConversationType {
    match kind {
        Kind::Direct => pb::ConversationType::Direct,
        Kind::Group => pb::ConversationType::Group,
        Kind::Channel => pb::ConversationType::Channel,
    }
}

fn kind_from_proto(field: &str, value: i32) -> Result<Kind, FieldViolation> {
    match pb::ConversationType::try_from(value) {
        Ok(pb::ConversationType::Direct) => Ok(Kind::Direct),
        Ok(pb::ConversationType::Group) => Ok(Kind::Group),
        Ok(pb::ConversationType::Channel) => Ok(Kind::Channel),
        Ok(pb::ConversationType::Unspecified) => Err(FieldViolation::new(field, "required")),
        Err(_) => Err(FieldViolation::new(field, "unknown conversation type")),
    }
}

fn role_to_proto(role: Option<Role>) -> pb::Role {
    match role {
        None => pb::Role::Unspecified,
        Some(Role::Owner) => pb::Role::Owner,
        Some(Role::Admin) => pb::Role::Admin,
        Some(Role::Member) => pb::Role::Member,
        Some(Role::Viewer) => pb::Role::Viewer,
    }
}

/// A role that may be granted by adding or re-roling: ADMIN, MEMBER or VIEWER
/// (`unspecified` when the field may be left out).
fn grantable_role(
    field: &str,
    value: i32,
    unspecified: Option<Role>,
) -> Result<Role, FieldViolation> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Member) => Ok(Role::Member),
        Ok(pb::Role::Viewer) => Ok(Role::Viewer),
        Ok(pb::Role::Unspecified) => {
            unspecified.ok_or_else(|| FieldViolation::new(field, "required"))
        }
        Ok(pb::Role::Owner) => Err(FieldViolation::new(
            field,
            "ROLE_OWNER cannot be granted: use TransferOwnership",
        )),
        Err(_) => Err(FieldViolation::new(field, "unknown role")),
    }
}

fn action_from_proto(field: &str, value: i32) -> Result<Action, FieldViolation> {
    match pb::Action::try_from(value) {
        Ok(pb::Action::Read) => Ok(Action::Read),
        Ok(pb::Action::Post) => Ok(Action::Post),
        Ok(pb::Action::React) => Ok(Action::React),
        Ok(pb::Action::Moderate) => Ok(Action::Moderate),
        Ok(pb::Action::ManageParticipants) => Ok(Action::ManageParticipants),
        Ok(pb::Action::Update) => Ok(Action::Update),
        Ok(pb::Action::Archive) => Ok(Action::Archive),
        Ok(pb::Action::Delete) => Ok(Action::Delete),
        Ok(pb::Action::TransferOwnership) => Ok(Action::TransferOwnership),
        Ok(pb::Action::Unspecified) => Err(FieldViolation::new(field, "required")),
        Err(_) => Err(FieldViolation::new(field, "unknown action")),
    }
}

fn denial_to_proto(denial: Option<Denial>) -> pb::DenialReason {
    match denial {
        None => pb::DenialReason::Unspecified,
        Some(Denial::NotParticipant) => pb::DenialReason::NotParticipant,
        Some(Denial::RoleInsufficient) => pb::DenialReason::RoleInsufficient,
        Some(Denial::Archived) => pb::DenialReason::Archived,
        Some(Denial::NotSupported) => pb::DenialReason::NotSupported,
    }
}

fn conversation_to_proto(view: ConversationView) -> ApiResult<pb::Conversation> {
    use messaging_platform::time::{to_optional_timestamp, to_timestamp};
    let row = view.row;
    Ok(pb::Conversation {
        conversation_id: row.id.to_string(),
        tenant_id: row.tenant_id.clone(),
        r#type: kind_to_proto(row.kind()?).into(),
        title: row.title,
        description: row.description,
        creator_id: row.creator_id,
        create_time: Some(to_timestamp(row.created_at)),
        updater_id: row.updater_id,
        update_time: Some(to_timestamp(row.updated_at)),
        last_activity_time: Some(to_timestamp(row.last_activity_at)),
        archived: row.archived_at.is_some(),
        archive_time: to_optional_timestamp(row.archived_at),
        archiver_id: row.archiver_id.unwrap_or_default(),
        delete_time: to_optional_timestamp(row.deleted_at),
        purge_time: to_optional_timestamp(view.purge_time),
        participant_count: row.participant_count,
        caller_role: role_to_proto(view.caller_role).into(),
        etag: row.version.to_string(),
    })
}

fn participant_to_proto(row: ParticipantRow) -> ApiResult<pb::Participant> {
    use messaging_platform::time::to_timestamp;
    Ok(pb::Participant {
        conversation_id: row.conversation_id.to_string(),
        role: role_to_proto(Some(row.role()?)).into(),
        user_id: row.user_id,
        join_time: Some(to_timestamp(row.joined_at)),
        inviter_id: row.inviter_id,
        role_update_time: Some(to_timestamp(row.role_updated_at)),
        role_updater_id: row.role_updater_id,
    })
}

/// Validates a list of participants to add: ids, roles, no duplicates, not the caller.
fn participant_specs(
    violations: &mut FieldViolations,
    field: &str,
    specs: &[pb::ParticipantSpec],
    caller: &Caller,
) -> Vec<(String, Role)> {
    if specs.len() > domain::MAX_PARTICIPANTS_PER_CALL {
        violations.add(
            field,
            format!("at most {} per call", domain::MAX_PARTICIPANTS_PER_CALL),
        );
        return Vec::new();
    }
    let mut seen = HashSet::new();
    let mut result = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let user_field = format!("{field}[{index}].user_id");
        let user = violations.check(principal_id(&user_field, &spec.user_id));
        let role = violations.check(grantable_role(
            &format!("{field}[{index}].role"),
            spec.role,
            Some(Role::Member),
        ));
        if let (Some(user), Some(role)) = (user, role) {
            if user == caller.user_id {
                violations.add(user_field, "must not be the caller");
            } else if !seen.insert(user.clone()) {
                violations.add(user_field, "duplicate user");
            } else {
                result.push((user, role));
            }
        }
    }
    result
}

fn id_only(field: &str, value: &str) -> ApiResult<uuid::Uuid> {
    resource_id(field, value).map_err(|violation| ApiError::InvalidArgument(vec![violation]))
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
                let mut violations = FieldViolations::new();
                let kind = violations.check(kind_from_proto("type", request.r#type));
                let title = kind.and_then(|kind| {
                    violations.check(domain::title("title", &request.title, kind))
                });
                let description =
                    violations.check(domain::description("description", &request.description));
                let participants = participant_specs(
                    &mut violations,
                    "participants",
                    &request.participants,
                    &caller,
                );
                if kind == Some(Kind::Direct) && request.participants.len() != 1 {
                    violations.add(
                        "participants",
                        "a direct conversation needs exactly one other user",
                    );
                }
                let request_id = violations
                    .check(messaging_platform::idempotency::parse_request_id(
                        "request_id",
                        &request.request_id,
                    ))
                    .flatten();
                let (Some(kind), Some(title), Some(description)) = (kind, title, description)
                else {
                    return Err(violations.into_error());
                };
                violations.finish()?;
                let new = NewConversation {
                    kind,
                    title,
                    description,
                    participants,
                    request_id,
                };
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
                let mut violations = FieldViolations::new();
                let size = violations.check(page_size(
                    "page_size",
                    request.page_size,
                    CONVERSATION_PAGE.0,
                    CONVERSATION_PAGE.1,
                ));
                let mut kinds = Vec::new();
                for (index, value) in request.types.iter().enumerate() {
                    if let Some(kind) =
                        violations.check(kind_from_proto(&format!("types[{index}]"), *value))
                    {
                        kinds.push(kind);
                    }
                }
                let archived = match pb::ArchiveFilter::try_from(request.archive_filter) {
                    Ok(pb::ArchiveFilter::Unspecified | pb::ArchiveFilter::Active) => {
                        Some(Archived::Active)
                    }
                    Ok(pb::ArchiveFilter::Archived) => Some(Archived::Archived),
                    Ok(pb::ArchiveFilter::All) => Some(Archived::All),
                    Err(_) => {
                        violations.add("archive_filter", "unknown archive filter");
                        None
                    }
                };
                let membership = match pb::MembershipFilter::try_from(request.membership_filter) {
                    Ok(pb::MembershipFilter::Unspecified | pb::MembershipFilter::Joined) => {
                        Some(Membership::Joined)
                    }
                    Ok(pb::MembershipFilter::Joinable) => Some(Membership::Joinable),
                    Ok(pb::MembershipFilter::All) => Some(Membership::All),
                    Err(_) => {
                        violations.add("membership_filter", "unknown membership filter");
                        None
                    }
                };
                let (Some(page_size), Some(archived), Some(membership)) =
                    (size, archived, membership)
                else {
                    return Err(violations.into_error());
                };
                violations.finish()?;
                let list = ListRequest {
                    filter: ConversationFilter {
                        kinds,
                        membership,
                        archived,
                    },
                    page_size,
                    page_token: request.page_token.clone(),
                };
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
                let conversation = request
                    .conversation
                    .as_ref()
                    .ok_or_else(|| ApiError::invalid("conversation", "required"))?;
                let mut violations = FieldViolations::new();
                let id = violations.check(resource_id(
                    "conversation.conversation_id",
                    &conversation.conversation_id,
                ));
                let paths: Vec<&str> = match &request.update_mask {
                    Some(mask) if !mask.paths.is_empty() => {
                        mask.paths.iter().map(String::as_str).collect()
                    }
                    _ => vec!["title", "description"],
                };
                let mut title = None;
                let mut description = None;
                for path in paths {
                    match path {
                        "title" => title = Some(conversation.title.as_str()),
                        "description" => {
                            description = violations.check(domain::description(
                                "conversation.description",
                                &conversation.description,
                            ));
                        }
                        other => violations.add(
                            "update_mask",
                            format!("unknown or immutable path {other:?}: use title, description"),
                        ),
                    }
                }
                let Some(id) = id else {
                    return Err(violations.into_error());
                };
                violations.finish()?;
                let etag = (!request.etag.is_empty()).then_some(request.etag.as_str());
                let view = self
                    .app
                    .update(&caller, id, title, description, etag)
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
                let mut violations = FieldViolations::new();
                let id = violations.check(resource_id("conversation_id", &request.conversation_id));
                let size = violations.check(page_size(
                    "page_size",
                    request.page_size,
                    PARTICIPANT_PAGE.0,
                    PARTICIPANT_PAGE.1,
                ));
                let mut roles = Vec::new();
                for (index, value) in request.roles.iter().enumerate() {
                    match pb::Role::try_from(*value) {
                        Ok(pb::Role::Owner) => roles.push(Role::Owner),
                        Ok(pb::Role::Admin) => roles.push(Role::Admin),
                        Ok(pb::Role::Member) => roles.push(Role::Member),
                        Ok(pb::Role::Viewer) => roles.push(Role::Viewer),
                        _ => violations.add(format!("roles[{index}]"), "must be a known role"),
                    }
                }
                let (Some(id), Some(size)) = (id, size) else {
                    return Err(violations.into_error());
                };
                violations.finish()?;
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
                    tenant: (!caller.spans_every_tenant()).then(|| caller.tenant_id.clone()),
                    resume,
                    heartbeat_interval: self.events.heartbeat_interval,
                    buffer: self.events.stream_buffer,
                    resume_field: "after_position",
                };
                stream::open(self.app.db(), self.app.bus(), spec, AdmitAll, |item| {
                    use pb::watch_events_response::Item as Out;
                    let item = match item {
                        Item::Event(event) => Out::Event(*event),
                        Item::ResyncRequired(position) => {
                            Out::ResyncRequired(messaging_proto::message::v1::ResyncRequired {
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
                    Some(caller.user_id.clone())
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
