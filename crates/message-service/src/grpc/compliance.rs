//! `messaging.message.v1.ComplianceService`: export, erasure, retention and the audit log.

use futures::StreamExt;
use futures::stream::BoxStream;
use messaging_platform::time::{to_optional_timestamp, to_timestamp};
use messaging_platform::validate::{principal_id, resource_id};
use messaging_platform::{ApiError, ApiResult, Caller, FieldViolations, pagination};
use messaging_proto::message::v1 as pb;
use messaging_proto::message::v1::compliance_service_server::ComplianceService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::respond;
use super::response::{
    message_to_proto, reaction_to_proto, read_state_to_proto, revision_to_proto,
};
use crate::app::{Compliance, ExportItem, require_admin};
use crate::domain::compliance::{AuditRecord, Erasure, MAX_RETENTION_DAYS, RetentionPolicy};

/// The export stream.
pub type ExportStream = BoxStream<'static, Result<pb::ExportUserDataResponse, Status>>;

/// The adapter over the compliance use cases.
#[derive(Debug, Clone)]
pub struct ComplianceGrpc {
    app: Compliance,
}

impl ComplianceGrpc {
    /// The adapter over `app`.
    pub fn new(app: Compliance) -> Self {
        Self { app }
    }
}

fn user(field: &str, value: &str) -> ApiResult<String> {
    principal_id(field, value).map_err(|violation| ApiError::InvalidArgument(vec![violation]))
}

fn optional_conversation(value: &str) -> ApiResult<Option<Uuid>> {
    if value.is_empty() {
        return Ok(None);
    }
    resource_id("conversation_id", value)
        .map(Some)
        .map_err(|violation| ApiError::InvalidArgument(vec![violation]))
}

fn item_to_proto(item: ExportItem) -> pb::export_user_data_response::Item {
    use pb::export_user_data_response::Item;
    match item {
        ExportItem::Membership(membership) => Item::Membership(pb::Membership {
            conversation_id: membership.conversation.to_string(),
            r#type: membership.kind,
            title: membership.title,
            role: membership.role,
            archived: membership.archived,
        }),
        ExportItem::Message(message) => Item::Message(message_to_proto(&message, &[])),
        ExportItem::Revision(revision) => Item::Revision(revision_to_proto(&revision)),
        ExportItem::Reaction(reaction) => Item::Reaction(reaction_to_proto(&reaction)),
        ExportItem::ReadState(state) => Item::ReadState(pb::ConversationReadState {
            conversation_id: state.conversation.to_string(),
            read_state: Some(read_state_to_proto(&state)),
        }),
        ExportItem::Mention(conversation, sequence, sender) => Item::Mention(pb::Mention {
            conversation_id: conversation.to_string(),
            sequence,
            sender_id: sender,
        }),
    }
}

fn erasure_to_proto(erasure: &Erasure) -> pb::UserErasure {
    pb::UserErasure {
        user_id: erasure.user.clone(),
        requester_id: erasure.requester.clone(),
        step: erasure.step.as_str().to_owned(),
        done: erasure.finished_at.is_some(),
        messages_erased: erasure.counts.messages,
        reactions_erased: erasure.counts.reactions,
        attachments_erased: erasure.counts.attachments,
        participations_erased: erasure.counts.participations,
        events_erased: erasure.counts.events,
        start_time: Some(to_timestamp(erasure.started_at)),
        finish_time: to_optional_timestamp(erasure.finished_at),
    }
}

fn policy_to_proto(policy: &RetentionPolicy) -> pb::RetentionPolicy {
    pb::RetentionPolicy {
        message_retention_days: i32::try_from(policy.message_days).unwrap_or(i32::MAX),
        tombstone_retention_days: i32::try_from(policy.tombstone_days).unwrap_or(i32::MAX),
        update_time: to_optional_timestamp(policy.updated_at),
        updater_id: policy.updater.clone(),
    }
}

fn policy_from_proto(policy: Option<&pb::RetentionPolicy>) -> ApiResult<RetentionPolicy> {
    let policy = policy.ok_or_else(|| ApiError::invalid("policy", "required"))?;
    let mut violations = FieldViolations::new();
    let mut days = |field: &str, value: i32| match u32::try_from(value) {
        Ok(days) if value <= MAX_RETENTION_DAYS => days,
        _ => {
            violations.add(
                format!("policy.{field}"),
                format!("must be 0 (keep forever) to {MAX_RETENTION_DAYS} days"),
            );
            0
        }
    };
    let message_days = days("message_retention_days", policy.message_retention_days);
    let tombstone_days = days("tombstone_retention_days", policy.tombstone_retention_days);
    violations.finish()?;
    Ok(RetentionPolicy {
        message_days,
        tombstone_days,
        ..RetentionPolicy::default()
    })
}

fn audit_to_proto(record: AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        record_id: record.id.to_string(),
        actor_id: record.actor,
        action: record.action.as_str().to_owned(),
        subject_id: record.subject,
        time: Some(to_timestamp(record.at)),
        details: record.details.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl ComplianceService for ComplianceGrpc {
    async fn export_user_data(
        &self,
        request: Request<pb::ExportUserDataRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                require_admin(&caller)?;
                let request = request.into_inner();
                let subject = user("user_id", &request.user_id)?;
                let cursor = self
                    .app
                    .begin_export(&caller, &subject, &request.cursor)
                    .await?;
                let app = self.app.clone();
                let stream = futures::stream::unfold(Some(cursor), move |cursor| {
                    let app = app.clone();
                    let caller = caller.clone();
                    let subject = subject.clone();
                    async move {
                        let cursor = cursor?;
                        match app.export_page(&caller, &subject, &cursor).await {
                            Ok(items) if items.is_empty() => None,
                            Ok(items) => {
                                let next = items.last().map(|(_, cursor)| cursor.clone());
                                let responses: Vec<Result<_, Status>> = items
                                    .into_iter()
                                    .map(|(item, cursor)| {
                                        Ok(pb::ExportUserDataResponse {
                                            item: Some(item_to_proto(item)),
                                            cursor: cursor.encode(),
                                        })
                                    })
                                    .collect();
                                Some((futures::stream::iter(responses), next))
                            }
                            Err(error) => {
                                Some((futures::stream::iter(vec![Err(Status::from(error))]), None))
                            }
                        }
                    }
                })
                .flatten()
                .boxed();
                Ok(stream)
            }
            .await,
        )
    }

    async fn erase_user_data(
        &self,
        request: Request<pb::EraseUserDataRequest>,
    ) -> Result<Response<pb::EraseUserDataResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                require_admin(&caller)?;
                let subject = user("user_id", &request.get_ref().user_id)?;
                let erasure = self.app.erase(&caller, &subject).await?;
                Ok(pb::EraseUserDataResponse {
                    messages_erased: erasure.counts.messages,
                    reactions_erased: erasure.counts.reactions,
                    erasure: Some(erasure_to_proto(&erasure)),
                })
            }
            .await,
        )
    }

    async fn get_user_erasure(
        &self,
        request: Request<pb::GetUserErasureRequest>,
    ) -> Result<Response<pb::GetUserErasureResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                require_admin(&caller)?;
                let subject = user("user_id", &request.get_ref().user_id)?;
                let erasure = self.app.erasure(&caller, &subject).await?;
                Ok(pb::GetUserErasureResponse {
                    erasure: Some(erasure_to_proto(&erasure)),
                })
            }
            .await,
        )
    }

    async fn set_retention_policy(
        &self,
        request: Request<pb::SetRetentionPolicyRequest>,
    ) -> Result<Response<pb::SetRetentionPolicyResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                require_admin(&caller)?;
                let request = request.get_ref();
                let conversation = optional_conversation(&request.conversation_id)?;
                let policy = if request.clear_override {
                    if conversation.is_none() {
                        return Err(ApiError::invalid(
                            "clear_override",
                            "needs conversation_id: the tenant's policy cannot be cleared, \
                             set it to 0 days instead",
                        ));
                    }
                    None
                } else {
                    Some(policy_from_proto(request.policy.as_ref())?)
                };
                let (policy, _) = self
                    .app
                    .set_retention(&caller, conversation, policy)
                    .await?;
                Ok(pb::SetRetentionPolicyResponse {
                    policy: Some(policy_to_proto(&policy)),
                })
            }
            .await,
        )
    }

    async fn get_retention_policy(
        &self,
        request: Request<pb::GetRetentionPolicyRequest>,
    ) -> Result<Response<pb::GetRetentionPolicyResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                require_admin(&caller)?;
                let conversation = optional_conversation(&request.get_ref().conversation_id)?;
                let (policy, is_override) = self.app.retention(&caller, conversation).await?;
                Ok(pb::GetRetentionPolicyResponse {
                    policy: Some(policy_to_proto(&policy)),
                    is_override,
                })
            }
            .await,
        )
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        respond(
            async {
                let caller = Caller::from_request(&request)?;
                require_admin(&caller)?;
                let request = request.get_ref();
                let page_size = match request.page_size {
                    0 => 100,
                    size @ 1..=500 => size as u64,
                    _ => return Err(ApiError::invalid("page_size", "must be 0 (100) to 500")),
                };
                let fingerprint = pagination::fingerprint(&["audit", &caller.tenant_id]);
                let before = pagination::decode_timed::<Uuid>(
                    "page_token",
                    &request.page_token,
                    &fingerprint,
                )?;
                let records = self
                    .app
                    .audit_records(&caller, before, page_size + 1)
                    .await?;
                let (records, next_page_token) =
                    pagination::finish(records, page_size, &fingerprint, |record| {
                        (record.at.timestamp_micros(), record.id)
                    });
                Ok(pb::ListAuditRecordsResponse {
                    records: records.into_iter().map(audit_to_proto).collect(),
                    next_page_token,
                })
            }
            .await,
        )
    }
}
