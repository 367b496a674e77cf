//! The SQLite backend: one file in WAL mode, foreign keys on, writers waiting on each other rather
//! than failing. The queries are the shared ones in `shared/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use async_trait::async_trait;

use crate::{Backend, Store, StoreError};

type Db = sqlx::Sqlite;

/// The store on SQLite.
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

type SqlStore = SqliteStore;

crate::sql::shared_queries!();

/// SQLite has one writer at a time, and the audit append's first statement is a write (the chain's
/// head row), which takes the database's write lock for the whole transaction: nothing more to lock.
async fn lock_audit_chain(
    _tx: &mut sqlx::Transaction<'_, Db>,
    _tenant: agentd_core::TenantId,
) -> Result<(), StoreError> {
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by a `sqlite:` URL and migrates it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
