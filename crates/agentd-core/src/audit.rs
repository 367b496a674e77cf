//! The audit log: who did what, to what, when, from where, and how it ended, kept as one hash chain
//! per tenant so that an altered, deleted or reordered entry is found by walking the chain.
//!
//! An [`AuditRecord`] is what happened; the store appends it to its tenant's chain as an
//! [`AuditEntry`], numbering it (`seq` from 1, no gaps) and linking it to the entry before it:
//! `hash = SHA-256(canonical encoding of the entry's fields + prev_hash)`, with [`GENESIS_HASH`] as the
//! `prev_hash` of each chain's first entry. Events that belong to no tenant (a request with no key,
//! or with a key nobody holds) go to the platform chain, whose tenant id is the nil UUID
//! ([`platform_tenant`]).
//!
//! The canonical encoding ([`canonical_bytes`]) is, in this order: the version tag `agentd.audit.v1`,
//! `id`, `tenant_id`, `seq`, `created_at` (milliseconds since the epoch), `actor`, `action`, `target`,
//! `agent_id`, `status`, `outcome`, `client_addr`, `request_id` and `prev_hash`; each field is its
//! text (numbers in decimal, ids as hyphenated lowercase UUIDs) as a 4-byte big-endian length followed
//! by its UTF-8 bytes, and a missing optional field is the length `0xFFFF_FFFF` with no bytes. So no
//! two different entries encode alike, and anyone can recompute a hash without agentd.
//! [`ChainVerifier`] walks one chain and names the first entry that does not fit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{AgentId, AuditId, TenantId, Timestamp};

/// The `prev_hash` of the first entry of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Tags the canonical encoding, so a future change of the encoding cannot be mistaken for this one.
const ENCODING_VERSION: &str = "agentd.audit.v1";

/// Who acted when a request carried no valid credential.
pub const ANONYMOUS: &str = "anonymous";

/// Who acted when the server itself did (the health sweeper, for example).
pub const SYSTEM: &str = "system";

/// The tenant id of the platform chain: events that belong to no tenant (the nil UUID, which no
/// tenant ever has, since tenant ids are UUIDv7).
pub fn platform_tenant() -> TenantId {
    TenantId::from_uuid(uuid::Uuid::nil())
}

string_enum!(
    /// How a recorded request ended.
    AuditOutcome {
        /// The request did what it asked (a 1xx, 2xx or 3xx answer).
        Success = "success",
        /// Authentication or authorization refused it (401 or 403).
        Denied = "denied",
        /// Anything else that did not succeed (other 4xx and 5xx).
        Failed = "failed",
    }
);

impl AuditOutcome {
    /// The outcome an HTTP status stands for.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::Denied,
            status if status < 400 => Self::Success,
            _ => Self::Failed,
        }
    }
}

/// One thing that happened, before the store places it in its chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: AuditId,
    /// The chain it belongs to: the acting tenant, or [`platform_tenant`].
    pub tenant_id: TenantId,
    /// Who acted: `key:<id>`, `user:<id>` or [`ANONYMOUS`].
    pub actor: String,
    /// What was done: the HTTP method and route template (`POST /agents/{agent_id}/pause`), or a
    /// named event such as `auth.login`.
    pub action: String,
    /// What it was done to: the request path with its parameters (`/agents/0190…/pause`).
    pub target: String,
    /// The agent it concerns, if any.
    pub agent_id: Option<AgentId>,
    /// The HTTP status of the answer.
    pub status: u16,
    pub outcome: AuditOutcome,
    /// The caller's address, as the server saw it (or as `X-Forwarded-For` gave it).
    pub client_addr: Option<String>,
    /// The request id (`X-Request-Id`), to find the request's log lines.
    pub request_id: Option<String>,
    pub created_at: Timestamp,
}

impl AuditRecord {
    /// The record of an agent event that no request's own record covers: one the server made by
    /// itself (a health change found by the sweeper; `actor` is [`SYSTEM`]), or one a request made
    /// that is not recorded when it succeeds (a heartbeat's health change; `actor` is its
    /// principal's label). The action is `agent.<kind>` (`agent.health_changed`), the target the
    /// agent's path, and `status` 0, since no HTTP answer belongs to it; the outcome is a success.
    pub fn of_agent_event(event: &crate::agent::AgentEvent, actor: String) -> Self {
        Self {
            id: AuditId::new(),
            tenant_id: event.tenant_id,
            actor,
            action: format!("agent.{}", event.kind.as_str()),
            target: format!("/agents/{}", event.agent_id),
            agent_id: Some(event.agent_id),
            status: 0,
            outcome: AuditOutcome::Success,
            client_addr: None,
            request_id: None,
            created_at: event.created_at,
        }
    }
}

/// A record in its chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub record: AuditRecord,
    /// Its place in the tenant's chain, from 1.
    pub seq: u64,
    /// The `hash` of the entry before it ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of the canonical encoding of this entry, `prev_hash` included.
    pub hash: String,
}

impl AuditEntry {
    /// Places `record` at `seq` after the entry whose hash is `prev_hash`, computing its hash.
    pub fn chain(record: AuditRecord, seq: u64, prev_hash: String) -> Self {
        let hash = entry_hash(&record, seq, &prev_hash);
        Self {
            record,
            seq,
            prev_hash,
            hash,
        }
    }

    /// The hash this entry's fields call for (equal to `hash` unless the entry was altered).
    pub fn computed_hash(&self) -> String {
        entry_hash(&self.record, self.seq, &self.prev_hash)
    }
}

/// The canonical encoding of an entry (see the module documentation), which its hash covers.
pub fn canonical_bytes(record: &AuditRecord, seq: u64, prev_hash: &str) -> Vec<u8> {
    let fields: [Option<String>; 14] = [
        Some(ENCODING_VERSION.to_owned()),
        Some(record.id.to_string()),
        Some(record.tenant_id.to_string()),
        Some(seq.to_string()),
        Some(record.created_at.timestamp_millis().to_string()),
        Some(record.actor.clone()),
        Some(record.action.clone()),
        Some(record.target.clone()),
        record.agent_id.map(|id| id.to_string()),
        Some(record.status.to_string()),
        Some(record.outcome.as_str().to_owned()),
        record.client_addr.clone(),
        record.request_id.clone(),
        Some(prev_hash.to_owned()),
    ];
    let mut bytes = Vec::with_capacity(256);
    for field in fields {
        match field {
            Some(text) => {
                let length = u32::try_from(text.len()).unwrap_or(u32::MAX - 1);
                bytes.extend_from_slice(&length.to_be_bytes());
                bytes.extend_from_slice(&text.as_bytes()[..length as usize]);
            }
            None => bytes.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
    }
    bytes
}

/// Hex SHA-256 of the entry's canonical encoding.
pub fn entry_hash(record: &AuditRecord, seq: u64, prev_hash: &str) -> String {
    crate::sha256_hex(&canonical_bytes(record, seq, prev_hash))
}

/// What makes a chain fail verification, at the first entry that does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainBreak {
    /// The entry's `seq` is not the next one: entries before it were deleted, or rows were reordered.
    Gap {
        expected_seq: u64,
        found_seq: u64,
        id: AuditId,
    },
    /// The entry does not link to the one before it.
    Link {
        seq: u64,
        id: AuditId,
        stored: String,
        expected: String,
    },
    /// The entry's fields do not hash to its stored hash: it was altered.
    Hash {
        seq: u64,
        id: AuditId,
        stored: String,
        computed: String,
    },
    /// The chain ends before its recorded head: its last entries were deleted (or the head altered).
    Truncated {
        head_seq: u64,
        head_hash: String,
        last_seq: u64,
        last_hash: String,
    },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gap {
                expected_seq,
                found_seq,
                id,
            } => write!(
                f,
                "expected seq {expected_seq} but found seq {found_seq} (entry {id}): entries are \
                 missing or were reordered"
            ),
            Self::Link {
                seq,
                id,
                stored,
                expected,
            } => write!(
                f,
                "seq {seq} (entry {id}): prev_hash {stored} does not match the hash of the entry \
                 before it, {expected}"
            ),
            Self::Hash {
                seq,
                id,
                stored,
                computed,
            } => write!(
                f,
                "seq {seq} (entry {id}): stored hash {stored} does not match its contents, which \
                 hash to {computed}: the entry was altered"
            ),
            Self::Truncated {
                head_seq,
                head_hash,
                last_seq,
                last_hash,
            } => write!(
                f,
                "the chain's head is seq {head_seq} (hash {head_hash}) but its last entry is seq \
                 {last_seq} (hash {last_hash}): entries after seq {last_seq} were deleted"
            ),
        }
    }
}

/// Walks one chain in `seq` order and stops at the first entry that does not fit.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    last_seq: u64,
    last_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            last_seq: 0,
            last_hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl ChainVerifier {
    /// A verifier at the start of a chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next entry: its seq follows the last one, it links to it, and it hashes to its hash.
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let id = entry.record.id;
        if entry.seq != self.last_seq + 1 {
            return Err(ChainBreak::Gap {
                expected_seq: self.last_seq + 1,
                found_seq: entry.seq,
                id,
            });
        }
        if entry.prev_hash != self.last_hash {
            return Err(ChainBreak::Link {
                seq: entry.seq,
                id,
                stored: entry.prev_hash.clone(),
                expected: self.last_hash.clone(),
            });
        }
        let computed = entry.computed_hash();
        if computed != entry.hash {
            return Err(ChainBreak::Hash {
                seq: entry.seq,
                id,
                stored: entry.hash.clone(),
                computed,
            });
        }
        self.last_seq = entry.seq;
        self.last_hash = entry.hash.clone();
        Ok(())
    }

    /// Ends the walk against the chain's recorded head (`seq`, `hash`), which catches deleted last
    /// entries; returns how many entries were checked.
    pub fn finish(self, head: Option<(u64, &str)>) -> Result<u64, ChainBreak> {
        match head {
            Some((head_seq, head_hash))
                if head_seq != self.last_seq || head_hash != self.last_hash =>
            {
                Err(ChainBreak::Truncated {
                    head_seq,
                    head_hash: head_hash.to_owned(),
                    last_seq: self.last_seq,
                    last_hash: self.last_hash,
                })
            }
            _ => Ok(self.last_seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            id: AuditId::new(),
            tenant_id: TenantId::new(),
            actor: "key:0190".to_owned(),
            action: action.to_owned(),
            target: "/agents".to_owned(),
            agent_id: None,
            status: 201,
            outcome: AuditOutcome::Success,
            client_addr: Some("127.0.0.1:5000".to_owned()),
            request_id: None,
            created_at: crate::now(),
        }
    }

    fn chain(actions: &[&str]) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                let entry = AuditEntry::chain(record(action), i as u64 + 1, prev.clone());
                prev = entry.hash.clone();
                entry
            })
            .collect()
    }

    fn verify(entries: &[AuditEntry], head: Option<(u64, &str)>) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::new();
        for entry in entries {
            verifier.check(entry)?;
        }
        verifier.finish(head)
    }

    #[test]
    fn a_chain_verifies_and_every_change_breaks_it() {
        let entries = chain(&["POST /agents", "POST /keys", "DELETE /keys/{key_id}"]);
        let head = entries.last().map(|e| (e.seq, e.hash.as_str()));
        assert_eq!(verify(&entries, head), Ok(3));

        let mut altered = entries.clone();
        altered[1].record.status = 200;
        assert!(matches!(
            verify(&altered, head),
            Err(ChainBreak::Hash { seq: 2, .. })
        ));

        let mut deleted = entries.clone();
        deleted.remove(1);
        assert!(matches!(
            verify(&deleted, head),
            Err(ChainBreak::Gap {
                expected_seq: 2,
                found_seq: 3,
                ..
            })
        ));

        let mut truncated = entries.clone();
        truncated.pop();
        assert!(matches!(
            verify(&truncated, head),
            Err(ChainBreak::Truncated { last_seq: 2, .. })
        ));

        // Renumbering after a deletion still breaks the link.
        let mut renumbered = deleted.clone();
        renumbered[1].seq = 2;
        assert!(matches!(
            verify(&renumbered, None),
            Err(ChainBreak::Link { seq: 2, .. })
        ));
    }

    #[test]
    fn optional_fields_and_lengths_cannot_be_confused() {
        let mut a = record("x");
        a.client_addr = None;
        let mut b = a.clone();
        b.client_addr = Some(String::new());
        assert_ne!(
            canonical_bytes(&a, 1, GENESIS_HASH),
            canonical_bytes(&b, 1, GENESIS_HASH)
        );
        let mut c = a.clone();
        c.actor = "ab".to_owned();
        c.action = "c".to_owned();
        let mut d = a.clone();
        d.actor = "a".to_owned();
        d.action = "bc".to_owned();
        assert_ne!(
            entry_hash(&c, 1, GENESIS_HASH),
            entry_hash(&d, 1, GENESIS_HASH)
        );
        assert_eq!(entry_hash(&a, 1, GENESIS_HASH).len(), 64);
    }

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(AuditOutcome::from_status(201), AuditOutcome::Success);
        assert_eq!(AuditOutcome::from_status(401), AuditOutcome::Denied);
        assert_eq!(AuditOutcome::from_status(403), AuditOutcome::Denied);
        assert_eq!(AuditOutcome::from_status(404), AuditOutcome::Failed);
        assert_eq!(AuditOutcome::from_status(500), AuditOutcome::Failed);
    }
}
