//! What operator tools (`messagingctl`) and the load generator (`messaging-bench`) call, in one
//! place: connecting to and migrating the database, the tenants' keys, key rotation and
//! re-encryption, and bulk seeding in the exact form SendMessage stores. The service itself is
//! started with [`crate::run`]; everything else is reached through gRPC.
//!
//! The other modules stay public for the end-to-end and conformance tests, which drive the
//! store traits directly; tools should not need them.

pub use crate::app::RetentionDue;
pub use crate::blobs::{AttachmentSettings, Blobs, StoreSettings};
pub use crate::config::{ServiceSettings, Settings, WriteSettings};
pub use crate::events::NatsSettings;
pub use crate::limits::LimitSettings;
pub use crate::store::connect;
pub use crate::store::keys::{EncryptionSettings, Keyring};
pub use crate::store::rotation;

/// What retention would purge now in `tenants` (every tenant when empty), policy by policy,
/// and the purged conversations whose data is still to be deleted (tenant, conversation).
pub async fn retention_status(
    db: &sea_orm::DatabaseConnection,
    keys: Keyring,
    tenants: &[String],
) -> anyhow::Result<(Vec<RetentionDue>, Vec<(String, uuid::Uuid)>)> {
    let store = crate::store::SqlStore::new(db.clone(), keys, messaging_outbox::EventBus::new(16));
    let (due, purges) = crate::app::retention_status(&store, tenants).await?;
    Ok((
        due,
        purges
            .into_iter()
            .map(|(tenant, conversation)| (tenant.to_string(), conversation))
            .collect(),
    ))
}

/// Writing messages straight into the tables, as SendMessage would store them (sealed,
/// indexed): for seeding large conversations.
pub mod seeding {
    pub use crate::domain::{Content, Message};
    pub use crate::store::entity::{message, search_token, sequence};
    pub use crate::store::rows::message_to_row;
    pub use crate::store::search::index_entries;
}
