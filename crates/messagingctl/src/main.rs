//! `messagingctl`: the operator CLI.
//!
//! `messagingctl token --tenant T --user U [--admin] [--service]` prints a token signed with the
//! configured HS256 secret (`--config FILE`, `MESSAGING_CONFIG`, or `MESSAGING__*` variables),
//! so the README's `buf curl` and grpcurl examples work by copy and paste.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use messaging_platform::auth::{AuthSettings, ROLE_ADMIN, ROLE_SERVICE, TokenIssuer};
use serde::Deserialize;

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
}

/// The part of the deployment settings this tool reads.
#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    auth: AuthSettings,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = messaging_platform::config::load(cli.config.as_deref())?;
    match cli.command {
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
