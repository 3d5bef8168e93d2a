//! This service's migrations, run at start-up against its own schema or SQLite file.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_events;
mod m0003_request_fingerprints;
mod m0004_unstamped_events;

/// Applies the migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_events::Migration),
            Box::new(m0003_request_fingerprints::Migration),
            Box::new(m0004_unstamped_events::Migration),
        ]
    }
}
