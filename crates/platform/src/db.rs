//! Database connections: SQLite files for the embedded default, PostgreSQL with one schema per
//! service in production. Each service runs its own migrations at start-up.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, SqlErr,
};
use sea_orm_migration::MigratorTrait;

use crate::config::DatabaseSettings;

/// Connects to the configured database. For PostgreSQL, creates the schema if missing and
/// points every pooled connection's `search_path` at it; for SQLite, creates the file and its
/// folder if missing.
pub async fn connect(
    settings: &DatabaseSettings,
    default_schema: &str,
) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url.expose();
    if url.starts_with("sqlite:") {
        connect_sqlite(url, settings.connect_timeout, settings.sqlite_synchronous).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let schema = settings.schema.as_deref().unwrap_or(default_schema);
        connect_postgres(url, schema, settings).await
    } else {
        anyhow::bail!("database.url must start with sqlite: or postgres://")
    }
}

async fn connect_sqlite(
    url: &str,
    timeout: Duration,
    durability: crate::config::SqliteSynchronous,
) -> anyhow::Result<DatabaseConnection> {
    let (path, query) = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split_once('?')
        .map_or(
            (
                url.trim_start_matches("sqlite:").trim_start_matches("//"),
                "",
            ),
            |(p, q)| (p, q),
        );
    if path != ":memory:"
        && let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", parent.display()))?;
    }
    let url = if query.contains("mode=") {
        url.to_owned()
    } else if query.is_empty() {
        format!("sqlite://{path}?mode=rwc")
    } else {
        format!("sqlite://{path}?{query}&mode=rwc")
    };
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |options| {
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match durability {
                    crate::config::SqliteSynchronous::Full => SqliteSynchronous::Full,
                    crate::config::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
                })
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                // Deleted content is overwritten with zeros, not left in free pages: erased
                // and purged data is gone from the file (see the README's Compliance section).
                .pragma("secure_delete", "ON")
        });
    Ok(Database::connect(options).await?)
}

async fn connect_postgres(
    url: &str,
    schema: &str,
    settings: &DatabaseSettings,
) -> anyhow::Result<DatabaseConnection> {
    anyhow::ensure!(
        !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "database.schema must be 1 to 63 of a-z, 0-9 and _, not starting with a digit"
    );
    let mut bootstrap = ConnectOptions::new(url.to_owned());
    bootstrap
        .max_connections(1)
        .connect_timeout(settings.connect_timeout)
        .sqlx_logging(false);
    let connection = Database::connect(bootstrap).await?;
    connection
        .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await?;
    connection.close().await?;

    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(settings.max_connections.max(1))
        .connect_timeout(settings.connect_timeout.min(settings.acquire_timeout))
        .acquire_timeout(settings.acquire_timeout)
        .sqlx_logging(false)
        .set_schema_search_path(schema.to_owned());
    Ok(Database::connect(options).await?)
}

/// Whether the database is PostgreSQL (some statements differ).
pub fn is_postgres(connection: &DatabaseConnection) -> bool {
    connection.get_database_backend() == DbBackend::Postgres
}

/// Connects as [`connect`] does and applies the service's migrations.
pub async fn connect_and_migrate<M: MigratorTrait>(
    settings: &DatabaseSettings,
    default_schema: &str,
) -> anyhow::Result<DatabaseConnection> {
    let connection = connect(settings, default_schema).await?;
    M::up(&connection, None).await?;
    Ok(connection)
}

/// Whether an error is a unique-constraint violation (a concurrent duplicate).
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Begins a transaction that may write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`), so that another process writing between its first read and first
/// write (an operator tool, another replica) makes it wait for the busy timeout instead of
/// failing with `SQLITE_BUSY_SNAPSHOT`. On PostgreSQL it is a plain `BEGIN`.
pub async fn begin_write<C: sea_orm::TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Begins a read-only transaction that sees one consistent snapshot across its statements:
/// `REPEATABLE READ` on PostgreSQL; on SQLite every transaction reads one snapshot (and the
/// embedded default has a single connection).
pub async fn begin_snapshot(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::TransactionTrait;
    if is_postgres(db) {
        db.begin_with_config(
            Some(sea_orm::IsolationLevel::RepeatableRead),
            Some(sea_orm::AccessMode::ReadOnly),
        )
        .await
    } else {
        db.begin().await
    }
}

/// The SQLSTATE code of a database error, when the database raised one.
pub fn sqlstate(error: &DbErr) -> Option<String> {
    let (DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime)) = error else {
        return None;
    };
    let sea_orm::RuntimeErr::SqlxError(sqlx_error) = runtime else {
        return None;
    };
    match sqlx_error.as_ref() {
        sea_orm::sqlx::Error::Database(database) => database.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// Whether an error means the database cannot be reached right now (no connection could be
/// had, or the connection broke), as opposed to a fault of the statement.
pub fn is_unreachable(error: &DbErr) -> bool {
    let (DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime)) = error else {
        return matches!(error, DbErr::ConnectionAcquire(_));
    };
    let sea_orm::RuntimeErr::SqlxError(sqlx_error) = runtime else {
        return false;
    };
    match sqlx_error.as_ref() {
        sea_orm::sqlx::Error::Io(_)
        | sea_orm::sqlx::Error::PoolTimedOut
        | sea_orm::sqlx::Error::PoolClosed
        | sea_orm::sqlx::Error::WorkerCrashed
        | sea_orm::sqlx::Error::Tls(_) => true,
        // Server shutting down, too many connections, cannot connect now.
        sea_orm::sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// Multi-row inserts whose SQL text does not depend on how many rows they write
/// (PostgreSQL). A multi-row `VALUES` list is a new statement for every row count, and for
/// every mix of row counts when several tables are written together: PostgreSQL parses and
/// plans each anew, binds one parameter per value, and each text takes a slot of the
/// connection's statement cache. Here the rows travel as one JSON array, which
/// `json_populate_recordset` expands into the table's row type, so each statement has one
/// text (parsed once per connection) and one parameter per table.
pub mod json_rows {
    use sea_orm::{ActiveModelTrait, ActiveValue, DbErr, EntityTrait, Iterable, Value};

    /// `INSERT INTO <table> (<columns>) SELECT <columns> FROM json_populate_recordset(...)`
    /// reading the rows of placeholder `$<parameter>` (text, see [`encode`]) in the array's
    /// order, so that identity columns number them in it. Every column of `E` but `skip`
    /// (which its defaults fill in).
    pub fn insert<E: EntityTrait>(parameter: usize, skip: &[&str]) -> String {
        let table = E::default().table_name().to_owned();
        let columns = E::Column::iter()
            .map(|column| sea_orm::IdenStatic::as_str(&column))
            .filter(|name| !skip.contains(name))
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO \"{table}\" ({columns}) SELECT {columns} \
             FROM json_populate_recordset(NULL::\"{table}\", ${parameter}::json) \
             WITH ORDINALITY AS r ORDER BY r.ordinality"
        )
    }

    /// `rows` as the JSON text [`insert`] reads: an array with an object per row, holding each
    /// set column under its name (a column not set is left to its default).
    pub fn encode<A: ActiveModelTrait>(rows: impl IntoIterator<Item = A>) -> Result<Value, DbErr> {
        let mut array = Vec::new();
        for row in rows {
            let mut object = serde_json::Map::new();
            for column in <A::Entity as EntityTrait>::Column::iter() {
                if let ActiveValue::Set(value) | ActiveValue::Unchanged(value) = row.get(column) {
                    object.insert(
                        sea_orm::IdenStatic::as_str(&column).to_owned(),
                        json(value)?,
                    );
                }
            }
            array.push(serde_json::Value::Object(object));
        }
        Ok(Value::String(Some(
            serde_json::Value::Array(array).to_string(),
        )))
    }

    /// A column value as JSON that PostgreSQL reads back into the column's type: bytes in
    /// `bytea`'s hex form, times in RFC 3339 with microseconds (what PostgreSQL keeps).
    fn json(value: Value) -> Result<serde_json::Value, DbErr> {
        use serde_json::Value as Json;
        use std::fmt::Write as _;
        Ok(match value {
            Value::Bool(value) => value.map_or(Json::Null, Json::Bool),
            Value::SmallInt(value) => value.map_or(Json::Null, Json::from),
            Value::Int(value) => value.map_or(Json::Null, Json::from),
            Value::BigInt(value) => value.map_or(Json::Null, Json::from),
            Value::String(value) => value.map_or(Json::Null, Json::String),
            Value::Uuid(value) => value.map_or(Json::Null, |id| Json::String(id.to_string())),
            Value::ChronoDateTimeUtc(value) => value.map_or(Json::Null, |at| {
                Json::String(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            }),
            Value::Bytes(value) => value.map_or(Json::Null, |bytes| {
                let mut text = String::with_capacity(2 + bytes.len() * 2);
                text.push_str("\\x");
                for byte in bytes {
                    let _ = write!(text, "{byte:02x}");
                }
                Json::String(text)
            }),
            other => {
                return Err(DbErr::Custom(format!(
                    "a {other:?} value has no JSON row form"
                )));
            }
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn values_take_the_forms_postgresql_reads_back() {
            use chrono::TimeZone as _;
            let at = chrono::Utc
                .with_ymd_and_hms(2026, 12, 7, 13, 5, 9)
                .single()
                .and_then(|at| at.checked_add_signed(chrono::Duration::nanoseconds(123_456_789)))
                .expect("a valid time");
            let id = uuid::Uuid::nil();
            let cases = [
                (Value::Bytes(Some(vec![0, 0x5c, 0xff])), r#""\\x005cff""#),
                (Value::Bytes(None), "null"),
                (Value::String(Some("a'\"\\".to_owned())), r#""a'\"\\""#),
                (Value::String(None), "null"),
                (Value::BigInt(Some(-7)), "-7"),
                (Value::Int(None), "null"),
                (Value::Bool(Some(true)), "true"),
                (
                    Value::ChronoDateTimeUtc(Some(at)),
                    r#""2026-12-07T13:05:09.123456Z""#,
                ),
                (
                    Value::Uuid(Some(id)),
                    r#""00000000-0000-0000-0000-000000000000""#,
                ),
            ];
            for (value, expected) in cases {
                assert_eq!(json(value).expect(expected).to_string(), expected);
            }
            assert!(json(Value::Double(Some(1.5))).is_err());
        }
    }
}
