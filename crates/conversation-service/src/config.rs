//! conversation-service settings: the shared sections (`mode`, `auth`, `telemetry`) and its own
//! `[conversation_service]` section. See the README's configuration reference.

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
    pub conversation_service: ServiceSettings,
}

/// The `[conversation_service]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServiceSettings {
    /// Address to listen on; default `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// Database; default `sqlite://data/conversation.db`.
    pub database: DatabaseSettings,
    /// How long a deleted conversation can be restored; default 30 days.
    #[serde(with = "humantime_serde")]
    pub undelete_window: Duration,
    /// How often expired deleted conversations are purged; default 1 hour.
    #[serde(with = "humantime_serde")]
    pub purge_interval: Duration,
    /// Most participants per conversation; default 10,000.
    pub max_participants: u32,
    /// The outbox, relay, WatchEvents streams and NATS (`[conversation_service.events]`).
    pub events: messaging_outbox::EventSettings,
    /// How long a shutdown waits for in-flight calls and background tasks after open streams
    /// were ended (with their resume position); default 10 s.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database: DatabaseSettings {
                url: Secret::new("sqlite://data/conversation.db"),
                schema: None,
                max_connections: 16,
                connect_timeout: Duration::from_secs(10),
                acquire_timeout: Duration::from_secs(3),
                sqlite_synchronous: Default::default(),
            },
            undelete_window: Duration::from_secs(30 * 24 * 3600),
            purge_interval: Duration::from_secs(3600),
            max_participants: 10_000,
            events: messaging_outbox::EventSettings::default(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}
