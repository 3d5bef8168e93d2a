//! [`ReactionStore`] on SQL.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use messaging_platform::db::begin_write;
use messaging_platform::{TenantId, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::reaction;
use super::rows::{reaction_from_row, reaction_to_row};
use super::{ReactionStore, SqlStore, StoreResult};
use crate::domain::{MessageEvent, Reaction, ReactionSummary};

/// Per message and emoji: how many reacted, and whether the caller did.
#[derive(Debug, Clone, FromQueryResult)]
struct ReactionCount {
    message_id: Uuid,
    emoji: String,
    count: i64,
    /// 1 when the caller is among them.
    mine: i64,
}

#[async_trait::async_trait]
impl ReactionStore for SqlStore {
    async fn react(&self, tenant: &TenantId, reaction: &Reaction, add: bool) -> StoreResult<bool> {
        let tenant = tenant.as_str();
        let transaction = begin_write(&self.db).await?;
        let changed = if add {
            let inserted = reaction::Entity::insert(reaction::ActiveModel::from(reaction_to_row(
                tenant, reaction,
            )))
            .on_conflict_do_nothing()
            .exec_without_returning(&transaction)
            .await?;
            matches!(inserted, sea_orm::TryInsertResult::Inserted(rows) if rows > 0)
        } else {
            let deleted = reaction::Entity::delete_many()
                .filter(reaction::Column::TenantId.eq(tenant))
                .filter(reaction::Column::MessageId.eq(reaction.message))
                .filter(reaction::Column::UserId.eq(reaction.user.as_str()))
                .filter(reaction::Column::Emoji.eq(reaction.emoji.as_str()))
                .exec(&transaction)
                .await?;
            deleted.rows_affected > 0
        };
        if changed {
            let event = if add {
                MessageEvent::ReactionAdded(reaction)
            } else {
                MessageEvent::ReactionRemoved(reaction)
            };
            self.record(
                &transaction,
                None,
                tenant,
                &reaction.user,
                reaction.created_at,
                event,
            )
            .await?;
        }
        transaction.commit().await?;
        if changed {
            self.bus.committed();
        }
        Ok(changed)
    }

    async fn summaries(
        &self,
        tenant: &TenantId,
        ids: &[Uuid],
        user: &UserId,
    ) -> StoreResult<HashMap<Uuid, Vec<ReactionSummary>>> {
        let tenant = tenant.as_str();
        let user = user.as_str();
        let mut by_message: HashMap<Uuid, Vec<ReactionSummary>> = HashMap::new();
        if ids.is_empty() {
            return Ok(by_message);
        }
        let counts = reaction::Entity::find()
            .select_only()
            .column(reaction::Column::MessageId)
            .column(reaction::Column::Emoji)
            .column_as(reaction::Column::UserId.count(), "count")
            .column_as(
                Expr::case(reaction::Column::UserId.eq(user), 1_i64)
                    .finally(0_i64)
                    .max(),
                "mine",
            )
            .filter(reaction::Column::TenantId.eq(tenant))
            .filter(reaction::Column::MessageId.is_in(ids.to_vec()))
            .group_by(reaction::Column::MessageId)
            .group_by(reaction::Column::Emoji)
            .order_by_asc(reaction::Column::CreatedAt.min())
            .order_by_asc(reaction::Column::Emoji)
            .into_model::<ReactionCount>()
            .all(&self.db)
            .await?;
        for count in counts {
            by_message
                .entry(count.message_id)
                .or_default()
                .push(ReactionSummary {
                    emoji: count.emoji,
                    count: count.count,
                    mine: count.mine > 0,
                });
        }
        Ok(by_message)
    }

    async fn reactions(
        &self,
        tenant: &TenantId,
        message: Uuid,
        emoji: Option<&str>,
        after: Option<(DateTime<Utc>, String, String)>,
        limit: u64,
    ) -> StoreResult<Vec<Reaction>> {
        let tenant = tenant.as_str();
        let mut query = reaction::Entity::find()
            .filter(reaction::Column::TenantId.eq(tenant))
            .filter(reaction::Column::MessageId.eq(message));
        if let Some(emoji) = emoji {
            query = query.filter(reaction::Column::Emoji.eq(emoji));
        }
        if let Some((time, user, emoji)) = after {
            query = query.filter(
                Condition::any()
                    .add(reaction::Column::CreatedAt.gt(time))
                    .add(
                        Condition::all()
                            .add(reaction::Column::CreatedAt.eq(time))
                            .add(reaction::Column::UserId.gt(user.as_str())),
                    )
                    .add(
                        Condition::all()
                            .add(reaction::Column::CreatedAt.eq(time))
                            .add(reaction::Column::UserId.eq(user.as_str()))
                            .add(reaction::Column::Emoji.gt(emoji.as_str())),
                    ),
            );
        }
        let rows = query
            .order_by_asc(reaction::Column::CreatedAt)
            .order_by_asc(reaction::Column::UserId)
            .order_by_asc(reaction::Column::Emoji)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(reaction_from_row).collect())
    }
}
