//! agentd's persistence. Services talk to the [`Store`] traits; the SQLite and PostgreSQL backends
//! implement them with the same SQL (see [`sql`]). Only this crate knows sqlx and SQL.
//!
//! Every method that reads or writes tenant data takes the tenant (directly, or inside the record it
//! writes) and filters on it. The one read that cannot know the tenant beforehand is
//! [`KeyStore::find_key_by_hash`]: the key's hash *is* the credential that names the tenant. Two
//! system reads visit every tenant on purpose: [`TenantStore::list_tenant_ids`] (for jobs such as the
//! health sweeper) and [`RunStore::list_unfinished_runs`] (a restarting node's own runs); and
//! [`AuditStore::audit_chains`] lists every tenant's audit chain for `agentd audit verify`; and
//! [`KnowledgeStore::fail_interrupted_contents`] fails the contents a restarting node left
//! processing (by node, like the runs).

use std::sync::Arc;

use agentd_core::agent::{
    Agent, AgentEvent, AgentHealth, AgentResources, AgentStatus, AgentVersion, Capability,
    Endorsement,
};
use agentd_core::audit::{AuditEntry, AuditOutcome, AuditRecord};
use agentd_core::knowledge::{Chunk, Content};
use agentd_core::memory::Memory;
use agentd_core::run::{Run, RunEvent, RunStatus, Session, SessionId, SessionKind};
use agentd_core::user::{StoredToken, TokenKind};
use agentd_core::{
    AgentId, ApiKey, ChunkId, ContentId, EventId, KeyId, MemoryId, RunId, Tenant, TenantId,
    TenantSlug, Timestamp,
};
use agentd_core::{Email, Role, User, UserId};
use async_trait::async_trait;

mod agent_cache;
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
pub trait Store:
    TenantStore
    + KeyStore
    + AgentStore
    + IdentityStore
    + CapabilityStore
    + ResourceStore
    + SessionStore
    + RunStore
    + UsageStore
    + AuditStore
    + UserStore
    + MemoryStore
    + KnowledgeStore
    + Send
    + Sync
    + 'static
{
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
    ) -> Result<bool, StoreError> {
        self.create_tenant_with_owner(tenant, key, None).await
    }
    /// Like [`TenantStore::create_tenant_with_key`], with the tenant's first user (its owner) in the
    /// same transaction, so no tenant is left without the owner it was made for.
    async fn create_tenant_with_owner(
        &self,
        tenant: &Tenant,
        key: &ApiKey,
        owner: Option<&agentd_core::user::User>,
    ) -> Result<bool, StoreError>;
    /// Every tenant's id, for system jobs (such as the health sweeper) that visit each tenant in turn.
    async fn list_tenant_ids(&self) -> Result<Vec<TenantId>, StoreError>;
    /// Puts a tenant on a plan (`None`: the default plan); `false` when there is no such tenant.
    async fn set_tenant_plan(&self, id: TenantId, plan: Option<&str>) -> Result<bool, StoreError>;
}

/// Users of a tenant, ordered by id (creation order); an email is unique within a tenant.
#[async_trait]
pub trait UserStore {
    /// Inserts a user; an email the tenant already has is a [`StoreError::Conflict`].
    async fn insert_user(&self, user: &User) -> Result<(), StoreError>;
    /// One user of the tenant.
    async fn get_user(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError>;
    /// The tenant's user with this email.
    async fn find_user_by_email(
        &self,
        tenant: TenantId,
        email: &Email,
    ) -> Result<Option<User>, StoreError>;
    /// Up to `limit` users of the tenant with ids after `after`.
    async fn list_users(
        &self,
        tenant: TenantId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;
    /// Writes a user's name, role, `updated_at` and `last_login_at`; `false` if there is no such user.
    async fn update_user(&self, user: &User) -> Result<bool, StoreError>;
    /// Deletes a user with their tokens; `false` if the tenant has no such user.
    async fn delete_user(&self, tenant: TenantId, id: UserId) -> Result<bool, StoreError>;
    /// How many users of the tenant have `role`.
    async fn count_users_with_role(&self, tenant: TenantId, role: Role) -> Result<u64, StoreError>;

    /// Stores a one-time token (by hash).
    async fn insert_token(&self, token: &StoredToken) -> Result<(), StoreError>;
    /// Marks the token of this kind and hash used at `now`, if it is unused and unexpired, and
    /// returns it; else returns what is stored (used or expired), or `None` for an unknown token.
    /// Two callers racing for one token: only one gets it back with `used_at == now` from this call.
    async fn use_token(
        &self,
        kind: TokenKind,
        hash: &str,
        now: Timestamp,
    ) -> Result<TokenUse, StoreError>;
    /// Marks every unused refresh token of a user used (logout everywhere).
    async fn revoke_user_tokens(
        &self,
        tenant: TenantId,
        user: UserId,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Stores an OAuth login in flight.
    async fn insert_oauth_state(&self, state: &OAuthState) -> Result<(), StoreError>;
    /// Removes and returns the OAuth login with this state hash, so a `state` works once.
    async fn take_oauth_state(&self, hash: &str) -> Result<Option<OAuthState>, StoreError>;

    /// The signing key for `purpose`, inserting `candidate` first if there is none. Nodes racing on
    /// an empty table all get the one that was inserted first.
    async fn signing_key(
        &self,
        candidate: &SigningKeyRecord,
    ) -> Result<SigningKeyRecord, StoreError>;
}

/// What [`UserStore::use_token`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenUse {
    /// The token was valid and is now used.
    Used(StoredToken),
    /// The token had been used before.
    AlreadyUsed,
    /// The token has expired.
    Expired,
    /// No such token.
    Unknown,
}

/// An OAuth login between the redirect to the provider and its callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthState {
    /// SHA-256 of the `state` parameter.
    pub hash: String,
    pub provider: String,
    pub tenant_id: TenantId,
    /// The PKCE verifier whose challenge went to the provider.
    pub code_verifier: String,
    /// Where to send the browser after login.
    pub redirect_to: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A server signing key: the private half sealed with the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// What the key signs (`jwt`).
    pub purpose: String,
    /// Its key id, as published in the JWKS.
    pub kid: String,
    /// Base64 of the public key.
    pub public_key: String,
    pub private_sealed: String,
    pub created_at: Timestamp,
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
    /// Up to `limit` keys of the tenant bound to `agent`, with ids after `after`, oldest first.
    async fn list_agent_keys(
        &self,
        tenant: TenantId,
        agent: AgentId,
        after: Option<KeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError>;
    /// Gives `key` (found by tenant and id) its new secret (`prefix`, `hash`) and clears its last use,
    /// if its stored hash is still `old_hash`; `false` (nothing written) if it was rotated or deleted
    /// meanwhile. Name, scopes, agent and expiry are kept.
    async fn replace_key_secret(&self, key: &ApiKey, old_hash: &str) -> Result<bool, StoreError>;
}

/// Which agents a list returns. Unset fields do not filter; terminated agents are left out unless
/// `status` asks for them.
#[derive(Clone, Debug, Default)]
pub struct AgentFilter {
    pub status: Option<AgentStatus>,
    pub health: Option<AgentHealth>,
    pub tag: Option<String>,
    pub team_id: Option<String>,
    pub owner: Option<String>,
    pub name_prefix: Option<String>,
    /// Only agents with this capability.
    pub capability: Option<String>,
    /// Only these agents (a key scoped to some agents lists just those).
    pub ids: Option<Vec<AgentId>>,
}

/// What a compare-and-set update found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// The change was written.
    Applied,
    /// The agent exists but not in the expected state (holds the current version or status).
    Stale(String),
    /// The tenant has no such agent.
    Missing,
}

/// Agents, their spec versions and their event logs. Writes that change an agent append their events
/// in the same transaction, so the log never misses a change and never records one that did not happen.
#[async_trait]
pub trait AgentStore {
    /// Inserts a new agent (its version 1, tags and identity) with its first events. `agent.public_key`
    /// and `sealed_private_key` are the two halves of its identity: give both or neither.
    async fn create_agent(
        &self,
        agent: &Agent,
        sealed_private_key: Option<&str>,
        events: &[AgentEvent],
    ) -> Result<(), StoreError>;
    /// One agent of the tenant.
    async fn get_agent(&self, tenant: TenantId, id: AgentId) -> Result<Option<Agent>, StoreError>;
    /// Up to `limit` agents of the tenant matching `filter`, with ids after `after`, oldest first.
    async fn list_agents(
        &self,
        tenant: TenantId,
        filter: &AgentFilter,
        after: Option<AgentId>,
        limit: u32,
    ) -> Result<Vec<Agent>, StoreError>;
    /// Replaces the spec of `agent` (whose `version` is the new one) if the stored version is still
    /// `expected_version`; stores the new version and `event`.
    async fn update_agent_spec(
        &self,
        agent: &Agent,
        expected_version: u32,
        event: &AgentEvent,
    ) -> Result<Update, StoreError>;
    /// Moves the agent from status `from` to `to` if it is still in `from`, appending `events`.
    async fn transition_agent(
        &self,
        tenant: TenantId,
        id: AgentId,
        from: AgentStatus,
        to: AgentStatus,
        events: &[AgentEvent],
    ) -> Result<Update, StoreError>;
    /// Records an agent's derived health, and the time it was last heard from when `heard_at` is set.
    async fn record_agent_health(
        &self,
        tenant: TenantId,
        id: AgentId,
        health: AgentHealth,
        heard_at: Option<Timestamp>,
        events: &[AgentEvent],
    ) -> Result<Update, StoreError>;
    /// Up to `limit` agents of the tenant whose health is watched (remote agents, and agents that have
    /// sent a heartbeat), not stopped or terminated, with ids after `after`.
    async fn list_monitored_agents(
        &self,
        tenant: TenantId,
        after: Option<AgentId>,
        limit: u32,
    ) -> Result<Vec<Agent>, StoreError>;
    /// Every spec version of the agent, oldest first.
    async fn list_agent_versions(
        &self,
        tenant: TenantId,
        id: AgentId,
    ) -> Result<Vec<AgentVersion>, StoreError>;
    /// Up to `limit` events of the agent after `after`, oldest first.
    async fn list_agent_events(
        &self,
        tenant: TenantId,
        id: AgentId,
        after: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<AgentEvent>, StoreError>;
}

/// An agent's Ed25519 identity as stored: the public key (base64) and the PKCS#8 private key sealed
/// with the master key. The store never sees the private key in clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedIdentity {
    pub public_key: String,
    pub sealed_private_key: String,
}

/// Agents' identities (the columns beside the agent row that [`AgentStore::create_agent`] fills).
#[async_trait]
pub trait IdentityStore {
    /// The identity of one agent of the tenant; `None` if there is no such agent or it has none yet.
    async fn get_agent_identity(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<Option<SealedIdentity>, StoreError>;
    /// Gives an agent of the tenant its identity if it has none yet; `false` (nothing written) if it
    /// has one already or there is no such agent. Nodes racing to give one agent an identity: one wins.
    async fn set_agent_identity(
        &self,
        tenant: TenantId,
        agent: AgentId,
        identity: &SealedIdentity,
    ) -> Result<bool, StoreError>;
    /// The tenant's agent with this public key (base64), if any.
    async fn find_agent_by_public_key(
        &self,
        tenant: TenantId,
        public_key: &str,
    ) -> Result<Option<AgentId>, StoreError>;
}

/// Agents' capabilities and their endorsements. Declared skills become capabilities automatically.
#[async_trait]
pub trait CapabilityStore {
    /// The agent's capabilities, by name, with endorsement counts.
    async fn list_capabilities(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<Vec<Capability>, StoreError>;
    /// One capability of the agent.
    async fn get_capability(
        &self,
        tenant: TenantId,
        agent: AgentId,
        name: &str,
    ) -> Result<Option<Capability>, StoreError>;
    /// Adds a capability; an existing name is a [`StoreError::Conflict`].
    async fn add_capability(
        &self,
        capability: &Capability,
        event: &AgentEvent,
    ) -> Result<(), StoreError>;
    /// Replaces a capability's description, proficiency and experience.
    async fn update_capability(
        &self,
        capability: &Capability,
        event: &AgentEvent,
    ) -> Result<Update, StoreError>;
    /// Records an endorsement; a second one by the same endorser is a [`StoreError::Conflict`].
    async fn add_endorsement(
        &self,
        endorsement: &Endorsement,
        event: &AgentEvent,
    ) -> Result<(), StoreError>;
}

/// Agents' resource limits and usage.
#[async_trait]
pub trait ResourceStore {
    /// The agent's stored resources; `None` until first saved.
    async fn get_resources(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<Option<AgentResources>, StoreError>;
    /// Saves `resources` (whose `version` is the new one) if the stored version is still
    /// `expected_version` (0: not stored yet), appending `events`.
    async fn save_resources(
        &self,
        resources: &AgentResources,
        expected_version: u64,
        events: &[AgentEvent],
    ) -> Result<Update, StoreError>;
}

/// Which sessions a list returns. Unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub kind: Option<SessionKind>,
    pub component_id: Option<String>,
    pub user_id: Option<String>,
    /// Sessions whose name contains this text (case-insensitive for ASCII).
    pub name_contains: Option<String>,
}

/// Where a session list resumes: after the session with this creation time and id (lists go newest
/// first, as AgentOS's do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionCursor {
    pub created_at: Timestamp,
    pub id: SessionId,
}

/// Sessions: conversations whose runs are rows of their own.
#[async_trait]
pub trait SessionStore {
    /// Inserts the session unless the tenant has one with its id; `false` (and nothing written) if it
    /// exists already.
    async fn create_session(&self, session: &Session) -> Result<bool, StoreError>;
    /// One session of the tenant.
    async fn get_session(
        &self,
        tenant: TenantId,
        id: &SessionId,
    ) -> Result<Option<Session>, StoreError>;
    /// Up to `limit` sessions of the tenant matching `filter`, newest first, after `after`; and how many
    /// sessions match the filter in all.
    async fn list_sessions(
        &self,
        tenant: TenantId,
        filter: &SessionFilter,
        after: Option<&SessionCursor>,
        limit: u32,
    ) -> Result<(Vec<Session>, u64), StoreError>;
    /// Replaces the session's name, state, metadata, summary, policy and `updated_at`; `false` if the
    /// tenant has no such session.
    async fn update_session(&self, session: &Session) -> Result<bool, StoreError>;
    /// Deletes the tenant's sessions with these ids, with their runs and run events; how many sessions
    /// were deleted.
    async fn delete_sessions(&self, tenant: TenantId, ids: &[SessionId])
        -> Result<u64, StoreError>;
}

/// Which runs a list returns. Unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub agent_id: Option<AgentId>,
    pub session_id: Option<SessionId>,
    pub status: Option<RunStatus>,
}

/// Figures over an agent's finished runs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunStats {
    pub total: u64,
    pub completed: u64,
    pub errored: u64,
    pub cancelled: u64,
    /// Mean `metrics.duration` of finished runs, in seconds.
    pub average_duration: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Tokens one agent's finished runs used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentUsage {
    pub agent_id: AgentId,
    pub runs: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Runs and their event logs. A run row and the events it emits are written in one transaction, so
/// the log and the run's status never disagree.
#[async_trait]
pub trait RunStore {
    /// Inserts a new run (its `last_seq` must be the last of `events`) with its first events.
    async fn insert_run(&self, run: &Run, events: &[RunEvent]) -> Result<(), StoreError>;
    /// One run of the tenant.
    async fn get_run(&self, tenant: TenantId, id: RunId) -> Result<Option<Run>, StoreError>;
    /// Saves every mutable field of `run` and appends `events` if the stored `last_seq` is still
    /// `expected_last_seq`; `Stale` (holding the stored status) otherwise.
    async fn save_run(
        &self,
        run: &Run,
        expected_last_seq: u64,
        events: &[RunEvent],
    ) -> Result<Update, StoreError>;
    /// Up to `limit` runs of the tenant matching `filter`, with ids after `after`, oldest first.
    async fn list_runs(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: u32,
    ) -> Result<Vec<Run>, StoreError>;
    /// The last `limit` runs of a session with status `completed`, oldest first: the history a new
    /// run of the session sees.
    async fn session_history(
        &self,
        tenant: TenantId,
        session: &SessionId,
        limit: u32,
    ) -> Result<Vec<Run>, StoreError>;
    /// Up to `limit` events of the run with `seq` greater than `after_seq`, in order.
    async fn list_run_events(
        &self,
        tenant: TenantId,
        run: RunId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<RunEvent>, StoreError>;
    /// Runs that `node` left `pending` or `running`, in every tenant: what a restarting node must end.
    async fn list_unfinished_runs(&self, node: &str) -> Result<Vec<(TenantId, RunId)>, StoreError>;
    /// Tokens used by the tenant's finished runs, per agent, ordered by agent id.
    async fn tenant_usage(&self, tenant: TenantId) -> Result<Vec<AgentUsage>, StoreError>;
    /// Figures over the agent's runs.
    async fn agent_run_stats(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<RunStats, StoreError>;
}

/// One model call made straight through the gateway (not by a run), as metered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCall {
    pub id: EventId,
    pub tenant_id: TenantId,
    pub key_id: Option<KeyId>,
    /// The model as the caller named it (`provider/model` or a route).
    pub model: String,
    /// Which route: `chat.completions`, `completions`, `embeddings`, `llm.generate`…
    pub endpoint: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub created_at: Timestamp,
}

/// Usage added up per key, agent and model over a time range: runs (with their agent) and gateway
/// model calls (without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub key_id: Option<KeyId>,
    pub agent_id: Option<AgentId>,
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Metering. Runs are metered from their own rows; gateway calls from [`ModelCall`]s.
#[async_trait]
pub trait UsageStore {
    /// Records a gateway model call.
    async fn insert_model_call(&self, call: &ModelCall) -> Result<(), StoreError>;
    /// The tenant's usage created in `[from, to)`, grouped by key, agent and model, ordered by them.
    async fn usage_rows(
        &self,
        tenant: TenantId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UsageRow>, StoreError>;
    /// Tokens (prompt + completion) the tenant used since `from`, runs and gateway calls together.
    async fn tokens_since(&self, tenant: TenantId, from: Timestamp) -> Result<u64, StoreError>;
}

/// Which audit entries a list returns. Unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only entries of this actor (`key:<id>`, `user:<id>`, `anonymous`).
    pub actor: Option<String>,
    /// Only entries with this action (`POST /agents/{agent_id}/pause`).
    pub action: Option<String>,
    /// Only entries whose target starts with this (`/agents/<id>` matches the agent's sub-resources).
    pub target_prefix: Option<String>,
    /// Only entries concerning this agent.
    pub agent_id: Option<AgentId>,
    pub outcome: Option<AuditOutcome>,
    /// Only entries created at or after this time.
    pub from: Option<Timestamp>,
    /// Only entries created before this time.
    pub to: Option<Timestamp>,
}

/// The audit log: one hash chain per tenant (see `agentd_core::audit`), append-only. Besides the
/// entries, the store keeps each chain's head (last seq and hash) so that deleting the last entries
/// is found too.
#[async_trait]
pub trait AuditStore {
    /// Appends `records` to their tenants' chains in one transaction, in order within each chain, and
    /// returns them as stored. Safe when several nodes append at once: each chain is locked for the
    /// transaction (SQLite has one writer; PostgreSQL takes an advisory lock per chain).
    async fn append_audit(&self, records: &[AuditRecord]) -> Result<Vec<AuditEntry>, StoreError>;
    /// Up to `limit` entries of the tenant matching `filter`, newest first, with seq below `before`.
    async fn list_audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// Up to `limit` entries of one chain with seq above `after`, in seq order: for verification.
    async fn audit_chain(
        &self,
        tenant: TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// Every chain (its tenant id, including the platform chain's nil id) with its recorded head
    /// `(seq, hash)`, if one is recorded: the system read `agentd audit verify` walks.
    async fn audit_chains(&self) -> Result<Vec<(TenantId, Option<(u64, String)>)>, StoreError>;
}

/// Which memories a list returns. Unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct MemoryFilter {
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub team_id: Option<String>,
    /// Only memories with every one of these topics.
    pub topics: Vec<String>,
    /// Memories whose text contains this (case-insensitive for ASCII).
    pub text_contains: Option<String>,
}

/// The time a memory list is ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemorySortField {
    CreatedAt,
    /// AgentOS's default.
    #[default]
    UpdatedAt,
}

/// How a memory list is ordered: by a time, then by id, in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySort {
    pub by: MemorySortField,
    /// Newest first when set.
    pub descending: bool,
}

/// AgentOS's default: the most recently updated first.
impl Default for MemorySort {
    fn default() -> Self {
        Self {
            by: MemorySortField::UpdatedAt,
            descending: true,
        }
    }
}

/// Where a memory list starts: after skipping some memories (AgentOS's page numbers), or after the
/// memory with this sort time and id (cursors, which do not shift when memories are added).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryStart {
    Offset(u64),
    After { at: Timestamp, id: MemoryId },
}

/// How many memories one user has and when the last of them changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserMemoryStats {
    pub user_id: String,
    pub total_memories: u64,
    pub last_memory_updated_at: Timestamp,
}

/// User memories. A memory's topics are kept beside it, so lists filter by topic and the tenant's
/// topics are listed without reading every memory.
#[async_trait]
pub trait MemoryStore {
    /// Inserts a memory with its topics; an id the tenant has is a [`StoreError::Conflict`].
    async fn insert_memory(&self, memory: &Memory) -> Result<(), StoreError>;
    /// One memory of the tenant.
    async fn get_memory(
        &self,
        tenant: TenantId,
        id: MemoryId,
    ) -> Result<Option<Memory>, StoreError>;
    /// Up to `limit` memories of the tenant matching `filter`, in `sort` order from `start`; and how
    /// many match the filter in all.
    async fn list_memories(
        &self,
        tenant: TenantId,
        filter: &MemoryFilter,
        sort: MemorySort,
        start: &MemoryStart,
        limit: u32,
    ) -> Result<(Vec<Memory>, u64), StoreError>;
    /// Replaces a memory's text, topics, agent, team, input, feedback and `updated_at` (its user and
    /// creation time stay); `false` if the tenant has no such memory.
    async fn update_memory(&self, memory: &Memory) -> Result<bool, StoreError>;
    /// Deletes the tenant's memories with these ids (only `user`'s, when given); how many were deleted.
    async fn delete_memories(
        &self,
        tenant: TenantId,
        ids: &[MemoryId],
        user: Option<&str>,
    ) -> Result<u64, StoreError>;
    /// The distinct topics of the tenant's memories (of `user`'s only, when given), sorted.
    async fn memory_topics(
        &self,
        tenant: TenantId,
        user: Option<&str>,
    ) -> Result<Vec<String>, StoreError>;
    /// Per user (only `user`, when given): how many memories and the latest update, most recently
    /// updated first, skipping `offset` users; and how many users have memories in all.
    async fn user_memory_stats(
        &self,
        tenant: TenantId,
        user: Option<&str>,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<UserMemoryStats>, u64), StoreError>;
}

/// What [`KnowledgeStore::insert_content`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum ContentInsert {
    /// The content was stored (replacing a `failed` one with the same hash, if there was one).
    Inserted,
    /// The tenant has a content with the same hash that has not failed: nothing was written.
    Duplicate(Box<Content>),
}

/// Where a content list starts: after skipping some contents (page numbers), or after this content
/// in list order (newest first), for cursors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentStart {
    Offset(u64),
    After(ContentId),
}

/// Which chunks a search considers: those of contents whose metadata has each of these top-level
/// keys with exactly this value (compared as JSON text, see [`metadata_value_text`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkFilter {
    pub metadata: Vec<(String, serde_json::Value)>,
}

/// A chunk found by a search, with its rank score (higher is better).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredChunk {
    pub chunk_id: ChunkId,
    pub score: f64,
}

/// A chunk with what a search result shows of its content.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkHit {
    pub chunk_id: ChunkId,
    pub content_id: ContentId,
    pub seq: u32,
    pub text: String,
    pub content_name: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// The text a metadata value is stored and compared as: its compact JSON (`"a"`, `1`, `true`).
pub fn metadata_value_text(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Knowledge contents and their chunks. A content's chunks are written in one transaction with its
/// move to `completed`, so a content has all its chunks or none. Keyword search is the backend's
/// full-text index (SQLite FTS5, PostgreSQL `tsvector` with a GIN index); vector search is exact
/// cosine over the tenant's embeddings, computed here while the rows stream by.
#[async_trait]
pub trait KnowledgeStore {
    /// Stores a new `processing` content with its metadata, unless the tenant has a content with
    /// the same hash that has not failed (then that one is returned and nothing is written). A
    /// `failed` content with the same hash is replaced. Safe to race: one upload wins.
    async fn insert_content(&self, content: &Content) -> Result<ContentInsert, StoreError>;
    /// One content of the tenant.
    async fn get_content(
        &self,
        tenant: TenantId,
        id: ContentId,
    ) -> Result<Option<Content>, StoreError>;
    /// Up to `limit` contents of the tenant, newest first, from `start`; and how many it has.
    async fn list_contents(
        &self,
        tenant: TenantId,
        start: ContentStart,
        limit: u32,
    ) -> Result<(Vec<Content>, u64), StoreError>;
    /// Replaces a content's name, description, metadata and `updated_at`; `false` if the tenant has
    /// no such content.
    async fn update_content_details(&self, content: &Content) -> Result<bool, StoreError>;
    /// In one transaction: marks a `processing` content `completed` with `chunks.len()` chunks, the
    /// embedder they were embedded with and `message`, and writes the chunks (indexed for keyword
    /// search). `false`, writing nothing, when the content is gone or no longer `processing`.
    async fn complete_content(
        &self,
        tenant: TenantId,
        id: ContentId,
        chunks: &[Chunk],
        embedder: Option<&str>,
        message: Option<&str>,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Marks a `processing` content `failed` with `reason`; `false` when it is gone or not
    /// `processing`.
    async fn fail_content(
        &self,
        tenant: TenantId,
        id: ContentId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes a content with its chunks and metadata; `false` if the tenant has no such content.
    async fn delete_content(&self, tenant: TenantId, id: ContentId) -> Result<bool, StoreError>;
    /// Deletes every content of the tenant; how many there were.
    async fn delete_all_contents(&self, tenant: TenantId) -> Result<u64, StoreError>;
    /// System level, for a node's start: fails every content `node` left `processing`, in every
    /// tenant, with `reason`; how many.
    async fn fail_interrupted_contents(
        &self,
        node: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError>;
    /// A content's chunks in order.
    async fn list_chunks(
        &self,
        tenant: TenantId,
        content: ContentId,
    ) -> Result<Vec<Chunk>, StoreError>;
    /// The best `limit` chunks of the tenant matching any of `words` in the full-text index (stemmed
    /// English), best first, with the backend's relevance score.
    async fn keyword_search(
        &self,
        tenant: TenantId,
        words: &[String],
        filter: &ChunkFilter,
        limit: u32,
    ) -> Result<Vec<ScoredChunk>, StoreError>;
    /// The `limit` chunks of the tenant embedded by `embedder` whose embeddings are nearest to
    /// `vector` by cosine similarity (exact: every candidate is compared), best first; chunks with
    /// a similarity of 0 or less (or of another dimension) are left out.
    async fn nearest_chunks(
        &self,
        tenant: TenantId,
        embedder: &str,
        vector: &[f32],
        filter: &ChunkFilter,
        limit: u32,
    ) -> Result<Vec<ScoredChunk>, StoreError>;
    /// A number that changes whenever the tenant's chunks do (a content completed or deleted), on
    /// any node: what an in-memory copy of the embeddings is checked against. 0 before any change.
    async fn knowledge_version(&self, tenant: TenantId) -> Result<i64, StoreError>;
    /// Every embedding of the tenant's chunks embedded by `embedder`, with the chunk's id, for an
    /// in-memory index.
    async fn chunk_embeddings(
        &self,
        tenant: TenantId,
        embedder: &str,
    ) -> Result<Vec<(ChunkId, Vec<f32>)>, StoreError>;
    /// The chunks of the tenant with these ids, with their contents' names and metadata, in no
    /// particular order; ids the tenant does not have are skipped.
    async fn get_chunk_hits(
        &self,
        tenant: TenantId,
        ids: &[ChunkId],
    ) -> Result<Vec<ChunkHit>, StoreError>;
    /// The distinct top-level metadata keys of the tenant's contents, sorted.
    async fn knowledge_metadata_keys(&self, tenant: TenantId) -> Result<Vec<String>, StoreError>;
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
