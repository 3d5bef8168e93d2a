//! Layered configuration: built-in defaults (serde defaults on each settings struct), then an
//! optional TOML file (`--config PATH` or `MESSAGING_CONFIG`), then environment variables such
//! as `MESSAGING__AUTH__HS256_SECRET` or `MESSAGING__CONVERSATION_SERVICE__LISTEN` (a double
//! underscore separates levels). Settings are parsed into typed structs and passed explicitly.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "MESSAGING";
/// Environment variable naming the configuration file when no `--config` is given.
pub const CONFIG_PATH_VAR: &str = "MESSAGING_CONFIG";

/// Loads settings of type `T` from the layers described in the module documentation.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> anyhow::Result<T> {
    let path = file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CONFIG_PATH_VAR).map(PathBuf::from));
    let mut builder = config::Config::builder();
    if let Some(path) = &path {
        builder = builder.add_source(config::File::from(path.as_path()).required(true));
    }
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true),
    );
    let settings = builder
        .build()
        .map_err(|error| anyhow::anyhow!("configuration: {error}"))?;
    settings.try_deserialize().map_err(|error| {
        let source = path.map_or_else(String::new, |path| format!(" ({})", path.display()));
        anyhow::anyhow!("configuration{source}: {error}")
    })
}

/// A deployment's mode: development allows the well-known development secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Local development: `make run`.
    Development,
    /// Anything else; the safe default.
    #[default]
    Production,
}

/// A string that never appears in logs or `Debug` output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret([redacted])")
    }
}

/// Where a service listens.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address and port to bind; port 0 picks a free port (logged at start).
    pub listen: SocketAddr,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// A `tracing` filter, for example `info` or `info,conversation_service=debug`.
    /// `RUST_LOG` wins when set.
    pub log_filter: String,
    /// `text` for people, `json` for log collectors.
    pub log_format: LogFormat,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_filter: "info".to_owned(),
            log_format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A service's database.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://data/conversation.db` (created if missing) or
    /// `postgres://user:password@host:5432/database`.
    pub url: Secret,
    /// PostgreSQL schema holding this service's tables (created if missing); defaults to the
    /// service's own name. Ignored for SQLite, where each service has its own file.
    pub schema: Option<String>,
    /// Pool size for PostgreSQL. SQLite always uses one connection: it has one writer anyway,
    /// and a single connection rules out lock-upgrade failures.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long to wait for a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// PostgreSQL: how long a request waits for a pooled connection before it answers
    /// UNAVAILABLE (the database unreachable, or the pool exhausted); default 3 s.
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// SQLite only: how hard a commit is made durable (see [`SqliteSynchronous`]).
    #[serde(default)]
    pub sqlite_synchronous: SqliteSynchronous,
}

/// When a SQLite commit reaches the disk (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit is synced before it is acknowledged: no acknowledged write is lost, even
    /// to a power loss (the default).
    #[default]
    Full,
    /// Commits are synced at checkpoints: faster, and safe against a process crash, but a
    /// power loss or OS crash can lose the last acknowledged writes.
    Normal,
}

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout() -> Duration {
    Duration::from_secs(3)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Reads the one optional command-line argument of the service binaries: `--config FILE`.
pub fn file_argument(program: &str) -> anyhow::Result<Option<PathBuf>> {
    let mut arguments = std::env::args().skip(1);
    match (
        arguments.next().as_deref(),
        arguments.next(),
        arguments.next(),
    ) {
        (None, _, _) => Ok(None),
        (Some("--config"), Some(path), None) => Ok(Some(PathBuf::from(path))),
        _ => anyhow::bail!("usage: {program} [--config FILE]"),
    }
}
