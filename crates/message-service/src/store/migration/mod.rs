//! This service's migrations. The message tables arrive with the message core; until then the
//! schema holds only the migration bookkeeping, so deployments already create and own it.

use sea_orm_migration::prelude::*;

/// Applies the migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
