//! `conversations.create_request_hash`: the fingerprint of the creating request, so that a
//! request_id reused with a different payload is told apart from a retry (see
//! `messaging_platform::idempotency`). NULL for conversations created before it existed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("conversations"))
                    .add_column(
                        ColumnDef::new(Alias::new("create_request_hash"))
                            .string()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
