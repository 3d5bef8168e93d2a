//! The outbox tables.

/// `events`: the transactional outbox. A change and its event commit together; the relay then
/// stamps committed events with `position`, dense and in stamping order, which is the order
/// subscribers see and resume by.
pub mod event {
    use chrono::{DateTime, Utc};
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        /// Insertion order (not commit order: never shown to clients).
        #[sea_orm(primary_key)]
        pub id: i64,
        pub event_id: Uuid,
        pub tenant_id: String,
        pub conversation_id: Uuid,
        pub actor_id: String,
        pub kind: String,
        pub occurred_at: DateTime<Utc>,
        /// The encoded `messaging.message.v1.Event`, without its position.
        pub payload: Vec<u8>,
        /// Set by the relay once committed.
        pub position: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `event_relay`: the last position handed out, and how far old events have been pruned.
/// Locking this row serialises stamping across replicas.
pub mod event_relay {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "event_relay")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub last_position: i64,
        /// Positions up to here are gone: resuming from before needs a resync.
        pub pruned_through: i64,
        /// Positions up to here are acknowledged by NATS JetStream.
        pub nats_published_through: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
