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
    /// Agents read, served without a query while the change listener runs (see `agent_cache`).
    agents: std::sync::Arc<crate::agent_cache::AgentCache>,
    /// The change listener's task, stopped with the store.
    listener: tokio::task::AbortHandle,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The channel the `agents` and `agent_run_totals` triggers announce changes on (migration 0016).
const AGENT_CHANGES: &str = "agentd_agents";

/// Follows every node's agent changes and drops them from `cache`: listens on its own connection,
/// and on any failure empties the cache (announcements may have been missed), stops serving from it
/// and listens again after a pause.
async fn follow_agent_changes(url: String, cache: std::sync::Weak<crate::agent_cache::AgentCache>) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(AGENT_CHANGES).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(mut listener) => {
                let Some(live) = cache.upgrade() else { return };
                live.listening();
                drop(live);
                loop {
                    let notification = listener.try_recv().await;
                    let Some(live) = cache.upgrade() else { return };
                    match notification {
                        Ok(Some(notification)) => {
                            if let Some((tenant, agent)) =
                                crate::agent_cache::parse_change(notification.payload())
                            {
                                live.drop_agent(tenant, agent);
                            }
                        }
                        // The connection was lost (`None`) or failed.
                        Ok(None) | Err(_) => {
                            live.clear(false);
                            break;
                        }
                    }
                }
            }
            Err(_) => {
                let Some(live) = cache.upgrade() else { return };
                live.clear(false);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

type SqlStore = PgStore;

crate::sql::shared_queries!();

/// Makes this transaction the only appender to `tenant`'s audit chain until it ends: a transaction-
/// scoped advisory lock, so nodes sharing the database append one after another. The key is the
/// tenant id folded to 64 bits and mixed with a constant naming the audit chain (a collision only
/// makes two chains wait for each other).
async fn lock_audit_chain(
    tx: &mut WriteTx,
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

/// PostgreSQL takes row locks as statements run: writers need no turn of their own.
struct WriteLane;

async fn write_lane(_store: &SqlStore) -> WriteLane {
    WriteLane
}

/// Row locks are taken as statements run: a plain transaction.
const BEGIN_WRITE: &str = "BEGIN";

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
        let agents = std::sync::Arc::new(crate::agent_cache::AgentCache::new(
            crate::agent_cache::MAX_AGENTS,
            false,
        ));
        let listener = tokio::spawn(follow_agent_changes(
            url.to_owned(),
            std::sync::Arc::downgrade(&agents),
        ))
        .abort_handle();
        Ok(Self {
            pool,
            agents,
            listener,
        })
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
        self.listener.abort();
        self.pool.close().await;
    }
}
