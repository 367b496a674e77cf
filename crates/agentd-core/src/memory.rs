//! User memories: facts kept about a user across sessions (AgentOS's `UserMemory`). A memory belongs
//! to a tenant and a user, and may name the agent or team that learned it.

use crate::{MemoryId, TenantId, Timestamp};

/// One memory about a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memory {
    pub tenant_id: TenantId,
    pub id: MemoryId,
    /// Whom the memory is about (the client's user id, as on sessions and runs).
    pub user_id: String,
    /// The agent that learned it, if any.
    pub agent_id: Option<String>,
    /// The team that learned it, if any.
    pub team_id: Option<String>,
    /// The fact itself.
    pub memory: String,
    /// Keywords, in the order given, without duplicates.
    pub topics: Vec<String>,
    /// The input the memory was drawn from.
    pub input: Option<String>,
    /// What the user said about the memory.
    pub feedback: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
