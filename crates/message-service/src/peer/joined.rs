//! The conversations a user participates in, listed from conversation-service after a fence
//! and cached until an event says the list changed.

use std::sync::Arc;

use messaging_platform::{ApiResult, Caller};
use messaging_proto::conversation::v1 as pb;
use uuid::Uuid;

use super::{ConversationGate, unavailable};

impl ConversationGate {
    /// Every conversation the caller participates in (archived ones included), at most `limit`,
    /// after a fence.
    pub async fn joined_conversations(
        &self,
        caller: &Caller,
        limit: usize,
    ) -> ApiResult<Vec<Uuid>> {
        self.fence().await?;
        let key = (caller.tenant_id.to_string(), caller.user_id.to_string());
        let generation = self
            .joined_generation
            .load(std::sync::atomic::Ordering::SeqCst);
        if let Some(list) = self.joined.get(&key)
            && (list.complete || list.ids.len() >= limit)
        {
            return Ok(list.ids.iter().take(limit).copied().collect());
        }
        let fetched = limit.max(MAX_JOINED);
        let ids = self.fetch_joined(caller, fetched).await?;
        let list = JoinedList {
            complete: ids.len() < fetched,
            ids,
        };
        let answer = list.ids.iter().take(limit).copied().collect();
        if self
            .joined_generation
            .load(std::sync::atomic::Ordering::SeqCst)
            == generation
        {
            self.joined.insert(key, Arc::new(list));
        }
        Ok(answer)
    }

    pub(super) async fn fetch_joined(&self, caller: &Caller, limit: usize) -> ApiResult<Vec<Uuid>> {
        let mut ids = Vec::new();
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
                .list_conversations(self.request(&caller.tenant_id, &caller.user_id, message)?)
                .await
                .map_err(|status| unavailable(&status))?
                .into_inner();
            ids.extend(
                response
                    .conversations
                    .iter()
                    .filter_map(|c| Uuid::parse_str(&c.conversation_id).ok()),
            );
            if response.next_page_token.is_empty() || ids.len() >= limit {
                ids.truncate(limit);
                return Ok(ids);
            }
            page_token = response.next_page_token;
        }
    }

    pub(super) fn invalidate_joined(&self, key: Option<(String, String)>) {
        self.joined_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match key {
            Some(key) => self.joined.invalidate(&key),
            None => self.joined.invalidate_all(),
        }
    }
}

/// A user's conversations as last listed.
#[derive(Debug)]
pub(super) struct JoinedList {
    pub(super) ids: Vec<Uuid>,
    /// Every one of them (the listing ended before its limit).
    pub(super) complete: bool,
}

/// How many of a user's conversations the joined-list cache keeps at least.
const MAX_JOINED: usize = 1_000;
