//! SearchMessages.

use std::collections::{HashMap, HashSet};

use messaging_platform::{ApiError, ApiResult, Caller, pagination};
use uuid::Uuid;

use super::Messages;
use crate::domain::text;
use crate::domain::{MessageFilter, MessageView};
use crate::store::SearchQuery;

/// A search, validated.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The words.
    pub query: String,
    /// Client tokens to match against end-to-end payloads.
    pub client_tokens: Vec<Vec<u8>>,
    /// Only these conversations; empty means every one the caller participates in.
    pub conversations: Vec<Uuid>,
    /// Filters.
    pub filter: MessageFilter,
    /// Page size.
    pub page_size: u64,
    /// Page token as received.
    pub page_token: String,
    /// The time the client gave the call, if it said.
    pub time_left: Option<std::time::Duration>,
}

/// Most distinct words and search tokens in one search: each is a join, so this bounds the
/// cost of a query on both backends (and stays within what PostgreSQL plans exhaustively).
pub const MAX_SEARCH_TERMS: usize = 8;

/// One search result.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// The message.
    pub view: MessageView,
    /// Its text around the matches, matches marked.
    pub snippet: String,
    /// Relevance times 1,000.
    pub score: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Messages {
    /// SearchMessages: messages with every word of the query (and every client token) in
    /// the conversations the caller may read, by relevance then newest first.
    pub async fn search(
        &self,
        caller: &Caller,
        request: SearchRequest,
    ) -> ApiResult<(Vec<SearchHit>, String)> {
        let terms = text::query_terms(&request.query);
        if terms.is_empty() && request.client_tokens.is_empty() {
            return Err(ApiError::invalid(
                "query",
                "has no words to search for (give words or search_tokens)",
            ));
        }
        let distinct_terms = terms.iter().collect::<HashSet<_>>().len();
        let distinct_tokens = request.client_tokens.iter().collect::<HashSet<_>>().len();
        if distinct_terms + distinct_tokens > MAX_SEARCH_TERMS {
            let field = if distinct_terms > MAX_SEARCH_TERMS {
                "query"
            } else {
                "search_tokens"
            };
            return Err(ApiError::invalid(
                field,
                format!(
                    "at most {MAX_SEARCH_TERMS} distinct words and search tokens together \
                     (this has {distinct_terms} words and {distinct_tokens} tokens)"
                ),
            ));
        }
        let _place = self.limits.search_permit(&caller.tenant_id)?;
        let filter = &request.filter;
        let mut conversations: Vec<String> =
            request.conversations.iter().map(Uuid::to_string).collect();
        conversations.sort();
        let [sender, thread, attachments, start, end] = filter.fingerprint_parts();
        let fingerprint = pagination::fingerprint(&[
            "search",
            &request.query,
            &request
                .client_tokens
                .iter()
                .map(|token| hex(token))
                .collect::<Vec<_>>()
                .join(","),
            &conversations.join(","),
            &sender,
            &thread,
            &attachments,
            &start,
            &end,
        ]);
        let after: Option<(i64, Uuid)> =
            pagination::decode("page_token", &request.page_token, &fingerprint)?;
        let readable = self.readable(caller, request.conversations).await?;
        let tenant = &caller.tenant_id;
        let size = request.page_size;
        let within = request
            .time_left
            .map_or(self.limits.search_timeout(), |left| {
                left.min(self.limits.search_timeout())
            });
        let query = SearchQuery {
            terms,
            client_tokens: request.client_tokens,
            conversations: readable,
            filter: request.filter,
            after,
            limit: size + 1,
        };
        let mut matches = self
            .store
            .search(tenant, &query, within)
            .await?
            .ok_or_else(|| {
                ApiError::ResourceExhausted(format!(
                    "the search ran out of time ({} ms): use rarer words or fewer conversations",
                    within.as_millis()
                ))
            })?;
        let more = matches.len() as u64 > size;
        matches.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let next_page_token = match (more, matches.last()) {
            (true, Some(last)) => pagination::encode(&fingerprint, &(last.score, last.message_id)),
            _ => String::new(),
        };
        let ids: Vec<Uuid> = matches.iter().map(|hit| hit.message_id).collect();
        let found = self.store.messages(tenant, &ids).await?;
        let mut views: HashMap<Uuid, MessageView> = self
            .views(caller, found)
            .await?
            .into_iter()
            .map(|view| (view.message.id, view))
            .collect();
        let wanted: HashSet<String> = query.terms.into_iter().collect();
        let hits = matches
            .into_iter()
            .filter_map(|hit| {
                let view = views.remove(&hit.message_id)?;
                let snippet = view
                    .message
                    .content
                    .as_ref()
                    .and_then(|content| content.text())
                    .map(|text| text::snippet(text, &wanted))
                    .unwrap_or_default();
                Some(SearchHit {
                    view,
                    snippet,
                    score: hit.score,
                })
            })
            .collect();
        Ok((hits, next_page_token))
    }
}
