//! This service's migrations, run at start-up against its own schema or SQLite file.

use sea_orm_migration::prelude::*;

mod m0001_messages;
mod m0002_events;
mod m0003_nats_progress;
mod m0004_keys_and_search;
mod m0005_participants;
mod m0006_attachments;
mod m0007_compliance;
mod m0008_conversation_purges;
mod m0009_unstamped_events;

/// Applies the migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_messages::Migration),
            Box::new(m0002_events::Migration),
            Box::new(m0003_nats_progress::Migration),
            Box::new(m0004_keys_and_search::Migration),
            Box::new(m0005_participants::Migration),
            Box::new(m0006_attachments::Migration),
            Box::new(m0007_compliance::Migration),
            Box::new(m0008_conversation_purges::Migration),
            Box::new(m0009_unstamped_events::Migration),
        ]
    }
}
