//! The PostgreSQL backend, for several agentd nodes sharing one database. The queries are the shared
//! ones in `shared/`; a schema can be chosen with the URL's `options=-c search_path=…`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use async_trait::async_trait;

use crate::{Backend, Store, StoreError};

type Db = sqlx::Postgres;

/// The store on PostgreSQL.
pub struct PgStore {
    pool: sqlx::PgPool,
}

type SqlStore = PgStore;

crate::sql::shared_queries!();

/// Makes this transaction the only appender to `tenant`'s audit chain until it ends: a transaction-
/// scoped advisory lock, so nodes sharing the database append one after another. The key is the
/// tenant id folded to 64 bits and mixed with a constant naming the audit chain (a collision only
/// makes two chains wait for each other).
async fn lock_audit_chain(
    tx: &mut sqlx::Transaction<'_, Db>,
    tenant: agentd_core::TenantId,
) -> Result<(), StoreError> {
    const AUDIT_CHAIN_LOCK: u64 = 0x6175_6469_745f_6c6f; // "audit_lo"
    let (high, low) = tenant.as_uuid().as_u64_pair();
    let key = (high ^ low ^ AUDIT_CHAIN_LOCK) as i64;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Begins a transaction that writes (row locks are taken as statements run on PostgreSQL; see the
/// SQLite backend for why it differs there).
async fn begin_write(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
    Ok(pool.begin().await?)
}

/// The `websearch_to_tsquery` text for chunks with any of `words` (letters and digits only, so
/// nothing in them is query syntax): the words joined by `or`.
fn keyword_query_text(words: &[String]) -> String {
    words.join(" or ")
}

/// The keyword search over the GIN-indexed `tsv` column: `$1` the tenant, `$2` the
/// [`keyword_query_text`], then `conditions` on the chunks (`c`); ranked by `ts_rank_cd`.
fn keyword_search_sql(conditions: &str, limit: u32) -> String {
    format!(
        "SELECT c.id AS id, ts_rank_cd(c.tsv, q.query)::float8 AS score \
         FROM knowledge_chunks c, websearch_to_tsquery('english', $2) AS q(query) \
         WHERE c.tenant_id = $1 AND c.tsv @@ q.query{conditions} \
         ORDER BY score DESC, c.id LIMIT {limit}"
    )
}

impl PgStore {
    /// Connects to the server named by a `postgres://` URL and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
