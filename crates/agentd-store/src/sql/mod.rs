//! The SQL backends. Both speak the same SQL: statements use `$n` parameters (which SQLite accepts as
//! numbered parameters), ids are UUID text, times are milliseconds since the epoch, and lists are JSON
//! text. So the query code is written once, in `shared/*.rs`, and compiled twice: `sqlite.rs` and
//! `postgres.rs` each include those files (through [`shared_queries!`]) with `Db` set to their sqlx
//! database type. What differs between the backends (connection options, migrations) stays in those
//! two files.

use agentd_core::{ScopeSet, Timestamp};

use crate::StoreError;

pub mod postgres;
pub mod sqlite;

/// Includes the shared query code, one module per entity, into a backend module that defines `Db`,
/// `SqlStore`, its `WriteLane` with `write_lane` (whose turn it is to write), and `BEGIN_WRITE` (how a
/// write transaction begins). The trait implementations inside apply to that backend's `SqlStore`.
macro_rules! shared_queries {
    () => {
        type DbRow = <Db as sqlx::Database>::Row;

        /// A transaction that writes, holding the store's write lane until it ends. Derefs to the
        /// connection, like the transaction it wraps.
        pub(crate) struct WriteTx {
            tx: sqlx::Transaction<'static, Db>,
            _lane: WriteLane,
        }

        impl WriteTx {
            async fn commit(self) -> Result<(), sqlx::Error> {
                self.tx.commit().await
            }

            async fn rollback(self) -> Result<(), sqlx::Error> {
                self.tx.rollback().await
            }
        }

        impl std::ops::Deref for WriteTx {
            type Target = <Db as sqlx::Database>::Connection;
            fn deref(&self) -> &Self::Target {
                &self.tx
            }
        }

        impl std::ops::DerefMut for WriteTx {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.tx
            }
        }

        /// Begins a transaction that writes: the store's write lane, then `BEGIN_WRITE`.
        async fn begin_write(store: &SqlStore) -> Result<WriteTx, StoreError> {
            let lane = write_lane(store).await;
            Ok(WriteTx {
                tx: store.pool.begin_with(BEGIN_WRITE).await?,
                _lane: lane,
            })
        }

        mod tenants {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/tenants.rs");
        }
        mod agents {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/agents.rs");
        }
        mod identities {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/identities.rs");
        }
        mod capabilities {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/capabilities.rs");
        }
        mod resources {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/resources.rs");
        }
        mod sessions {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/sessions.rs");
        }
        mod runs {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/runs.rs");
        }
        mod usage {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/usage.rs");
        }
        mod audit {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/audit.rs");
        }
        mod users {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/users.rs");
        }
        mod memories {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/memories.rs");
        }
        mod knowledge {
            use super::*;
            use crate::sql::prelude::*;
            include!("shared/knowledge.rs");
        }
    };
}
pub(crate) use shared_queries;

/// What the shared query code uses, in one place. (`async_trait` and `StoreError` reach it through the
/// backend module, which uses them too.)
mod prelude {
    pub(super) use agentd_core::agent::{
        Agent, AgentEvent, AgentHealth, AgentResources, AgentStatus, AgentVersion, Capability,
        Endorsement,
    };
    pub(super) use agentd_core::run::{Run, RunEvent, RunStatus, Session, SessionId};
    pub(super) use agentd_core::{
        AgentId, ApiKey, EventId, KeyId, KeyName, RunId, Tenant, TenantId, TenantSlug, Timestamp,
    };
    pub(super) use sqlx::Row;

    pub(super) use super::{
        db_integer, integer_column, json_column, like_pattern_containing, parse_column,
        scopes_from_json, scopes_to_json, time_from_millis, to_json_text,
    };
    pub(super) use crate::{
        AgentFilter, AgentStore, AgentUsage, CapabilityStore, IdentityStore, KeyStore, ModelCall,
        ResourceStore, RunFilter, RunStats, RunStore, SessionCursor, SessionFilter, SessionStore,
        TenantStore, Update, UsageRow, UsageStore,
    };
}

/// Milliseconds since the epoch → timestamp.
fn time_from_millis(table: &'static str, millis: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_millis(millis).ok_or_else(|| StoreError::Corrupt {
        table,
        reason: format!("timestamp {millis} out of range"),
    })
}

/// Parses a stored id or other `FromStr` column.
fn parse_column<T: std::str::FromStr>(
    table: &'static str,
    column: &str,
    raw: &str,
) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e: T::Err| StoreError::Corrupt {
        table,
        reason: format!("{column} `{raw}`: {e}"),
    })
}

/// An unsigned count or sequence number as the database's signed 64-bit integer (saturating: no count
/// reaches 2^63).
fn db_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored 64-bit integer → the unsigned type it was written from; a negative or too large value is
/// a corrupt row.
fn integer_column<T: TryFrom<i64>>(
    table: &'static str,
    column: &str,
    raw: i64,
) -> Result<T, StoreError> {
    T::try_from(raw).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("{column} {raw} out of range"),
    })
}

/// Scopes are stored as a JSON array of strings.
fn scopes_to_json(scopes: &ScopeSet) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".to_owned())
}

fn scopes_from_json(raw: &str) -> Result<ScopeSet, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
        table: "api_keys",
        reason: format!("scopes: {e}"),
    })
}

/// A value stored as JSON text.
fn to_json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// A `LIKE` pattern (escaped with `\`) matching text that contains `text` with ASCII letters in lower
/// case: for `LOWER(column) LIKE $n ESCAPE '\'`, which folds ASCII only on both backends (PostgreSQL's
/// searched columns use the "C" collation).
fn like_pattern_containing(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c.to_ascii_lowercase());
    }
    pattern.push('%');
    pattern
}

/// A JSON text column → value.
fn json_column<T: serde::de::DeserializeOwned>(
    table: &'static str,
    column: &str,
    raw: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
        table,
        reason: format!("{column}: {e}"),
    })
}
