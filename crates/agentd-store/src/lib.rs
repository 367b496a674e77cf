//! agentd's persistence. Services talk to the [`Store`] traits; the SQLite and PostgreSQL backends
//! implement them with the same SQL (see [`sql`]). Only this crate knows sqlx and SQL.
//!
//! Every method that reads or writes tenant data takes the tenant (directly, or inside the record it
//! writes) and filters on it. The one read that cannot know the tenant beforehand is
//! [`KeyStore::find_key_by_hash`]: the key's hash *is* the credential that names the tenant.

use std::sync::Arc;

use agentd_core::{ApiKey, KeyId, Tenant, TenantId, TenantSlug, Timestamp};
use async_trait::async_trait;

pub mod sql;

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend's name as shown in `/health` and `/info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// Picks the backend from a database URL's scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (an id or a unique name exists already).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database URL names no supported backend.
    #[error("unsupported database URL: use sqlite:<path> or postgres://…")]
    UnsupportedUrl,
    /// A stored row could not be turned back into a domain value.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// The database could not be reached or failed.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict(db.message().to_owned())
            }
            _ => Self::Database(error),
        }
    }
}

/// The whole store: every entity's trait plus connection-level operations.
#[async_trait]
pub trait Store: TenantStore + KeyStore + Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// A cheap round trip proving the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes every connection; later calls fail. Used at shutdown (and by tests of an unreachable database).
    async fn close(&self);
}

/// Tenants.
#[async_trait]
pub trait TenantStore {
    /// Inserts a tenant; a taken slug is a [`StoreError::Conflict`].
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    /// A tenant by id.
    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    /// A tenant by slug.
    async fn get_tenant_by_slug(&self, slug: &TenantSlug) -> Result<Option<Tenant>, StoreError>;
    /// Creates `tenant` and its first key in one transaction, unless a tenant with the same slug exists,
    /// in which case nothing is written and `false` is returned. Safe to race from several nodes.
    async fn create_tenant_with_key(
        &self,
        tenant: &Tenant,
        key: &ApiKey,
    ) -> Result<bool, StoreError>;
}

/// API keys. Keys are ordered by id, which is creation order.
#[async_trait]
pub trait KeyStore {
    /// Inserts a key into `key.tenant_id`.
    async fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// One key of the tenant.
    async fn get_key(&self, tenant: TenantId, id: KeyId) -> Result<Option<ApiKey>, StoreError>;
    /// Up to `limit` keys of the tenant with ids after `after`, oldest first.
    async fn list_keys(
        &self,
        tenant: TenantId,
        after: Option<KeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError>;
    /// Deletes a key of the tenant; `false` if the tenant has no such key.
    async fn delete_key(&self, tenant: TenantId, id: KeyId) -> Result<bool, StoreError>;
    /// The key whose secret hashes to `hash`, in whichever tenant holds it.
    async fn find_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Records that a key of the tenant was used at `at`.
    async fn touch_key(&self, tenant: TenantId, id: KeyId, at: Timestamp)
        -> Result<(), StoreError>;
}

/// Opens the database named by `url` (`sqlite:<path>` or `postgres://…`), creating a SQLite file if
/// needed, and brings its schema up to date.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    match Backend::from_url(url)? {
        Backend::Sqlite => Ok(Arc::new(sql::sqlite::SqliteStore::connect(url).await?)),
        Backend::Postgres => Ok(Arc::new(sql::postgres::PgStore::connect(url).await?)),
    }
}

impl StoreError {
    /// Whether the failure means the database cannot be reached (as opposed to a bad query or row).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}
