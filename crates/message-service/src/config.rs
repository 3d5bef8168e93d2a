//! message-service settings: the shared sections (`mode`, `auth`, `telemetry`) and its own
//! `[message_service]` section. See the README's configuration reference.

use std::net::SocketAddr;
use std::time::Duration;

use messaging_platform::auth::AuthSettings;
use messaging_platform::config::{DatabaseSettings, Mode, Secret, TelemetrySettings};
use serde::Deserialize;

/// Everything the binary reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `development` or `production` (default).
    #[serde(default)]
    pub mode: Mode,
    /// Token verification.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Logging.
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// This service's own section.
    #[serde(default)]
    pub message_service: ServiceSettings,
}

/// The `[message_service]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServiceSettings {
    /// Address to listen on; default `127.0.0.1:50052`.
    pub listen: SocketAddr,
    /// Database; default `sqlite://data/message.db`.
    pub database: DatabaseSettings,
    /// conversation-service's address; default `http://127.0.0.1:50051`.
    pub conversation_service_url: String,
    /// Deadline of each call to conversation-service; default 2 s.
    #[serde(with = "humantime_serde")]
    pub conversation_service_timeout: Duration,
    /// How long permission answers are cached: the longest a removed participant keeps
    /// access; default 2 s.
    #[serde(with = "humantime_serde")]
    pub permission_cache_ttl: Duration,
    /// A `service` token for conversation-service; by default one is minted from
    /// `auth.hs256_secret`.
    pub service_token: Option<Secret>,
    /// Largest message body (text or ciphertext), in bytes; default 16 KiB.
    pub max_body_bytes: usize,
    /// How long after sending a message its author may edit it; unset (the default) means
    /// always.
    #[serde(with = "humantime_serde")]
    pub edit_window: Option<Duration>,
    /// The outbox, relay, streams and NATS (`[message_service.events]`).
    pub events: messaging_outbox::EventSettings,
    /// How long a shutdown waits for in-flight calls and background tasks after open streams
    /// were ended (with their resume position); default 10 s.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Open streams and write rates per user and tenant (`[message_service.limits]`).
    pub limits: crate::limits::LimitSettings,
    /// Least time between two typing indicators of one user in one conversation; default 1 s.
    #[serde(with = "humantime_serde")]
    pub typing_interval: Duration,
    /// Encryption at rest (`[message_service.encryption]`).
    pub encryption: crate::store::keys::EncryptionSettings,
    /// Attachments: limits, object storage and the scanner (`[message_service.attachments]`).
    pub attachments: crate::blobs::AttachmentSettings,
    /// Erasure jobs and retention (`[message_service.compliance]`).
    pub compliance: ComplianceSettings,
    /// The grouped write path of SendMessage (`[message_service.writes]`).
    pub writes: WriteSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
            database: DatabaseSettings {
                url: Secret::new("sqlite://data/message.db"),
                schema: None,
                max_connections: 16,
                connect_timeout: Duration::from_secs(10),
                acquire_timeout: Duration::from_secs(3),
                sqlite_synchronous: Default::default(),
            },
            conversation_service_url: "http://127.0.0.1:50051".to_owned(),
            conversation_service_timeout: Duration::from_secs(2),
            permission_cache_ttl: Duration::from_secs(2),
            service_token: None,
            max_body_bytes: 16 * 1024,
            edit_window: None,
            events: messaging_outbox::EventSettings::default(),
            drain_timeout: Duration::from_secs(10),
            limits: crate::limits::LimitSettings::default(),
            typing_interval: Duration::from_secs(1),
            encryption: crate::store::keys::EncryptionSettings::default(),
            attachments: crate::blobs::AttachmentSettings::default(),
            compliance: ComplianceSettings::default(),
            writes: WriteSettings::default(),
        }
    }
}

/// The grouped write path (`[message_service.writes]`): sends that arrive while a commit is in
/// flight are written together in the next transaction, each conversation's sequence advanced
/// once per batch. A batch closes when its writer's previous commit returns, so a lone send
/// waits for nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteSettings {
    /// Transactions that may be in flight at once on PostgreSQL, each of its own
    /// conversations (a conversation's sends are always written by the same writer); default
    /// 2. Fewer writers make larger batches; SQLite, one connection, always has one.
    pub writers: usize,
    /// Most sends in one transaction; default 256. 1 turns grouping off.
    pub max_batch: usize,
}

impl Default for WriteSettings {
    fn default() -> Self {
        Self {
            writers: 2,
            max_batch: 256,
        }
    }
}

/// Compliance (`[message_service.compliance]`): erasure jobs and retention.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComplianceSettings {
    /// Rows one erasure or retention batch (one transaction) handles; default 200.
    pub batch_size: u64,
    /// How often retention runs, and unfinished erasures (after a failure) are retried;
    /// default 1 minute.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// For tests of resumption: after this many batches in this process, erasures stop as if
    /// the process died (they resume at the next start). Not configurable.
    #[serde(skip)]
    pub halt_after_batches: Option<u64>,
}

impl Default for ComplianceSettings {
    fn default() -> Self {
        Self {
            batch_size: 200,
            interval: Duration::from_secs(60),
            halt_after_batches: None,
        }
    }
}
