//! Encryption at rest: each tenant's data keys (versioned) and search key, wrapped by the
//! master key and stored in `tenant_keys`; the master key itself comes from configuration or
//! a key file, never from the database.
//!
//! - At start-up the master key must open the database's check row (written the first time):
//!   a wrong key, a missing key, or encryption switched off over a database that has keys all
//!   stop the service with a message saying which.
//! - Writes seal with the tenant's newest data key version, read in the writing transaction,
//!   so a rotation applies to the next write on every replica. Reads open with the version
//!   each value names; unwrapped keys are cached.
//! - With encryption off, values are stored in plaintext (`key_version` 0) and search tokens
//!   are keyed with a fixed all-zero key: development only.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use messaging_outbox::KeySource;
use messaging_platform::config::{Mode, Secret};
use messaging_platform::crypto::{self, DataKey, KEY_LEN, MasterKey, SearchKey};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};

use super::entity::tenant_key;

const DATA: &str = "data";
const SEARCH: &str = "search";
const CHECK: &str = "check";

/// `[message_service.encryption]`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct EncryptionSettings {
    /// Encrypt message content at rest; default: on in production mode, off in development.
    pub enabled: Option<bool>,
    /// The master key: 32 bytes, standard base64.
    pub master_key: Option<Secret>,
    /// A file holding the master key (base64), instead of `master_key`.
    pub master_key_file: Option<PathBuf>,
}

impl EncryptionSettings {
    /// Whether encryption at rest is on in `mode`.
    pub fn is_enabled(&self, mode: Mode) -> bool {
        self.enabled.unwrap_or(mode == Mode::Production)
    }

    /// The configured master key; an error says what is missing or wrong.
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        let encoded = match (&self.master_key, &self.master_key_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "set only one of message_service.encryption.master_key and master_key_file"
            ),
            (Some(key), None) => key.expose().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read message_service.encryption.master_key_file {}",
                    path.display()
                )
            })?,
            (None, None) => anyhow::bail!(
                "encryption at rest is on but no master key is configured: set \
                 message_service.encryption.master_key (32 bytes, base64) or master_key_file, \
                 or switch it off with message_service.encryption.enabled = false (development)"
            ),
        };
        MasterKey::from_base64(&encoded)
            .map_err(|error| anyhow::anyhow!("message_service.encryption master key: {error}"))
    }
}

/// The tenants' keys, shared by every use case and the event relay.
#[derive(Debug, Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: DatabaseConnection,
    master: Option<MasterKey>,
    data: moka::sync::Cache<(String, u32), Arc<DataKey>>,
    search: moka::sync::Cache<String, Arc<SearchKey>>,
    plain_search: Arc<SearchKey>,
}

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// A value names a key that does not exist or does not unwrap, or does not open.
    #[error("{0}")]
    Corrupt(String),
    /// A sealed value was found with encryption off.
    #[error("a sealed value was found but encryption at rest is off")]
    Disabled,
}

impl From<KeyError> for messaging_platform::ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Db(error) => Self::internal(error),
            KeyError::Corrupt(detail) => Self::DataLoss(detail),
            KeyError::Disabled => Self::internal(anyhow::anyhow!("{}", KeyError::Disabled)),
        }
    }
}

impl Keyring {
    /// Checks the configured master key against the database and returns the keyring. Fails
    /// when encryption is on without a usable key, when the key is not the database's, and
    /// when encryption is off over a database that has keys.
    pub async fn open(
        db: &DatabaseConnection,
        settings: &EncryptionSettings,
        mode: Mode,
    ) -> anyhow::Result<Self> {
        let check = tenant_key::Entity::find_by_id((String::new(), CHECK.to_owned(), 1))
            .one(db)
            .await?;
        let master = if settings.is_enabled(mode) {
            let master = settings.master_key()?;
            match check {
                Some(row) => {
                    master.unwrap("", CHECK, 1, &row.wrapped).map_err(|_| {
                        anyhow::anyhow!(
                            "the configured master key is not the one this database's keys \
                             were wrapped with; refusing to start (message_service.encryption)"
                        )
                    })?;
                }
                None => {
                    let wrapped = master.wrap("", CHECK, 1, &generate()?)?;
                    insert_key(db, "", CHECK, 1, wrapped).await?;
                }
            }
            Some(master)
        } else {
            let any = tenant_key::Entity::find().one(db).await?;
            if any.is_some() {
                anyhow::bail!(
                    "encryption at rest is off but this database holds encrypted data; set \
                     message_service.encryption.master_key (or master_key_file) to the key it \
                     was written with"
                );
            }
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                db: db.clone(),
                master,
                data: moka::sync::Cache::builder().max_capacity(100_000).build(),
                search: moka::sync::Cache::builder().max_capacity(100_000).build(),
                plain_search: Arc::new(SearchKey::new(&[0; KEY_LEN])),
            }),
        })
    }

    /// Whether values are sealed.
    pub fn is_enabled(&self) -> bool {
        self.inner.master.is_some()
    }

    fn master(&self) -> Result<&MasterKey, KeyError> {
        self.inner.master.as_ref().ok_or(KeyError::Disabled)
    }

    /// The data key new values of `tenant` are sealed with (its newest version, created the
    /// first time), or `None` with encryption off. Read within the writer's transaction.
    pub async fn current<C: ConnectionTrait>(
        &self,
        connection: &C,
        tenant: &str,
    ) -> Result<Option<Arc<DataKey>>, KeyError> {
        let Some(master) = &self.inner.master else {
            return Ok(None);
        };
        let newest = tenant_key::Entity::find()
            .filter(tenant_key::Column::TenantId.eq(tenant))
            .filter(tenant_key::Column::Kind.eq(DATA))
            .order_by_desc(tenant_key::Column::Version)
            .one(connection)
            .await?;
        let row = match newest {
            Some(row) => row,
            None => {
                let wrapped = master
                    .wrap(tenant, DATA, 1, &generate().map_err(corrupt)?)
                    .map_err(corrupt)?;
                insert_key(connection, tenant, DATA, 1, wrapped).await?;
                // A concurrent writer may have inserted first: use whatever is stored.
                tenant_key::Entity::find_by_id((tenant.to_owned(), DATA.to_owned(), 1))
                    .one(connection)
                    .await?
                    .ok_or_else(|| KeyError::Corrupt("the first data key vanished".to_owned()))?
            }
        };
        self.unwrap_data(tenant, row).map(Some)
    }

    fn unwrap_data(&self, tenant: &str, row: tenant_key::Model) -> Result<Arc<DataKey>, KeyError> {
        let version = u32::try_from(row.version).map_err(corrupt)?;
        let cache_key = (tenant.to_owned(), version);
        if let Some(key) = self.inner.data.get(&cache_key) {
            return Ok(key);
        }
        let material = self
            .master()?
            .unwrap(tenant, DATA, version, &row.wrapped)
            .map_err(|error| {
                KeyError::Corrupt(format!("data key {version} of a tenant: {error}"))
            })?;
        let key = Arc::new(DataKey::new(version, &material).map_err(corrupt)?);
        self.inner.data.insert(cache_key, key.clone());
        Ok(key)
    }

    /// Data key `version` of `tenant`, to open what it sealed.
    pub async fn version<C: ConnectionTrait>(
        &self,
        connection: &C,
        tenant: &str,
        version: u32,
    ) -> Result<Arc<DataKey>, KeyError> {
        self.master()?;
        if let Some(key) = self.inner.data.get(&(tenant.to_owned(), version)) {
            return Ok(key);
        }
        let stored = i32::try_from(version).map_err(corrupt)?;
        let row = tenant_key::Entity::find_by_id((tenant.to_owned(), DATA.to_owned(), stored))
            .one(connection)
            .await?
            .ok_or_else(|| {
                KeyError::Corrupt(format!("a value names unknown data key {version}"))
            })?;
        self.unwrap_data(tenant, row)
    }

    /// The key of `tenant`'s search tokens (created the first time); a fixed key with
    /// encryption off.
    pub async fn search<C: ConnectionTrait>(
        &self,
        connection: &C,
        tenant: &str,
    ) -> Result<Arc<SearchKey>, KeyError> {
        let Some(master) = &self.inner.master else {
            return Ok(self.inner.plain_search.clone());
        };
        if let Some(key) = self.inner.search.get(tenant) {
            return Ok(key);
        }
        let id = (tenant.to_owned(), SEARCH.to_owned(), 1);
        let row = match tenant_key::Entity::find_by_id(id.clone())
            .one(connection)
            .await?
        {
            Some(row) => row,
            None => {
                let wrapped = master
                    .wrap(tenant, SEARCH, 1, &generate().map_err(corrupt)?)
                    .map_err(corrupt)?;
                insert_key(connection, tenant, SEARCH, 1, wrapped).await?;
                tenant_key::Entity::find_by_id(id)
                    .one(connection)
                    .await?
                    .ok_or_else(|| KeyError::Corrupt("the search key vanished".to_owned()))?
            }
        };
        let material = master
            .unwrap(tenant, SEARCH, 1, &row.wrapped)
            .map_err(|error| KeyError::Corrupt(format!("search key of a tenant: {error}")))?;
        let key = Arc::new(SearchKey::new(&material));
        self.inner.search.insert(tenant.to_owned(), key.clone());
        Ok(key)
    }

    /// Adds data key version newest + 1 for `tenant`; new writes use it at once. Returns it.
    pub async fn rotate<C: ConnectionTrait>(
        &self,
        connection: &C,
        tenant: &str,
    ) -> Result<u32, KeyError> {
        let master = self.master()?;
        let newest = tenant_key::Entity::find()
            .filter(tenant_key::Column::TenantId.eq(tenant))
            .filter(tenant_key::Column::Kind.eq(DATA))
            .order_by_desc(tenant_key::Column::Version)
            .one(connection)
            .await?
            .map_or(0, |row| row.version);
        let version = u32::try_from(newest + 1).map_err(corrupt)?;
        let wrapped = master
            .wrap(tenant, DATA, version, &generate().map_err(corrupt)?)
            .map_err(corrupt)?;
        insert_key(connection, tenant, DATA, version, wrapped).await?;
        Ok(version)
    }

    /// Every tenant that has a data key or rows stored in plaintext (written while
    /// encryption was off).
    pub async fn tenants(&self) -> Result<Vec<String>, DbErr> {
        use crate::store::entity::message;
        use sea_orm::QuerySelect;
        let mut tenants: Vec<String> = tenant_key::Entity::find()
            .select_only()
            .column(tenant_key::Column::TenantId)
            .distinct()
            .filter(tenant_key::Column::Kind.eq(DATA))
            .into_tuple::<String>()
            .all(&self.inner.db)
            .await?;
        tenants.extend(
            message::Entity::find()
                .select_only()
                .column(message::Column::TenantId)
                .distinct()
                .filter(message::Column::KeyVersion.eq(0))
                .into_tuple::<String>()
                .all(&self.inner.db)
                .await?,
        );
        tenants.sort();
        tenants.dedup();
        Ok(tenants)
    }
}

#[async_trait::async_trait]
impl KeySource for Keyring {
    async fn data_key(
        &self,
        transaction: Option<&sea_orm::DatabaseTransaction>,
        tenant: &str,
        version: u32,
    ) -> Result<Arc<DataKey>, String> {
        let found = match transaction {
            Some(transaction) => self.version(transaction, tenant, version).await,
            None => self.version(&self.inner.db, tenant, version).await,
        };
        found.map_err(|error| error.to_string())
    }
}

fn corrupt(error: impl std::fmt::Display) -> KeyError {
    KeyError::Corrupt(error.to_string())
}

fn generate() -> Result<[u8; KEY_LEN], crypto::CryptoError> {
    crypto::generate_key()
}

async fn insert_key<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    kind: &str,
    version: u32,
    wrapped: Vec<u8>,
) -> Result<(), DbErr> {
    let row = tenant_key::Model {
        tenant_id: tenant.to_owned(),
        kind: kind.to_owned(),
        version: i32::try_from(version).map_err(|error| DbErr::Custom(error.to_string()))?,
        wrapped,
        created_at: messaging_platform::time::now(),
    };
    tenant_key::Entity::insert(tenant_key::ActiveModel::from(row))
        .on_conflict_do_nothing()
        .exec_without_returning(connection)
        .await?;
    Ok(())
}
