//! Persistence of message-service, in its own schema (`message`) or SQLite file.

pub mod migration;

use messaging_platform::config::DatabaseSettings;
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

/// The default PostgreSQL schema of this service.
pub const DEFAULT_SCHEMA: &str = "message";

/// Connects and brings the schema up to date.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let connection = messaging_platform::db::connect(settings, DEFAULT_SCHEMA).await?;
    migration::Migrator::up(&connection, None).await?;
    Ok(connection)
}
