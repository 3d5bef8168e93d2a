//! JWT authentication and the caller's identity.
//!
//! Every RPC but health and reflection carries `authorization: Bearer <JWT>` with the claims
//! `sub` (user id), `tenant_id`, `exp` and optionally `roles` (`admin`: tenant administrator;
//! `service`: another backend acting for users). Tokens are verified with an HS256 secret and/or
//! Ed25519/RSA/ECDSA public keys from configuration.
//!
//! A `service` caller names the user it acts for in the `x-messaging-user-id` header (its own
//! `sub` otherwise) and the tenant in `x-messaging-tenant-id`. A service token whose `tenant_id`
//! is `*` may act in any tenant and must send that header; one bound to a tenant may only act
//! in it. An id that is not printable ASCII (`josé`) travels in the binary form of the header
//! instead (`x-messaging-user-id-bin`, its UTF-8 bytes; see [`put_id_header`]). Interceptors
//! put the resulting [`Caller`] into the request extensions.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::config::{Mode, Secret};
use crate::error::ApiError;
use crate::validate::principal_id_problem;

/// The HS256 secret of `deploy/dev.toml`. Services refuse to start with it outside
/// development mode.
pub const DEVELOPMENT_HS256_SECRET: &str = "messaging-development-secret-never-use-in-production";
/// Header in which a `service` caller names the tenant it acts in.
pub const TENANT_HEADER: &str = "x-messaging-tenant-id";
/// Header in which a `service` caller names the user it acts for.
pub const USER_HEADER: &str = "x-messaging-user-id";
/// `tenant_id` claim of a service token that may act in every tenant.
pub const ANY_TENANT: &str = "*";
/// Role claim of tenant administrators.
pub const ROLE_ADMIN: &str = "admin";
/// Role claim of backend services.
pub const ROLE_SERVICE: &str = "service";

/// Shortest HS256 secret accepted outside development (bytes).
const MIN_SECRET_BYTES: usize = 32;

/// Verification keys and rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// Shared secret for HS256 tokens (at least 32 bytes outside development).
    pub hs256_secret: Option<Secret>,
    /// Public keys for asymmetric tokens.
    pub public_keys: Vec<PublicKeySettings>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`; 30 s by default.
    #[serde(with = "humantime_serde")]
    pub leeway: Option<Duration>,
    /// Longest time from now to a token's `exp` that is accepted; 30 days by default, so that
    /// no token is valid forever.
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Option<Duration>,
}

/// Default of `auth.max_token_lifetime`.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// One public verification key.
#[derive(Debug, Clone, Deserialize)]
pub struct PublicKeySettings {
    /// `EdDSA`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256` or `ES384`.
    pub algorithm: Algorithm,
    /// The PEM text of the public key, or
    pub pem: Option<String>,
    /// a file holding it.
    pub pem_file: Option<std::path::PathBuf>,
    /// When set, only tokens whose header `kid` equals it are checked against this key.
    pub key_id: Option<String>,
}

/// The claims this product reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The tenant id (`*` for a service token valid in every tenant).
    pub tenant_id: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before, seconds since the Unix epoch (checked with the leeway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// `admin` and/or `service`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Who is calling: the authenticated identity every handler works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant every read and write is confined to.
    pub tenant_id: crate::TenantId,
    /// The acting user (for a service caller: the user it acts for).
    pub user_id: crate::UserId,
    /// A tenant administrator.
    pub is_admin: bool,
    /// Another backend service.
    pub is_service: bool,
}

impl Caller {
    /// The caller stored in a request's extensions by the authentication interceptor, acting
    /// in one tenant.
    pub fn from_request<T>(request: &Request<T>) -> Result<Self, ApiError> {
        let caller = Self::from_request_any_tenant(request)?;
        if caller.spans_every_tenant() {
            return Err(ApiError::Unauthenticated(format!(
                "this call acts in one tenant: send its id in {TENANT_HEADER}"
            )));
        }
        Ok(caller)
    }

    /// Like [`Caller::from_request`], but also admits a service acting for every tenant
    /// (`x-messaging-tenant-id: *`), for the few service RPCs that span tenants.
    pub fn from_request_any_tenant<T>(request: &Request<T>) -> Result<Self, ApiError> {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthenticated("missing credentials".to_owned()))
    }

    /// A service acting for every tenant at once.
    pub fn spans_every_tenant(&self) -> bool {
        self.is_service && self.tenant_id == ANY_TENANT
    }
}

struct VerificationKey {
    algorithm: Algorithm,
    key_id: Option<String>,
    key: DecodingKey,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    keys: Vec<VerificationKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_lifetime: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Authenticator {
    /// Builds the verifier; fails when no key is configured, when a key cannot be read, or when
    /// the development secret (or a short secret) is used outside development mode.
    pub fn from_settings(settings: &AuthSettings, mode: Mode) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        if let Some(secret) = &settings.hs256_secret {
            if mode != Mode::Development {
                anyhow::ensure!(
                    secret.expose() != DEVELOPMENT_HS256_SECRET,
                    "auth.hs256_secret is the development secret; set mode = \"development\" or \
                     configure a real secret"
                );
                anyhow::ensure!(
                    secret.expose().len() >= MIN_SECRET_BYTES,
                    "auth.hs256_secret must be at least {MIN_SECRET_BYTES} bytes"
                );
            }
            keys.push(VerificationKey {
                algorithm: Algorithm::HS256,
                key_id: None,
                key: DecodingKey::from_secret(secret.expose().as_bytes()),
            });
        }
        for (index, public_key) in settings.public_keys.iter().enumerate() {
            let pem = match (&public_key.pem, &public_key.pem_file) {
                (Some(pem), _) => pem.clone(),
                (None, Some(path)) => std::fs::read_to_string(path).map_err(|error| {
                    anyhow::anyhow!("auth.public_keys[{index}]: {}: {error}", path.display())
                })?,
                (None, None) => anyhow::bail!("auth.public_keys[{index}]: set pem or pem_file"),
            };
            let key = match public_key.algorithm {
                Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem.as_bytes()),
                other => anyhow::bail!(
                    "auth.public_keys[{index}]: {other:?} is not a public-key algorithm"
                ),
            }
            .map_err(|error| anyhow::anyhow!("auth.public_keys[{index}]: {error}"))?;
            keys.push(VerificationKey {
                algorithm: public_key.algorithm,
                key_id: public_key.key_id.clone(),
                key,
            });
        }
        anyhow::ensure!(
            !keys.is_empty(),
            "no token verification key: set auth.hs256_secret or auth.public_keys"
        );
        Ok(Self {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway.unwrap_or(Duration::from_secs(30)),
            max_lifetime: settings
                .max_token_lifetime
                .unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME),
        })
    }

    /// Authenticates a request from its metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, ApiError> {
        let unauthenticated = |message: &str| ApiError::Unauthenticated(message.to_owned());
        let header = metadata
            .get("authorization")
            .ok_or_else(|| unauthenticated("missing authorization metadata"))?
            .to_str()
            .map_err(|_| unauthenticated("authorization metadata is not text"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| unauthenticated("authorization must be \"Bearer <token>\""))?
            .trim();
        let claims = self.verify(token)?;
        caller_from_claims(claims, metadata)
    }

    fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::Unauthenticated("malformed token".to_owned()))?;
        let mut last_error = None;
        for key in self.keys.iter().filter(|key| key.algorithm == header.alg) {
            if let (Some(expected), Some(actual)) = (&key.key_id, &header.kid)
                && expected != actual
            {
                continue;
            }
            let mut validation = Validation::new(key.algorithm);
            validation.leeway = self.leeway.as_secs();
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "sub"]);
            if let Some(issuer) = &self.issuer {
                validation.set_issuer(&[issuer]);
            }
            match &self.audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_secs());
                    if data.claims.exp.saturating_sub(now) > self.max_lifetime.as_secs() {
                        return Err(ApiError::Unauthenticated(
                            "token lifetime exceeds auth.max_token_lifetime".to_owned(),
                        ));
                    }
                    return Ok(data.claims);
                }
                Err(error) => last_error = Some(error),
            }
        }
        let message = match last_error.as_ref().map(jsonwebtoken::errors::Error::kind) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => "token expired",
            Some(jsonwebtoken::errors::ErrorKind::ImmatureSignature) => "token not valid yet (nbf)",
            Some(jsonwebtoken::errors::ErrorKind::InvalidSignature) => "bad token signature",
            Some(jsonwebtoken::errors::ErrorKind::InvalidIssuer) => "wrong token issuer",
            Some(jsonwebtoken::errors::ErrorKind::InvalidAudience) => "wrong token audience",
            Some(_) => "invalid token",
            None => "no key for the token's algorithm",
        };
        Err(ApiError::Unauthenticated(message.to_owned()))
    }

    /// A tonic interceptor that authenticates every request and stores the [`Caller`].
    pub fn interceptor(
        self: &Arc<Self>,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static
    {
        let authenticator = Arc::clone(self);
        move |mut request: Request<()>| {
            let caller = authenticator.authenticate(request.metadata())?;
            request.extensions_mut().insert(caller);
            Ok(request)
        }
    }
}

/// An id header: `name` as text, or `name-bin` holding UTF-8 (for ids that are not printable
/// ASCII, which text metadata cannot carry).
fn header_value(metadata: &MetadataMap, name: &str) -> Result<Option<String>, ApiError> {
    let binary = format!("{name}-bin");
    if let Some(value) = metadata.get_bin(binary.as_str()) {
        let bytes = value
            .to_bytes()
            .map_err(|_| ApiError::Unauthenticated(format!("{binary} is not base64")))?;
        return String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| ApiError::Unauthenticated(format!("{binary} is not UTF-8")));
    }
    metadata
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::Unauthenticated(format!("{name} is not text")))
        })
        .transpose()
}

/// Puts an id header for a service call: `name` when `id` is printable ASCII, else its binary
/// form `name-bin` (which [`Authenticator`] reads the same way).
pub fn put_id_header(metadata: &mut MetadataMap, name: &'static str, id: &str) {
    let printable = id.bytes().all(|byte| (0x20..0x7f).contains(&byte));
    if printable && let Ok(value) = id.parse() {
        metadata.insert(name, value);
        return;
    }
    if let Ok(key) =
        tonic::metadata::BinaryMetadataKey::from_bytes(format!("{name}-bin").as_bytes())
    {
        metadata.insert_bin(
            key,
            tonic::metadata::BinaryMetadataValue::from_bytes(id.as_bytes()),
        );
    }
}

fn caller_from_claims(claims: Claims, metadata: &MetadataMap) -> Result<Caller, ApiError> {
    let is_service = claims.roles.iter().any(|role| role == ROLE_SERVICE);
    let is_admin = claims.roles.iter().any(|role| role == ROLE_ADMIN);
    let invalid = |what: &str, problem: &str| {
        ApiError::Unauthenticated(format!("token {what} is invalid: {problem}"))
    };
    if let Some(problem) = principal_id_problem(&claims.sub) {
        return Err(invalid("sub", problem));
    }
    let claims_any_tenant = claims.tenant_id == ANY_TENANT;
    let (tenant_id, user_id) = if is_service {
        let tenant = match (
            claims.tenant_id.as_str(),
            header_value(metadata, TENANT_HEADER)?,
        ) {
            (ANY_TENANT, Some(header)) => header,
            (ANY_TENANT, None) => {
                return Err(ApiError::Unauthenticated(format!(
                    "a service token for every tenant must send {TENANT_HEADER}"
                )));
            }
            (bound, Some(header)) if bound != header => {
                return Err(ApiError::PermissionDenied(format!(
                    "this service token may act in tenant {bound} only"
                )));
            }
            (bound, _) => bound.to_owned(),
        };
        let user = header_value(metadata, USER_HEADER)?.unwrap_or_else(|| claims.sub.clone());
        (tenant, user)
    } else {
        (claims.tenant_id, claims.sub)
    };
    let every_tenant = is_service && claims_any_tenant && tenant_id == ANY_TENANT;
    // `*` names every tenant for service tokens only; it is never a tenant of its own.
    if tenant_id == ANY_TENANT && !every_tenant {
        return Err(ApiError::Unauthenticated(
            "tenant `*` is reserved for service tokens acting in every tenant".to_owned(),
        ));
    }
    if let Some(problem) = principal_id_problem(&tenant_id).filter(|_| !every_tenant) {
        return Err(invalid("tenant", problem));
    }
    if let Some(problem) = principal_id_problem(&user_id) {
        return Err(invalid("user", problem));
    }
    Ok(Caller {
        tenant_id: crate::TenantId::trusted(tenant_id),
        user_id: crate::UserId::trusted(user_id),
        is_admin,
        is_service,
    })
}

/// Signs HS256 tokens with the configured secret: for `messagingctl token`, tests, and the
/// service-to-service hop.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

impl TokenIssuer {
    /// Uses `auth.hs256_secret`; fails when none is configured.
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let secret = settings
            .hs256_secret
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("auth.hs256_secret is not configured"))?;
        Ok(Self {
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// A token for `user` in `tenant` with `roles`, valid for `lifetime`.
    pub fn issue(
        &self,
        tenant: &str,
        user: &str,
        roles: &[&str],
        lifetime: Duration,
    ) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        self.sign(&Claims {
            sub: user.to_owned(),
            tenant_id: tenant.to_owned(),
            exp: now + lifetime.as_secs(),
            iat: Some(now),
            nbf: None,
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        })
    }

    /// Signs arbitrary claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.key,
        )?)
    }
}

/// A client interceptor that adds `authorization: Bearer <token>` to every call (for the tools
/// and the load generator, which call the services as a client would).
#[derive(Clone)]
pub struct Bearer(tonic::metadata::AsciiMetadataValue);

impl Bearer {
    /// The interceptor for `token`; `None` when the token is not a valid header value.
    pub fn new(token: &str) -> Option<Self> {
        format!("Bearer {token}").parse().ok().map(Self)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}
