//! `messagingctl keys`: status, rotation and resumable re-encryption of message-service's
//! data keys, directly against its database.

use indicatif::{ProgressBar, ProgressStyle};
use message_service::admin::Keyring;
use message_service::admin::rotation;
use sea_orm::DatabaseConnection;

use crate::{KeysCommand, Settings};

pub async fn run(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    if let KeysCommand::NewMasterKey = command {
        use base64::Engine as _;
        let key = messaging_platform::crypto::generate_key()?;
        println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
        return Ok(());
    }
    let service = &settings.message_service;
    if !service.encryption.is_enabled(settings.mode) {
        anyhow::bail!(
            "encryption at rest is off in this configuration (message_service.encryption)"
        );
    }
    let db = message_service::admin::connect(&service.database).await?;
    let keys = Keyring::open(&db, &service.encryption, settings.mode).await?;
    match command {
        KeysCommand::NewMasterKey => {}
        KeysCommand::Status { tenant } => {
            for tenant in tenants(&keys, tenant).await? {
                let stale = rotation::stale(&db, &keys, &tenant).await?;
                let newest = keys
                    .current(&db, &tenant)
                    .await?
                    .map_or(0, |key| key.version());
                println!(
                    "{tenant}: key version {newest}; {} messages and {} revisions on older versions",
                    stale.messages, stale.revisions
                );
            }
        }
        KeysCommand::Rotate {
            tenant,
            no_reencrypt,
            batch,
        } => {
            let tenants = tenants(&keys, tenant).await?;
            for tenant in &tenants {
                let version = keys.rotate(&db, tenant).await?;
                println!("{tenant}: new writes now use key version {version}");
            }
            if !no_reencrypt {
                reencrypt(&db, &keys, &tenants, batch).await?;
            }
        }
        KeysCommand::Reencrypt { tenant, batch } => {
            let tenants = tenants(&keys, tenant).await?;
            reencrypt(&db, &keys, &tenants, batch).await?;
        }
    }
    Ok(())
}

async fn tenants(keys: &Keyring, given: Vec<String>) -> anyhow::Result<Vec<String>> {
    if given.is_empty() {
        Ok(keys.tenants().await?)
    } else {
        Ok(given)
    }
}

async fn reencrypt(
    db: &DatabaseConnection,
    keys: &Keyring,
    tenants: &[String],
    batch: u64,
) -> anyhow::Result<()> {
    for tenant in tenants {
        let stale = rotation::stale(db, keys, tenant).await?;
        let bar = ProgressBar::new(stale.total()).with_style(ProgressStyle::with_template(
            "{prefix}: {bar:40} {pos}/{len} rows re-encrypted ({per_sec}, {eta} left)",
        )?);
        bar.set_prefix(tenant.clone());
        loop {
            let rewritten = rotation::reencrypt_batch(db, keys, tenant, batch.max(1)).await?;
            if rewritten == 0 {
                break;
            }
            bar.inc(rewritten);
            // Without a terminal the bar is hidden: print progress lines instead.
            if bar.is_hidden() {
                println!(
                    "{tenant}: {}/{} rows re-encrypted",
                    bar.position(),
                    stale.total()
                );
            }
        }
        bar.finish();
        let events = rotation::reseal_events(db, keys, tenant, batch.max(1)).await?;
        println!("{tenant}: sealed {events} stored events with the newest key");
        let left = rotation::stale(db, keys, tenant).await?;
        println!(
            "{tenant}: re-encrypted {} rows; {} left on older versions{}",
            bar.position(),
            left.total(),
            if left.total() > 0 {
                " (changed while running: run `keys reencrypt` again)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
