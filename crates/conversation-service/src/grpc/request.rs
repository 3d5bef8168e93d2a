//! Requests as use-case inputs: every field checked, each problem reported as a field
//! violation (all of a request's problems at once).

use messaging_platform::validate::{page_size, principal_id, resource_id};
use messaging_platform::{ApiError, ApiResult, Caller, FieldViolations};
use messaging_proto::conversation::v1 as pb;
use tonic_types::FieldViolation;
use uuid::Uuid;

use crate::app::{ListRequest, NewConversation};
use crate::domain::{self, Action, Kind, Role};
use crate::store::{Archived, ConversationFilter, Membership};

/// Most conversations per ListConversations page, and the default.
const CONVERSATION_PAGE: (u64, u64) = (50, 200);
/// Most participants per ListParticipants page, and the default.
const PARTICIPANT_PAGE: (u64, u64) = (100, 500);

/// What UpdateConversation asks: id, title, description, etag.
pub type Update = (Uuid, Option<String>, Option<String>, Option<String>);

/// A conversation kind from the proto enum.
pub fn kind_from_proto(field: &str, value: i32) -> Result<Kind, FieldViolation> {
    match pb::ConversationType::try_from(value) {
        Ok(pb::ConversationType::Direct) => Ok(Kind::Direct),
        Ok(pb::ConversationType::Group) => Ok(Kind::Group),
        Ok(pb::ConversationType::Channel) => Ok(Kind::Channel),
        Ok(pb::ConversationType::Unspecified) => Err(FieldViolation::new(field, "required")),
        Err(_) => Err(FieldViolation::new(field, "unknown conversation type")),
    }
}

/// A role a caller may grant (`default` when unspecified).
pub fn grantable_role(
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

/// A CheckPermission action from the proto enum.
pub fn action_from_proto(field: &str, value: i32) -> Result<Action, FieldViolation> {
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

/// Parses a list of participants to add (ids and roles); the rules on the list itself
/// (size, repeats, the caller) are the domain's ([`domain::other_participants`]).
pub fn participant_specs(
    violations: &mut FieldViolations,
    field: &str,
    specs: &[pb::ParticipantSpec],
    caller: &Caller,
) -> Vec<(String, Role)> {
    let parsed = specs.iter().enumerate().map(|(index, spec)| {
        let user = violations.check(principal_id(
            &format!("{field}[{index}].user_id"),
            &spec.user_id,
        ));
        let role = violations.check(grantable_role(
            &format!("{field}[{index}].role"),
            spec.role,
            Some(Role::Member),
        ));
        user.zip(role)
    });
    let parsed: Vec<Option<(String, Role)>> = if specs.len() > domain::MAX_PARTICIPANTS_PER_CALL {
        Vec::new()
    } else {
        parsed.collect()
    };
    domain::other_participants(violations, field, &caller.user_id, specs.len(), parsed)
}

/// A lone resource id.
pub fn id_only(field: &str, value: &str) -> ApiResult<uuid::Uuid> {
    resource_id(field, value).map_err(|violation| ApiError::InvalidArgument(vec![violation]))
}

/// CreateConversation: `participants` are the others (not the caller, each once).
pub fn new_conversation(
    request: &pb::CreateConversationRequest,
    caller: &Caller,
) -> ApiResult<NewConversation> {
    let mut violations = FieldViolations::new();
    let kind = violations.check(kind_from_proto("type", request.r#type));
    let title =
        kind.and_then(|kind| violations.check(domain::title("title", &request.title, kind)));
    let description = violations.check(domain::description("description", &request.description));
    let participants = participant_specs(
        &mut violations,
        "participants",
        &request.participants,
        caller,
    );
    if let Some(kind) = kind {
        violations.check(domain::participant_count(
            "participants",
            kind,
            request.participants.len(),
        ));
    }
    let request_id = violations
        .check(messaging_platform::idempotency::parse_request_id(
            "request_id",
            &request.request_id,
        ))
        .flatten();
    let (Some(kind), Some(title), Some(description)) = (kind, title, description) else {
        return Err(violations.into_error());
    };
    violations.finish()?;
    Ok(NewConversation {
        kind,
        title,
        description,
        participants,
        request_id,
    })
}

/// ListConversations.
pub fn list_request(request: &pb::ListConversationsRequest) -> ApiResult<ListRequest> {
    let mut violations = FieldViolations::new();
    let size = violations.check(page_size(
        "page_size",
        request.page_size,
        CONVERSATION_PAGE.0,
        CONVERSATION_PAGE.1,
    ));
    let mut kinds = Vec::new();
    for (index, value) in request.types.iter().enumerate() {
        if let Some(kind) = violations.check(kind_from_proto(&format!("types[{index}]"), *value)) {
            kinds.push(kind);
        }
    }
    let archived = match pb::ArchiveFilter::try_from(request.archive_filter) {
        Ok(pb::ArchiveFilter::Unspecified | pb::ArchiveFilter::Active) => Some(Archived::Active),
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
    let (Some(page_size), Some(archived), Some(membership)) = (size, archived, membership) else {
        return Err(violations.into_error());
    };
    violations.finish()?;
    Ok(ListRequest {
        filter: ConversationFilter {
            kinds,
            membership,
            archived,
        },
        page_size,
        page_token: request.page_token.clone(),
    })
}

/// UpdateConversation: the id, the new title and description if the mask names them, and
/// the etag the change is conditional on.
pub fn update(request: &pb::UpdateConversationRequest) -> ApiResult<Update> {
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
        Some(mask) if !mask.paths.is_empty() => mask.paths.iter().map(String::as_str).collect(),
        _ => vec!["title", "description"],
    };
    let mut title = None;
    let mut description = None;
    for path in paths {
        match path {
            "title" => title = Some(conversation.title.clone()),
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
    let etag = (!request.etag.is_empty()).then(|| request.etag.clone());
    Ok((id, title, description, etag))
}

/// ListParticipants: the conversation, the roles to list (empty: all) and the page size.
pub fn participants_page(
    request: &pb::ListParticipantsRequest,
) -> ApiResult<(Uuid, Vec<Role>, u64)> {
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
    Ok((id, roles, size))
}
