//! What compliance asks of conversation-service: a user's memberships (for exports) and the
//! removal of its participations (for erasures).

use messaging_platform::ApiResult;
use messaging_proto::conversation::v1 as pb;

use super::{ConversationGate, unavailable};

/// A user's membership of a conversation, as conversation-service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The conversation.
    pub conversation: uuid::Uuid,
    /// Its type (`CONVERSATION_TYPE_GROUP`, ...).
    pub kind: String,
    /// Its title.
    pub title: String,
    /// The user's role (`ROLE_OWNER`, ...).
    pub role: String,
    /// Whether it is archived.
    pub archived: bool,
}

/// conversation-service as compliance needs it.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Every conversation `user` of `tenant` participates in, by conversation id.
    async fn memberships(&self, tenant: &str, user: &str) -> ApiResult<Vec<Membership>>;

    /// Removes `user` from at most `limit` conversations, acting for administrator `actor`;
    /// how many, and whether any are left.
    async fn erase_participations(
        &self,
        tenant: &str,
        actor: &str,
        user: &str,
        limit: i32,
    ) -> ApiResult<(i64, bool)>;
}

#[async_trait::async_trait]
impl Directory for ConversationGate {
    async fn memberships(&self, tenant: &str, user: &str) -> ApiResult<Vec<Membership>> {
        let mut memberships = Vec::new();
        let mut page_token = String::new();
        loop {
            let message = pb::ListConversationsRequest {
                page_size: 200,
                page_token: page_token.clone(),
                archive_filter: pb::ArchiveFilter::All.into(),
                membership_filter: pb::MembershipFilter::Joined.into(),
                ..Default::default()
            };
            let response = self
                .client
                .clone()
                .list_conversations(self.request(tenant, user, message)?)
                .await
                .map_err(|status| unavailable(&status))?
                .into_inner();
            for conversation in response.conversations {
                let Ok(id) = uuid::Uuid::parse_str(&conversation.conversation_id) else {
                    continue;
                };
                memberships.push(Membership {
                    conversation: id,
                    kind: conversation.r#type().as_str_name().to_owned(),
                    role: conversation.caller_role().as_str_name().to_owned(),
                    title: conversation.title,
                    archived: conversation.archived,
                });
            }
            if response.next_page_token.is_empty() {
                break;
            }
            page_token = response.next_page_token;
        }
        memberships.sort_by_key(|membership| membership.conversation);
        Ok(memberships)
    }

    async fn erase_participations(
        &self,
        tenant: &str,
        actor: &str,
        user: &str,
        limit: i32,
    ) -> ApiResult<(i64, bool)> {
        let message = pb::EraseParticipationsRequest {
            user_id: user.to_owned(),
            limit,
        };
        let response = self
            .client
            .clone()
            .erase_participations(self.request(tenant, actor, message)?)
            .await
            .map_err(|status| unavailable(&status))?
            .into_inner();
        Ok((i64::from(response.removed), response.remaining))
    }
}
