//! `messagingctl retention status`: what the compliance job still has to purge, read from
//! message-service's database.

use message_service::admin::Keyring;

use crate::{RetentionCommand, Settings};

pub async fn run(settings: &Settings, command: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Status { tenant } = command;
    let service = &settings.message_service;
    let db = message_service::admin::connect(&service.database).await?;
    let keys = Keyring::open(&db, &service.encryption, settings.mode).await?;
    let (due, purges) = message_service::admin::retention_status(&db, keys, &tenant).await?;
    if due.is_empty() {
        println!("no retention policy is set: every message is kept");
    }
    for policy in &due {
        let scope = match policy.conversation {
            Some(conversation) => format!("conversation {conversation}"),
            None => "tenant policy".to_owned(),
        };
        println!(
            "{} {scope}: messages after {}, tombstones after {}; due now: {} messages, {} tombstones",
            policy.tenant,
            days(policy.policy.message_days),
            days(policy.policy.tombstone_days),
            policy.messages,
            policy.tombstones,
        );
    }
    for (tenant, conversation) in &purges {
        println!("{tenant} conversation {conversation}: purged, its data is being deleted");
    }
    Ok(())
}

fn days(days: u32) -> String {
    match days {
        0 => "never".to_owned(),
        1 => "1 day".to_owned(),
        days => format!("{days} days"),
    }
}
