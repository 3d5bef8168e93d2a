//! conversation-service as message-service sees it: who may do what in a conversation.
//!
//! Answers of CheckPermission (allowed or not, and NOT_FOUND) are cached per tenant,
//! conversation, user and action, grouped by conversation: conversation-service's events drop a
//! conversation's answers as soon as its membership or state changes (see `crate::jobs::membership`),
//! and `permission_cache_ttl` (2 s by default) bounds how stale an answer can be while those
//! events do not arrive. Every call carries a
//! deadline, acts for the caller through a `service` token with the caller's tenant and user in
//! headers, and fails closed: when conversation-service cannot answer, the request fails with
//! UNAVAILABLE and nothing is allowed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use messaging_platform::auth::{
    ANY_TENANT, ROLE_SERVICE, TENANT_HEADER, TokenIssuer, USER_HEADER, put_id_header,
};
use messaging_platform::config::Secret;
use messaging_platform::{ApiError, ApiResult, Caller};
use messaging_proto::conversation::v1 as pb;
use pb::conversation_service_client::ConversationServiceClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

mod directory;
mod fence;
mod joined;

pub use directory::{Directory, Membership};
use fence::run_fences;
use joined::JoinedList;
use pb::Action as WireAction;
pub use pb::{ConversationType, DenialReason, Role};

use crate::domain::Action;

/// What conversation-service said about one user, conversation and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The conversation does not exist for this tenant (or is deleted).
    NotFound,
    /// The decision, with the facts it rests on.
    Decided {
        /// Allowed or not.
        allowed: bool,
        /// The user's role, `Unspecified` for non-participants.
        role: Role,
        /// Why not.
        denial: DenialReason,
        /// The conversation's type.
        kind: ConversationType,
    },
}

/// How the service authenticates to conversation-service.
#[derive(Clone)]
pub enum ServiceCredentials {
    /// A fixed token from configuration.
    Token(Secret),
    /// Tokens minted from the HS256 secret, renewed before they expire.
    Minted(TokenIssuer),
}

/// One conversation's cached answers, by user, action and administrator flag, with the
/// generation that invalidations advance: an answer fetched before an invalidation is not
/// stored after it.
#[derive(Debug, Default)]
struct ConversationAnswers {
    generation: u64,
    answers: HashMap<(String, i32, bool), (Answer, Instant)>,
}

type Answers = Arc<Mutex<ConversationAnswers>>;

struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// The permission gate in front of every message RPC.
#[derive(Clone)]
pub struct ConversationGate {
    client: ConversationServiceClient<Channel>,
    credentials: ServiceCredentials,
    token: Arc<Mutex<Option<CachedToken>>>,
    /// Per tenant and conversation, the answers by user and action: one entry per
    /// conversation, so a membership event drops all of a conversation's answers in O(1).
    /// Each answer expires on its own, within `permission_cache_ttl` of being fetched, at a
    /// spread-out moment (75 to 100% of the TTL), so that the answers of many readers of one
    /// conversation are not all fetched again at the same instant.
    cache: moka::sync::Cache<(String, Uuid), Answers>,
    /// Per tenant and user, the conversations it participates in (for unread counts, search
    /// and streams), for the same TTL; a participant event about the user drops its list, a
    /// conversation update or deletion drops every list.
    joined: moka::sync::Cache<(String, String), Arc<JoinedList>>,
    /// Advanced by every invalidation of `joined`: a list fetched across one is not stored.
    joined_generation: Arc<std::sync::atomic::AtomicU64>,
    ttl: Duration,
    timeout: Duration,
    /// How far this replica has followed conversation-service's events (see `crate::jobs::membership`).
    followed: tokio::sync::watch::Sender<i64>,
    /// Requests waiting for the next fence (see [`ConversationGate::fence`]).
    fences: tokio::sync::mpsc::UnboundedSender<FenceWaiter>,
}

/// A request waiting for a fence: told `Err(reason)` when it failed.
type FenceWaiter = tokio::sync::oneshot::Sender<Result<(), String>>;

impl std::fmt::Debug for ConversationGate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ConversationGate")
            .field("timeout", &self.timeout)
            .finish()
    }
}

const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

impl ConversationGate {
    /// A gate talking to `url` (connected lazily, so start-up does not depend on the peer).
    pub fn new(
        url: &str,
        credentials: ServiceCredentials,
        cache_ttl: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .connect_lazy();
        let (fences, waiting) = tokio::sync::mpsc::unbounded_channel();
        let gate = Self {
            client: ConversationServiceClient::new(channel),
            credentials,
            token: Arc::new(Mutex::new(None)),
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(cache_ttl.max(Duration::from_millis(1)) * 2)
                .build(),
            joined: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl.max(Duration::from_millis(1)))
                .build(),
            joined_generation: Arc::default(),
            ttl: cache_ttl,
            timeout,
            followed: tokio::sync::watch::Sender::new(-1),
            fences,
        };
        // The task's copy of the gate holds no sender of the queue, so the task ends when the
        // last gate does.
        let mut prober = gate.clone();
        prober.fences = tokio::sync::mpsc::unbounded_channel().0;
        tokio::spawn(run_fences(prober, waiting));
        Ok(gate)
    }

    fn token(&self) -> ApiResult<String> {
        match &self.credentials {
            ServiceCredentials::Token(secret) => Ok(secret.expose().to_owned()),
            ServiceCredentials::Minted(issuer) => {
                let mut cached = self
                    .token
                    .lock()
                    .map_err(|_| ApiError::internal(anyhow::anyhow!("token lock poisoned")))?;
                if let Some(token) = cached
                    .as_ref()
                    .filter(|token| token.renew_at > Instant::now())
                {
                    return Ok(token.value.clone());
                }
                let value = issuer
                    .issue(
                        ANY_TENANT,
                        "message-service",
                        &[ROLE_SERVICE],
                        TOKEN_LIFETIME,
                    )
                    .map_err(ApiError::internal)?;
                *cached = Some(CachedToken {
                    value: value.clone(),
                    renew_at: Instant::now() + TOKEN_LIFETIME / 2,
                });
                Ok(value)
            }
        }
    }

    fn request<T>(&self, tenant: &str, user: &str, message: T) -> ApiResult<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        let metadata = request.metadata_mut();
        let header = |value: &str| {
            value
                .parse()
                .map_err(|_| ApiError::internal(anyhow::anyhow!("id is not a valid header value")))
        };
        metadata.insert(
            "authorization",
            header(&format!("Bearer {}", self.token()?))?,
        );
        put_id_header(metadata, TENANT_HEADER, tenant);
        put_id_header(metadata, USER_HEADER, user);
        Ok(request)
    }

    /// Whether `user` of `tenant` (a tenant administrator when `admin`) may perform `action` in
    /// `conversation` (cached; call [`Self::fence`] first to see every acknowledged change).
    pub async fn check(
        &self,
        tenant: &str,
        user: &str,
        admin: bool,
        conversation: Uuid,
        action: WireAction,
    ) -> ApiResult<Answer> {
        let answers = self
            .cache
            .get_with((tenant.to_owned(), conversation), Default::default);
        let key = (user.to_owned(), action as i32, admin);
        let now = Instant::now();
        // One look under the lock: the cached answer, or the generation a fetch starts from.
        let generation = {
            let entry = answers
                .lock()
                .map_err(|_| ApiError::internal(anyhow::anyhow!("cache lock poisoned")))?;
            if let Some((answer, _)) = entry
                .answers
                .get(&key)
                .filter(|(_, expires)| *expires > now)
            {
                return Ok(*answer);
            }
            entry.generation
        };
        let message = pb::CheckPermissionRequest {
            conversation_id: conversation.to_string(),
            user_id: user.to_owned(),
            action: action.into(),
            user_roles: if admin {
                vec![messaging_platform::auth::ROLE_ADMIN.to_owned()]
            } else {
                Vec::new()
            },
        };
        let answer = match self
            .client
            .clone()
            .check_permission(self.request(tenant, user, message)?)
            .await
        {
            Ok(response) => {
                let response = response.into_inner();
                Answer::Decided {
                    allowed: response.allowed,
                    role: response.role(),
                    denial: response.denial_reason(),
                    kind: response.conversation_type(),
                }
            }
            Err(status) if status.code() == Code::NotFound => Answer::NotFound,
            Err(status) => return Err(unavailable(&status)),
        };
        // 75 to 100% of the TTL, spread by a random fraction.
        let spread = f64::from(uuid::Uuid::new_v4().as_u128() as u16) / f64::from(u16::MAX);
        let expires = now + self.ttl.mul_f64(0.75 + 0.25 * spread);
        if let Ok(mut entry) = answers.lock()
            && entry.generation == generation
        {
            entry.answers.insert(key, (answer, expires));
        }
        Ok(answer)
    }

    /// Requires that the caller may perform `action`, mapping a refusal to the error a client
    /// should see: NOT_FOUND when the conversation is invisible to the caller (unknown, deleted,
    /// another tenant, or a group or direct conversation it is not in), PERMISSION_DENIED for a
    /// visible conversation where its role is too low (or a channel it has not joined),
    /// FAILED_PRECONDITION when archived.
    ///
    /// Fences first (see [`Self::fence`]): every change conversation-service acknowledged
    /// before the call counts.
    pub async fn require(
        &self,
        caller: &Caller,
        conversation: Uuid,
        action: Action,
    ) -> ApiResult<Role> {
        self.fence().await?;
        self.require_fenced(caller, conversation, action).await
    }

    /// [`Self::require`] after the caller fenced.
    pub async fn require_fenced(
        &self,
        caller: &Caller,
        conversation: Uuid,
        action: Action,
    ) -> ApiResult<Role> {
        let action = wire(action);
        match self
            .check(
                &caller.tenant_id,
                &caller.user_id,
                caller.is_admin,
                conversation,
                action,
            )
            .await?
        {
            Answer::NotFound => Err(ApiError::NotFound("conversation")),
            Answer::Decided {
                allowed: true,
                role,
                ..
            } => Ok(role),
            Answer::Decided {
                denial: DenialReason::NotParticipant,
                kind,
                ..
            } => {
                if kind == ConversationType::Channel {
                    Err(ApiError::PermissionDenied(
                        "join the channel first".to_owned(),
                    ))
                } else {
                    Err(ApiError::NotFound("conversation"))
                }
            }
            Answer::Decided {
                denial: DenialReason::Archived,
                ..
            } => Err(ApiError::FailedPrecondition(
                "the conversation is archived".to_owned(),
            )),
            Answer::Decided {
                denial: DenialReason::NotSupported,
                ..
            } => Err(ApiError::FailedPrecondition(
                "not supported for this type of conversation".to_owned(),
            )),
            Answer::Decided { .. } => Err(ApiError::PermissionDenied(format!(
                "your role may not {} here",
                action_verb(action)
            ))),
        }
    }

    /// Forgets every cached answer about `conversation`: its membership or state changed.
    pub fn invalidate_conversation(&self, tenant: &str, conversation: Uuid) {
        if let Some(answers) = self.cache.get(&(tenant.to_owned(), conversation))
            && let Ok(mut entry) = answers.lock()
        {
            entry.generation += 1;
            entry.answers.clear();
        }
    }

    /// Forgets every cached answer (after missing events, for example).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
        self.invalidate_joined(None);
    }

    /// Forgets what a conversation-service event makes stale: the answers about its
    /// conversation, and the conversation lists it may change.
    pub fn invalidate_for(&self, event: &messaging_outbox::contract::Event) {
        use messaging_outbox::contract::event::Payload;
        let Ok(conversation) = Uuid::parse_str(&event.conversation_id) else {
            return;
        };
        self.invalidate_conversation(&event.tenant_id, conversation);
        match &event.payload {
            Some(
                Payload::ParticipantAdded(change)
                | Payload::ParticipantRemoved(change)
                | Payload::ParticipantRoleChanged(change),
            ) => self.invalidate_joined(Some((event.tenant_id.clone(), change.user_id.clone()))),
            // Deleted, purged, or restored (an update): whose lists change is not in the event.
            Some(
                Payload::ConversationDeleted(_)
                | Payload::ConversationPurged(_)
                | Payload::ConversationUpdated(_),
            ) => {
                self.invalidate_joined(None);
            }
            _ => {}
        }
    }

    /// Opens conversation-service's WatchEvents stream for every tenant, after `after`.
    pub async fn watch_events(
        &self,
        after: i64,
    ) -> Result<tonic::Streaming<pb::WatchEventsResponse>, tonic::Status> {
        let message = pb::WatchEventsRequest {
            after_position: after.to_string(),
        };
        let mut request = self
            .request(ANY_TENANT, "message-service", message)
            .map_err(tonic::Status::from)?;
        // A stream has no deadline; the connection's keep-alive notices a dead peer.
        request.metadata_mut().remove("grpc-timeout");
        Ok(self
            .client
            .clone()
            .watch_events(request)
            .await?
            .into_inner())
    }

    /// Whether `user` participates in `conversation` (for validating mentions).
    pub async fn is_participant(
        &self,
        tenant: &str,
        user: &str,
        conversation: Uuid,
    ) -> ApiResult<bool> {
        Ok(matches!(
            self.check(tenant, user, false, conversation, WireAction::Read).await?,
            Answer::Decided { role, .. } if role != Role::Unspecified
        ))
    }
}

/// A use case's action as conversation-service names it.
fn wire(action: Action) -> WireAction {
    match action {
        Action::Read => WireAction::Read,
        Action::Post => WireAction::Post,
        Action::React => WireAction::React,
        Action::Moderate => WireAction::Moderate,
    }
}

/// What the use cases need from conversation-service: permission checks after a fence, and
/// the conversations a user participates in. [`ConversationGate`] is the gRPC implementation.
#[async_trait::async_trait]
pub trait Permissions: Send + Sync + std::fmt::Debug {
    /// Waits until every change conversation-service acknowledged before the call is visible
    /// here (see [`ConversationGate::fence`]).
    async fn fence(&self) -> ApiResult<()>;

    /// Requires that `caller` may perform `action` in `conversation`, after a fence: NOT_FOUND
    /// when the conversation is invisible to it, PERMISSION_DENIED when its role is too low,
    /// FAILED_PRECONDITION when archived.
    async fn require(&self, caller: &Caller, conversation: Uuid, action: Action) -> ApiResult<()>;

    /// [`Permissions::require`] when the caller fenced already.
    async fn require_fenced(
        &self,
        caller: &Caller,
        conversation: Uuid,
        action: Action,
    ) -> ApiResult<()>;

    /// Whether `user` participates in `conversation`.
    async fn is_participant(&self, tenant: &str, user: &str, conversation: Uuid)
    -> ApiResult<bool>;

    /// Every conversation `caller` participates in, at most `limit`, after a fence.
    async fn joined_conversations(&self, caller: &Caller, limit: usize) -> ApiResult<Vec<Uuid>>;
}

#[async_trait::async_trait]
impl Permissions for ConversationGate {
    async fn fence(&self) -> ApiResult<()> {
        ConversationGate::fence(self).await
    }

    async fn require(&self, caller: &Caller, conversation: Uuid, action: Action) -> ApiResult<()> {
        ConversationGate::require(self, caller, conversation, action)
            .await
            .map(|_| ())
    }

    async fn require_fenced(
        &self,
        caller: &Caller,
        conversation: Uuid,
        action: Action,
    ) -> ApiResult<()> {
        ConversationGate::require_fenced(self, caller, conversation, action)
            .await
            .map(|_| ())
    }

    async fn is_participant(
        &self,
        tenant: &str,
        user: &str,
        conversation: Uuid,
    ) -> ApiResult<bool> {
        ConversationGate::is_participant(self, tenant, user, conversation).await
    }

    async fn joined_conversations(&self, caller: &Caller, limit: usize) -> ApiResult<Vec<Uuid>> {
        ConversationGate::joined_conversations(self, caller, limit).await
    }
}

fn action_verb(action: WireAction) -> &'static str {
    match action {
        WireAction::Read | WireAction::Unspecified => "read",
        WireAction::Post => "post",
        WireAction::React => "react",
        WireAction::Moderate => "moderate",
        WireAction::ManageParticipants => "manage participants",
        WireAction::Update => "update the conversation",
        WireAction::Archive => "archive",
        WireAction::Delete => "delete the conversation",
        WireAction::TransferOwnership => "transfer ownership",
    }
}

fn unavailable(status: &tonic::Status) -> ApiError {
    tracing::warn!(code = ?status.code(), message = status.message(), "conversation-service call failed");
    ApiError::Unavailable("conversation-service is unavailable; retry later".to_owned())
}
