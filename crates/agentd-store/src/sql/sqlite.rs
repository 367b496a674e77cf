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
    /// Agents read, served without a query. This process is the database's only writer, so its own
    /// writes are all the cache has to follow.
    agents: crate::agent_cache::AgentCache,
    /// Whose turn it is to write (see [`write_lane`]).
    writes: std::sync::Arc<tokio::sync::Mutex<()>>,
}

type SqlStore = SqliteStore;

crate::sql::shared_queries!();

/// SQLite has one writer at a time, and the audit append's first statement is a write (the chain's
/// head row), which takes the database's write lock for the whole transaction: nothing more to lock.
async fn lock_audit_chain(
    _tx: &mut WriteTx,
    _tenant: agentd_core::TenantId,
) -> Result<(), StoreError> {
    Ok(())
}

/// The store's turn to write: SQLite has one writer at a time, and a writer that finds the database
/// locked waits in SQLite's busy handler, which sleeps 1, 2, 5 … 100 ms between tries (the create
/// and patch p99 of 150 ms in `agentd-bench registry`), or fails at once when it read before it wrote.
/// Taking turns on an async lock in the process instead hands the lock over without sleeping.
/// Another process writing the same file still meets the busy timeout.
type WriteLane = tokio::sync::OwnedMutexGuard<()>;

async fn write_lane(store: &SqlStore) -> WriteLane {
    store.writes.clone().lock_owned().await
}

/// Write transactions hold SQLite's write lock from the start (`BEGIN IMMEDIATE`). A deferred `BEGIN`
/// is not enough where a statement fires the full-text index's triggers: SQLite then starts it as a
/// reader and, finding another writer (another process), fails at once with "database is locked"
/// instead of waiting.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The FTS5 query for chunks with any of `words`: each word a quoted string (so nothing in it is
/// query syntax), joined by `OR`; `bm25` ranks chunks with more and rarer words first.
fn keyword_query_text(words: &[String]) -> String {
    words
        .iter()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The keyword search over the FTS5 index: `$1` the tenant, `$2` the [`keyword_query_text`], then
/// `conditions` on the chunks (`c`). `bm25` is lower for better matches; the score is its negation.
fn keyword_search_sql(conditions: &str, limit: u32) -> String {
    format!(
        "SELECT c.id AS id, -bm25(knowledge_chunks_fts) AS score FROM knowledge_chunks_fts \
         JOIN knowledge_chunks c ON c.fts_rowid = knowledge_chunks_fts.rowid \
         WHERE knowledge_chunks_fts MATCH $2 AND c.tenant_id = $1{conditions} \
         ORDER BY score DESC, c.id LIMIT {limit}"
    )
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
        Ok(Self {
            pool,
            agents: crate::agent_cache::AgentCache::new(crate::agent_cache::MAX_AGENTS, true),
            writes: std::sync::Arc::default(),
        })
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
