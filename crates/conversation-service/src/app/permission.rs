//! CheckPermission (what other services ask before acting) and GetEventHead (the position
//! they fence on for read-your-writes).

use messaging_platform::{ApiError, ApiResult, Caller};
use uuid::Uuid;

use super::PermissionAnswer;
use super::{Conversations, not_found};
use crate::domain::permissions::{self, Action};
use crate::domain::{Kind, Role};

impl Conversations {
    /// CheckPermission for `user` (the caller itself unless the caller is a service).
    ///
    /// `user_is_admin` says whether `user` is a tenant administrator: a service caller asserts
    /// it for the user it asks about; for a user asking about itself, its own token counts.
    pub async fn check_permission(
        &self,
        caller: &Caller,
        id: Uuid,
        user: &str,
        user_is_admin: bool,
        action: Action,
    ) -> ApiResult<PermissionAnswer> {
        if user != caller.user_id && !caller.is_service {
            return Err(ApiError::PermissionDenied(
                "only a service may check another user's permissions".to_owned(),
            ));
        }
        let user_is_admin = if caller.is_service {
            user_is_admin
        } else {
            caller.is_admin
        };
        let row = self
            .store
            .conversation(&caller.tenant_id, id, false)
            .await?
            .filter(|row| row.deleted_at.is_none())
            .ok_or_else(not_found)?;
        let kind = row.kind;
        let role = self
            .store
            .participant(&caller.tenant_id, id, user)
            .await?
            .map(|participant| participant.role);
        if !caller.is_service && role.is_none() && kind != Kind::Channel && !user_is_admin {
            return Err(not_found());
        }
        let archived = row.archived_at.is_some();
        // A tenant administrator acts as an owner everywhere, as in every other use case.
        let authority = if user_is_admin {
            Some(Role::Owner)
        } else {
            role
        };
        let denial = permissions::check(kind, archived, authority, action).err();
        Ok(PermissionAnswer {
            role,
            denial,
            kind,
            archived,
        })
    }

    /// GetEventHead: makes sure that every committed event has a position (stamping those that
    /// do not yet, and waking the relay to publish them), and returns the newest position. When
    /// none is waiting, which is the common case, that is two reads and no write.
    pub async fn event_head(&self, caller: &Caller) -> ApiResult<i64> {
        if !caller.is_service {
            return Err(ApiError::PermissionDenied(
                "only callers with the service role may read the event head".to_owned(),
            ));
        }
        let (head, stamped) = self.store.event_head().await?;
        if stamped {
            self.bus.committed();
        }
        Ok(head)
    }
}
