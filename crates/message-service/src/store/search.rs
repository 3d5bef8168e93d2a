//! The blind index and [`SearchStore`] on SQL. The index holds keyed tokens of each message's
//! terms (`crate::domain::text`) with their weights, or, for end-to-end payloads, keyed
//! client tokens; queries are keyed the same way here, so no term is ever stored or compared in
//! the clear.

use std::time::Duration;

use messaging_platform::TenantId;
use messaging_platform::crypto::SearchKey;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, JoinType, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    QueryFilter,
};
use uuid::Uuid;

use super::entity::{message, search_token};
use super::{SearchStore, SqlStore, StoreResult};
use crate::domain::text;
use crate::domain::{Content, MessageFilter};

/// A search: every term and client token must match.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Terms of the query's words (`crate::domain::text::query_terms`).
    pub terms: Vec<String>,
    /// The client's tokens, to match against end-to-end payloads.
    pub client_tokens: Vec<Vec<u8>>,
    /// Only these conversations (the caller's readable ones).
    pub conversations: Vec<Uuid>,
    /// Further filters.
    pub filter: MessageFilter,
    /// Continue after this (score, message id), in ranking order.
    pub after: Option<(i64, Uuid)>,
    /// Most hits.
    pub limit: u64,
}

/// [`SearchQuery`] with its terms and tokens keyed, sorted, without repeats.
struct KeyedQuery<'a> {
    tokens: Vec<Vec<u8>>,
    conversations: &'a [Uuid],
    filter: &'a MessageFilter,
    after: Option<(i64, Uuid)>,
    limit: u64,
}

#[async_trait::async_trait]
impl SearchStore for SqlStore {
    async fn search(
        &self,
        tenant: &TenantId,
        query: &SearchQuery,
        within: Duration,
    ) -> StoreResult<Option<Vec<SearchMatch>>> {
        let tenant = tenant.as_str();
        let key = self.keys.search(&self.db, tenant).await?;
        let mut tokens: Vec<Vec<u8>> = query
            .terms
            .iter()
            .map(|term| key.token(term).to_vec())
            .chain(
                query
                    .client_tokens
                    .iter()
                    .map(|token| client_token(&key, token)),
            )
            .collect();
        tokens.sort();
        tokens.dedup();
        let keyed = KeyedQuery {
            tokens,
            conversations: &query.conversations,
            filter: &query.filter,
            after: query.after,
            limit: query.limit,
        };
        Ok(search_within(&self.db, tenant, &keyed, within).await?)
    }
}

/// Bytes in lower-case hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The blind-index entries of a message: keyed tokens of its text's terms with their weights,
/// or of the client's own tokens for an end-to-end payload.
pub fn index_entries(
    key: &SearchKey,
    content: Option<&Content>,
    client_tokens: &[Vec<u8>],
) -> Vec<(Vec<u8>, i64)> {
    match content {
        Some(Content::Text(text)) => text::weighted_terms(text)
            .into_iter()
            .map(|(term, weight)| (key.token(&term).to_vec(), weight))
            .collect(),
        Some(Content::Encrypted { .. }) => client_tokens
            .iter()
            .map(|token| (client_token(key, token), text::CLIENT_TOKEN_WEIGHT))
            .collect(),
        None => Vec::new(),
    }
}

/// The stored form of a client's search token: keyed again, apart from word tokens.
pub fn client_token(key: &SearchKey, token: &[u8]) -> Vec<u8> {
    key.token(&format!("\0{}", hex(token))).to_vec()
}

/// Sets a message's blind-index entries (token, weight); empty removes them.
pub(crate) async fn replace_search_entries<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    message_id: Uuid,
    entries: Vec<(Vec<u8>, i64)>,
) -> Result<(), DbErr> {
    search_token::Entity::delete_many()
        .filter(search_token::Column::TenantId.eq(tenant))
        .filter(search_token::Column::MessageId.eq(message_id))
        .exec(connection)
        .await?;
    insert_search_entries(connection, tenant, conversation, message_id, entries).await
}

/// Adds the blind-index entries of a message that has none yet.
pub(crate) async fn insert_search_entries<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    message_id: Uuid,
    entries: Vec<(Vec<u8>, i64)>,
) -> Result<(), DbErr> {
    insert_search_rows(
        connection,
        search_rows(tenant, conversation, message_id, entries),
    )
    .await
}

/// The index rows of a message's entries.
pub(crate) fn search_rows(
    tenant: &str,
    conversation: Uuid,
    message_id: Uuid,
    entries: Vec<(Vec<u8>, i64)>,
) -> impl Iterator<Item = search_token::Model> {
    entries
        .into_iter()
        .map(move |(token, weight)| search_token::Model {
            tenant_id: tenant.to_owned(),
            token,
            conversation_id: conversation,
            message_id,
            weight,
        })
}

/// Adds index rows of messages that have none yet, a thousand rows a statement.
pub(crate) async fn insert_search_rows<C: ConnectionTrait>(
    connection: &C,
    rows: impl IntoIterator<Item = search_token::Model>,
) -> Result<(), DbErr> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        search_token::Entity::insert_many(
            rows.by_ref()
                .take(1000)
                .map(search_token::ActiveModel::from),
        )
        .exec_without_returning(connection)
        .await?;
    }
    Ok(())
}

/// One match: the message and its score (sum of the matched tokens' weights).
#[derive(Debug, Clone, FromQueryResult)]
pub struct SearchMatch {
    /// The message.
    pub message_id: Uuid,
    /// Relevance.
    pub score: i64,
}

/// Messages of `tenant` that have every token, by score, then newest first (message ids are
/// UUIDv7, ordered by send time). The first token's entries are read per conversation (the
/// index is keyed by tenant, token, conversation), each further token is a primary-key probe,
/// and messages themselves are joined only for the sender, thread, attachment and time
/// filters. Deleted messages have no entries (deleting removes them in the same transaction).
async fn search<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    query: &KeyedQuery<'_>,
) -> Result<Vec<SearchMatch>, DbErr> {
    let Some((first, rest)) = query.tokens.split_first() else {
        return Ok(Vec::new());
    };
    if query.conversations.is_empty() {
        return Ok(Vec::new());
    }
    let term = |index: usize| Alias::new(format!("t{index}"));
    let m = Alias::new("m");
    let column = |table: &Alias, name: &str| Expr::col((table.clone(), Alias::new(name)));
    let same = |alias: &Alias, name: &str| column(alias, name).equals((term(0), Alias::new(name)));
    let mut score = column(&term(0), "weight");
    for index in 1..=rest.len() {
        score = score.add(column(&term(index), "weight"));
    }
    let id = || column(&term(0), "message_id");
    let mut select = Query::select();
    select
        .expr_as(id(), Alias::new("message_id"))
        .expr_as(score.clone(), Alias::new("score"))
        .from_as(search_token::Entity, term(0));
    for (offset, token) in rest.iter().enumerate() {
        let alias = term(offset + 1);
        select.join_as(
            JoinType::InnerJoin,
            search_token::Entity,
            alias.clone(),
            Condition::all()
                .add(same(&alias, "tenant_id"))
                .add(column(&alias, "token").eq(token.clone()))
                .add(same(&alias, "conversation_id"))
                .add(same(&alias, "message_id")),
        );
    }
    select
        .and_where(column(&term(0), "tenant_id").eq(tenant))
        .and_where(column(&term(0), "token").eq(first.clone()))
        .and_where(column(&term(0), "conversation_id").is_in(query.conversations.to_vec()));
    let filter = &query.filter;
    if !filter.is_empty() {
        select.join_as(
            JoinType::InnerJoin,
            message::Entity,
            m.clone(),
            Condition::all()
                .add(column(&m, "tenant_id").equals((term(0), Alias::new("tenant_id"))))
                .add(column(&m, "id").equals((term(0), Alias::new("message_id")))),
        );
    }
    select.cond_where(filter_condition(filter, &|name| column(&m, name)));
    if let Some((last_score, last_id)) = query.after {
        select.cond_where(
            Condition::any().add(score.clone().lt(last_score)).add(
                Condition::all()
                    .add(score.clone().eq(last_score))
                    .add(id().lt(last_id)),
            ),
        );
    }
    select
        .order_by_expr(score, sea_orm::Order::Desc)
        .order_by_expr(id(), sea_orm::Order::Desc)
        .limit(query.limit);
    SearchMatch::find_by_statement(connection.get_database_backend().build(&select))
        .all(connection)
        .await
}

/// [`search`] that stops when `within` has passed: on PostgreSQL the statement is cancelled
/// there (`statement_timeout`), so no abandoned search keeps a connection busy; on both, the
/// wait ends. `Ok(None)` when the time ran out.
async fn search_within(
    db: &DatabaseConnection,
    tenant: &str,
    query: &KeyedQuery<'_>,
    within: std::time::Duration,
) -> Result<Option<Vec<SearchMatch>>, DbErr> {
    use sea_orm::TransactionTrait;
    let within = within.max(std::time::Duration::from_millis(1));
    let transaction = db.begin().await?;
    if transaction.get_database_backend() == sea_orm::DbBackend::Postgres {
        transaction
            .execute_unprepared(&format!(
                "SET LOCAL statement_timeout = {}",
                within.as_millis()
            ))
            .await?;
    }
    let found = match tokio::time::timeout(within, search(&transaction, tenant, query)).await {
        Err(_) => None,
        Ok(Err(error)) if is_statement_timeout(&error) => None,
        Ok(result) => Some(result?),
    };
    transaction.rollback().await?;
    Ok(found)
}

fn is_statement_timeout(error: &DbErr) -> bool {
    // query_canceled: what statement_timeout raises.
    messaging_platform::db::sqlstate(error).as_deref() == Some("57014")
}

/// `filter` as a condition on message columns, named through `column`.
pub(super) fn filter_condition(filter: &MessageFilter, column: &dyn Fn(&str) -> Expr) -> Condition {
    let mut condition = Condition::all();
    if let Some(sender) = &filter.sender {
        condition = condition.add(column("sender_id").eq(sender.as_str()));
    }
    if let Some(thread) = filter.thread {
        condition = condition.add(column("parent_id").eq(thread));
    }
    if filter.has_attachments {
        condition = condition.add(column("has_attachments").eq(true));
    }
    if let Some(start) = filter.start {
        condition = condition.add(column("created_at").gte(start));
    }
    if let Some(end) = filter.end {
        condition = condition.add(column("created_at").lt(end));
    }
    condition
}
