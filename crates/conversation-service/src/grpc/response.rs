//! Use-case results as protos.

use messaging_platform::ApiResult;
use messaging_proto::conversation::v1 as pb;

use crate::app::ConversationView;
use crate::domain::Participant;
use crate::domain::{Denial, Kind, Role};

/// A kind as the proto enum.
pub fn kind_to_proto(kind: Kind) -> pb::ConversationType {
    match kind {
        Kind::Direct => pb::ConversationType::Direct,
        Kind::Group => pb::ConversationType::Group,
        Kind::Channel => pb::ConversationType::Channel,
    }
}

/// A role as the proto enum (`None`: not a participant).
pub fn role_to_proto(role: Option<Role>) -> pb::Role {
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
/// Why CheckPermission denied, as the proto enum.
pub fn denial_to_proto(denial: Option<Denial>) -> pb::DenialReason {
    match denial {
        None => pb::DenialReason::Unspecified,
        Some(Denial::NotParticipant) => pb::DenialReason::NotParticipant,
        Some(Denial::RoleInsufficient) => pb::DenialReason::RoleInsufficient,
        Some(Denial::Archived) => pb::DenialReason::Archived,
        Some(Denial::NotSupported) => pb::DenialReason::NotSupported,
    }
}

/// A conversation as its caller sees it.
pub fn conversation_to_proto(view: ConversationView) -> ApiResult<pb::Conversation> {
    use messaging_platform::time::{to_optional_timestamp, to_timestamp};
    let row = view.row;
    Ok(pb::Conversation {
        conversation_id: row.id.to_string(),
        tenant_id: row.tenant_id.clone(),
        r#type: kind_to_proto(row.kind).into(),
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

/// A participant.
pub fn participant_to_proto(row: Participant) -> ApiResult<pb::Participant> {
    use messaging_platform::time::to_timestamp;
    Ok(pb::Participant {
        conversation_id: row.conversation_id.to_string(),
        role: role_to_proto(Some(row.role)).into(),
        user_id: row.user_id,
        join_time: Some(to_timestamp(row.joined_at)),
        inviter_id: row.inviter_id,
        role_update_time: Some(to_timestamp(row.role_updated_at)),
        role_updater_id: row.role_updater_id,
    })
}
