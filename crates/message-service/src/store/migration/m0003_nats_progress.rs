//! How far the relay has published to NATS JetStream (already there in databases whose outbox
//! was created after this column existed).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging_outbox::migration::add_nats_progress(manager).await
    }
}
