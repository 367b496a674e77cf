//! agentd's domain: the types every other crate speaks, with no knowledge of HTTP, SQL or vendors.
//!
//! Ids are UUIDv7 newtypes ([`ids`]), permissions are AgentOS-form scopes ([`scope`]), failures carry a
//! stable [`ErrorCode`](error::ErrorCode), and [`redact`] keeps secrets out of every log line.

#[macro_use]
mod macros;

pub mod agent;
pub mod audit;
pub mod error;
pub mod ids;
pub mod key;
pub mod knowledge;
pub mod memory;
pub mod redact;
pub mod run;
pub mod scope;
pub mod tenant;
pub mod user;

pub use error::ErrorCode;
pub use ids::{
    AgentId, AuditId, ChunkId, ContentId, EventId, KeyId, MemoryId, RunId, TenantId, UserId,
};
pub use key::{ApiKey, KeyName, NewApiKey, PlainKey};
pub use scope::{Scope, ScopeSet};
pub use tenant::{Tenant, TenantSlug};
pub use user::{Email, OneTimeToken, Role, User};

/// Lowercase hex of the SHA-256 of `bytes`: how keys, one-time tokens, audit entries and uploads are
/// hashed.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// A point in time, always UTC. Stored as milliseconds since the Unix epoch.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time truncated to whole milliseconds, so a value survives a round trip through the store.
pub fn now() -> Timestamp {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
