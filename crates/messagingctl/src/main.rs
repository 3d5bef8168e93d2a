//! `messagingctl`: the operator CLI.
//!
//! `messagingctl token --tenant T --user U [--admin] [--service]` prints a token signed with the
//! configured HS256 secret (`--config FILE`, `MESSAGING_CONFIG`, or `MESSAGING__*` variables),
//! so the README's `buf curl` and grpcurl examples work by copy and paste.
//!
//! `messagingctl keys status|rotate|reencrypt` manages message-service's encryption at rest
//! against its database (the `[message_service]` section: database and encryption settings).
//!
//! `messagingctl export --tenant T --user U --out FILE` writes a user's data as JSON Lines
//! (over gRPC, as a tenant administrator); `messagingctl retention status` shows what
//! retention and conversation purges still have to delete (against the database).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use messaging_platform::auth::{AuthSettings, ROLE_ADMIN, ROLE_SERVICE, TokenIssuer};
use messaging_platform::config::Mode;
use serde::Deserialize;

mod export;
mod keys;
mod retention;

#[derive(Parser)]
#[command(
    name = "messagingctl",
    about = "Operator CLI for the messaging services"
)]
struct Cli {
    /// Configuration file (TOML); defaults to $MESSAGING_CONFIG.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a bearer token signed with auth.hs256_secret.
    Token {
        /// The tenant id (`*` with --service: every tenant).
        #[arg(long)]
        tenant: String,
        /// The user id (the `sub` claim).
        #[arg(long)]
        user: String,
        /// Adds the `admin` role (tenant administrator).
        #[arg(long)]
        admin: bool,
        /// Adds the `service` role (a backend acting for users).
        #[arg(long)]
        service: bool,
        /// Lifetime, for example `1h` or `30d`.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Encryption at rest of message-service: key versions and re-encryption.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Exports everything stored about a user (GDPR art. 15 and 20) as JSON Lines, with the
    /// attachments' bytes in FILE.attachments/.
    Export(export::ExportArgs),
    /// Retention: what is due.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Per stored policy: the messages and tombstones the next round would purge; and the
    /// purged conversations whose messages are still being deleted.
    Status {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Prints a new random master key (32 bytes, base64) for message_service.encryption.
    NewMasterKey,
    /// Per tenant: the newest data key version and how many rows still use older ones.
    Status {
        /// Only this tenant (default: every tenant with keys).
        #[arg(long)]
        tenant: Vec<String>,
    },
    /// Adds a new data key version (new writes use it at once), then re-encrypts older rows.
    Rotate {
        /// Only this tenant (default: every tenant with keys).
        #[arg(long)]
        tenant: Vec<String>,
        /// Only add the new version; re-encrypt later with `keys reencrypt`.
        #[arg(long)]
        no_reencrypt: bool,
        /// Rows per transaction.
        #[arg(long, default_value_t = 200)]
        batch: u64,
    },
    /// Re-encrypts rows of older key versions with the newest one; resumable at any time.
    Reencrypt {
        /// Only this tenant (default: every tenant with keys).
        #[arg(long)]
        tenant: Vec<String>,
        /// Rows per transaction.
        #[arg(long, default_value_t = 200)]
        batch: u64,
    },
}

/// The part of the deployment settings this tool reads.
#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    auth: AuthSettings,
    #[serde(default)]
    message_service: message_service::admin::ServiceSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = messaging_platform::config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Keys { command } => keys::run(&settings, command).await?,
        Command::Export(args) => export::run(&settings, args).await?,
        Command::Retention { command } => retention::run(&settings, command).await?,
        Command::Token {
            tenant,
            user,
            admin,
            service,
            ttl,
        } => {
            let mut roles = Vec::new();
            if admin {
                roles.push(ROLE_ADMIN);
            }
            if service {
                roles.push(ROLE_SERVICE);
            }
            let token =
                TokenIssuer::from_settings(&settings.auth)?.issue(&tenant, &user, &roles, ttl)?;
            println!("{token}");
        }
    }
    Ok(())
}
