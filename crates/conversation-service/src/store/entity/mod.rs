//! SeaORM entities of this service's schema. Every table carries `tenant_id`, and every query
//! filters on it.

pub mod audit_log;
pub mod conversation;
pub mod participant;
