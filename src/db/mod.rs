//! PostgreSQL: the pool, database creation and the embedded migrations.

pub mod schema;

use std::time::Duration;

use anyhow::{Context, bail};
use diesel::Connection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

pub fn build_pool(url: &str, size: usize, acquire_timeout: Duration) -> anyhow::Result<DbPool> {
    // Fast recycling: a broken connection is still detected (and dropped)
    // when it is returned, but a checkout does not cost a `SELECT 1` round
    // trip; that halved the database round trips of an authorized request.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(acquire_timeout))
        .create_timeout(Some(acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the database pool")
}

/// Splits `postgres://host/db?x` into the server URL (pointing at the
/// `postgres` maintenance database) and the database name.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let parsed = url::Url::parse(url).context("database.url is not a URL")?;
    let name = parsed.path().trim_start_matches('/').to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        bail!("database.url must name a database of letters, digits, '_' or '-' (got {name:?})");
    }
    let mut server = parsed.clone();
    server.set_path("/postgres");
    Ok((server.to_string(), name))
}

/// Creates the database named by `url` when it does not exist.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let (server_url, name) = split_url(url)?;
    let mut conn = AsyncPgConnection::establish(&server_url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL to create database {name:?}"))?;
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Exists = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<diesel::sql_types::Text, _>(&name)
        .get_result(&mut conn)
        .await?;
    if !found.exists {
        // The name was checked to hold only safe characters above.
        match diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another replica created it meanwhile.
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {}
            Err(e) if e.to_string().contains("already exists") => {}
            Err(e) => return Err(e).context("CREATE DATABASE"),
        }
    }
    Ok(())
}

/// Runs pending migrations on a blocking thread (the migration harness is
/// synchronous and must not run on actix's current-thread runtime).
pub async fn run_migrations(url: &str) -> anyhow::Result<usize> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url)
            .with_context(|| "cannot connect to the database to migrate it".to_string())?;
        let applied = conn.run_pending_migrations(MIGRATIONS).map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
        Ok(applied.len())
    })
    .await
    .context("migration thread")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_database_urls() {
        let (server, name) = split_url("postgres://u@127.0.0.1:5432/dumont_1?sslmode=disable").unwrap();
        assert_eq!(name, "dumont_1");
        assert_eq!(server, "postgres://u@127.0.0.1:5432/postgres?sslmode=disable");
        assert!(split_url("postgres://u@h/bad\";drop").is_err());
        assert!(split_url("postgres://u@h/").is_err());
    }
}
