//! Agents: a versioned spec (what the agent is) plus instance state (what it is doing), and the
//! lifecycle state machine that says which status changes are legal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AgentId, EventId, TenantId, Timestamp};

string_enum!(
    /// Where an agent is in its lifecycle.
    AgentStatus {
        Initializing = "initializing",
        Idle = "idle",
        Busy = "busy",
        Paused = "paused",
        Stopped = "stopped",
        Terminated = "terminated",
        Error = "error",
    }
);

string_enum!(
    /// How well an agent is doing, derived from heartbeats and probes.
    AgentHealth {
        /// No heartbeat expected or seen yet.
        Unknown = "unknown",
        Healthy = "healthy",
        Degraded = "degraded",
        Unhealthy = "unhealthy",
        Critical = "critical",
    }
);

string_enum!(
    /// Whether agentd runs the agent itself or reaches it over the network.
    AgentKind {
        Local = "local",
        Remote = "remote",
    }
);

string_enum!(
    /// The lifecycle operations, each with its own starting states.
    LifecycleAction {
        Spawn = "spawn",
        Pause = "pause",
        Resume = "resume",
        Restart = "restart",
        Terminate = "terminate",
    }
);

use AgentStatus::*;

impl AgentStatus {
    /// The statuses `PUT /agents/{id}/status` may move to from this one.
    pub fn allowed_targets(self) -> &'static [AgentStatus] {
        match self {
            Initializing => &[Idle, Stopped, Error, Terminated],
            Idle => &[Busy, Paused, Stopped, Error, Terminated],
            Busy => &[Idle, Paused, Stopped, Error, Terminated],
            Paused => &[Idle, Stopped, Error, Terminated],
            Stopped => &[Initializing, Terminated],
            Error => &[Initializing, Stopped, Terminated],
            Terminated => &[],
        }
    }

    /// Whether a run may start on an agent in this status.
    pub fn accepts_runs(self) -> bool {
        matches!(self, Idle | Busy | Initializing)
    }
}

impl LifecycleAction {
    /// The statuses this action may start from.
    pub fn allowed_from(self) -> &'static [AgentStatus] {
        match self {
            Self::Spawn => &[Stopped, Error],
            Self::Pause => &[Idle, Busy],
            Self::Resume => &[Paused],
            Self::Restart => &[Idle, Busy, Paused, Stopped, Error],
            Self::Terminate => &[Initializing, Idle, Busy, Paused, Stopped, Error],
        }
    }

    /// The status the action moves to (spawn and restart then settle on `idle` for local agents).
    pub fn target(self) -> AgentStatus {
        match self {
            Self::Spawn | Self::Restart => Initializing,
            Self::Pause => Paused,
            Self::Resume => Idle,
            Self::Terminate => Terminated,
        }
    }
}

/// A tool the agent may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Executed by the client: the run pauses for its result.
    #[serde(default)]
    pub client_side: bool,
    /// The run pauses for a confirmation before executing it.
    #[serde(default)]
    pub requires_confirmation: bool,
}

/// An MCP server whose tools the agent may use: a command to start (stdio) or a URL (streamable HTTP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McpServerSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What an agent is. Every change makes a new version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `provider/model`, or a bare model name for the default provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub mcp_servers: Vec<McpServerSpec>,
    /// Capability names the agent declares.
    #[serde(default)]
    pub skills: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    pub kind: AgentKind,
    /// Base URL of a remote agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_url: Option<String>,
    /// Path probed under `agent_url` for a remote agent's health (default `/health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Bounds on each run of the agent (a request may tighten or loosen them).
    #[serde(default, skip_serializing_if = "is_default")]
    pub run_limits: crate::run::RunLimits,
    /// What a new message does while one of the agent's sessions has a run in progress.
    #[serde(default, skip_serializing_if = "is_default")]
    pub session_policy: crate::run::SessionPolicy,
    /// How the agent uses the long-term memories of the users it talks to.
    #[serde(default, skip_serializing_if = "is_default")]
    pub memory: MemorySettings,
    /// How the agent uses the tenant's knowledge base.
    #[serde(default, skip_serializing_if = "is_default")]
    pub knowledge: KnowledgeSettings,
}

/// How an agent uses the knowledge base (AgentOS: `search_knowledge`, `add_knowledge_to_context`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeSettings {
    /// The model gets a `search_knowledge` tool (agentic RAG).
    #[serde(default)]
    pub search: bool,
    /// The chunks that best match the run's message are given to the model before it answers.
    #[serde(default)]
    pub add_to_context: bool,
    /// Chunks per search (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
}

/// How an agent uses its users' memories (AgentOS: `enable_user_memories`,
/// `add_memories_to_context`, `enable_agentic_memory`). Both need the run to name its user (`user_id`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySettings {
    /// After each completed run, the model picks out new facts about the user, which are stored as
    /// the user's memories (the stream shows `MemoryUpdateStarted` / `MemoryUpdateCompleted`).
    #[serde(default)]
    pub automatic: bool,
    /// The user's memories are given to the model at the start of each run.
    #[serde(default)]
    pub add_to_context: bool,
    /// The model gets tools to add, change and delete the user's memories itself (and sees them,
    /// with their ids).
    #[serde(default)]
    pub agentic: bool,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A spec field that breaks a rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn spec_error(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

fn check_label(field: &str, value: &str, max: usize) -> Result<(), SpecError> {
    let length = value.chars().count();
    if value.trim().is_empty() || length > max || value.chars().any(char::is_control) {
        return Err(spec_error(
            field,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(())
}

fn check_http_url(field: &str, value: &str) -> Result<(), SpecError> {
    let valid = (value.starts_with("http://") || value.starts_with("https://"))
        && value.len() > "https://".len()
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(spec_error(field, "must be an http:// or https:// URL"))
    }
}

/// A model reference's two halves: `openai/gpt-4o` → (`Some("openai")`, `"gpt-4o"`); a reference
/// with no `provider/` part (a route, or a model of the default provider) → (`None`, all of it).
pub fn split_model_ref(reference: &str) -> (Option<&str>, &str) {
    match reference.split_once('/') {
        Some((provider, model)) => (Some(provider), model),
        None => (None, reference),
    }
}

impl AgentSpec {
    /// Checks the rules a spec must keep; the error names the offending field.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_label("name", &self.name, 200)?;
        if let Some(model) = &self.model {
            let well_formed = match split_model_ref(model) {
                (Some(provider), name) => !provider.is_empty() && !name.is_empty(),
                (None, name) => !name.is_empty(),
            };
            if !well_formed || model.chars().any(char::is_whitespace) {
                return Err(spec_error(
                    "model",
                    "must be `provider/model` or a model name",
                ));
            }
        }
        let mut tool_names = std::collections::HashSet::new();
        for (index, tool) in self.tools.iter().enumerate() {
            let valid = (1..=64).contains(&tool.name.len())
                && tool
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(spec_error(
                    format!("tools[{index}].name"),
                    "must be 1 to 64 letters, digits, `_` or `-`",
                ));
            }
            if !tool_names.insert(tool.name.as_str()) {
                return Err(spec_error(
                    format!("tools[{index}].name"),
                    format!("`{}` is listed twice", tool.name),
                ));
            }
        }
        for (index, server) in self.mcp_servers.iter().enumerate() {
            check_label(&format!("mcp_servers[{index}].name"), &server.name, 64)?;
            match (&server.command, &server.url) {
                (Some(command), None) => {
                    check_label(&format!("mcp_servers[{index}].command"), command, 1000)?
                }
                (None, Some(url)) => check_http_url(&format!("mcp_servers[{index}].url"), url)?,
                _ => {
                    return Err(spec_error(
                        format!("mcp_servers[{index}]"),
                        "give exactly one of `command` (stdio) or `url` (streamable HTTP)",
                    ))
                }
            }
        }
        for (field, values) in [("skills", &self.skills), ("tags", &self.tags)] {
            if values.len() > 100 {
                return Err(spec_error(field, "at most 100 entries"));
            }
            for (index, value) in values.iter().enumerate() {
                check_label(&format!("{field}[{index}]"), value, 100)?;
            }
        }
        match (self.kind, &self.agent_url) {
            (AgentKind::Remote, None) => {
                return Err(spec_error("agent_url", "a remote agent needs `agent_url`"))
            }
            (_, Some(url)) => check_http_url("agent_url", url)?,
            (AgentKind::Local, None) => {}
        }
        if let Some(path) = &self.health_path {
            if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(spec_error(
                    "health_path",
                    "must be a path starting with `/`",
                ));
            }
        }
        Ok(())
    }
}

/// An agent: its current spec and its instance state.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    pub tenant_id: TenantId,
    /// The spec version, from 1; bumped by every spec change.
    pub version: u32,
    pub spec: AgentSpec,
    pub status: AgentStatus,
    pub health: AgentHealth,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_heartbeat_at: Option<Timestamp>,
    /// The agent's Ed25519 public key, base64. Its private half is kept sealed in the store and never
    /// leaves the identity service. `None` for an agent made before identities existed, until one is
    /// first needed.
    pub public_key: Option<String>,
}

/// One stored version of an agent's spec.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentVersion {
    pub agent_id: AgentId,
    pub version: u32,
    pub spec: AgentSpec,
    pub created_at: Timestamp,
}

string_enum!(
    /// What an agent event records.
    AgentEventKind {
        Created = "created",
        StatusChanged = "status_changed",
        ConfigUpdated = "config_updated",
        HealthChanged = "health_changed",
        CapabilityChanged = "capability_changed",
        ResourcesChanged = "resources_changed",
    }
);

/// One entry of an agent's event log (lifecycle, health and configuration changes).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentEvent {
    pub id: EventId,
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    pub kind: AgentEventKind,
    /// A short description: `pause`, `PUT status`, `heartbeat missed`…
    pub action: String,
    pub from_status: Option<AgentStatus>,
    pub to_status: Option<AgentStatus>,
    /// Who caused it: an API key id, or `system` for the server itself.
    pub actor: String,
    pub detail: Value,
    pub created_at: Timestamp,
}

impl AgentEvent {
    /// A new event for `agent`, happening now.
    pub fn new(
        agent: &Agent,
        kind: AgentEventKind,
        action: impl Into<String>,
        actor: impl Into<String>,
    ) -> Self {
        Self {
            id: EventId::new(),
            tenant_id: agent.tenant_id,
            agent_id: agent.id,
            kind,
            action: action.into(),
            from_status: None,
            to_status: None,
            actor: actor.into(),
            detail: Value::Null,
            created_at: crate::now(),
        }
    }

    /// The same event recording a status change.
    pub fn transition(mut self, from: AgentStatus, to: AgentStatus) -> Self {
        self.from_status = Some(from);
        self.to_status = Some(to);
        self
    }

    /// The same event with details.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Something an agent can do, how well (proficiency 0–1) and how often it has (experience).
#[derive(Clone, Debug, PartialEq)]
pub struct Capability {
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    pub name: String,
    pub description: Option<String>,
    pub proficiency: f64,
    pub experience: u64,
    /// How many principals endorsed it.
    pub endorsements: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Capability {
    /// Checks a capability name: 1 to 100 characters, no control characters, no `/`.
    pub fn check_name(name: &str) -> Result<(), SpecError> {
        check_label("name", name, 100)?;
        if name.contains('/') {
            return Err(spec_error("name", "must not contain `/`"));
        }
        Ok(())
    }

    /// Checks a proficiency: a number from 0 to 1.
    pub fn check_proficiency(value: f64) -> Result<(), SpecError> {
        if value.is_finite() && (0.0..=1.0).contains(&value) {
            Ok(())
        } else {
            Err(spec_error("proficiency", "must be a number from 0 to 1"))
        }
    }
}

/// Resource limits of an agent; `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    pub cpu_millicores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub storage_mb: Option<u64>,
    pub network_mbps: Option<u64>,
    /// API calls allowed between resets.
    pub api_quota: Option<u64>,
}

/// What an agent uses: gauges it reports (cpu, memory, storage, network) and the API calls it made
/// since the last reset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUsage {
    pub cpu_millicores: u64,
    pub memory_mb: u64,
    pub storage_mb: u64,
    pub network_mbps: u64,
    pub api_calls: u64,
}

/// An agent's resource allocation and usage. `version` guards concurrent updates.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentResources {
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    pub limits: ResourceLimits,
    pub usage: ResourceUsage,
    /// When usage was last reset (or first recorded).
    pub reset_at: Timestamp,
    pub updated_at: Timestamp,
    /// 0 until first stored.
    pub version: u64,
}

/// One resource's usage against its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageLine {
    /// `cpu_millicores`, `memory_mb`, `storage_mb`, `network_mbps` or `api_quota` (API calls).
    pub resource: &'static str,
    pub used: u64,
    pub limit: Option<u64>,
}

impl UsageLine {
    /// Used over limit, in percent; `None` when unlimited.
    pub fn percent(&self) -> Option<f64> {
        self.limit.map(|limit| match limit {
            0 => 100.0,
            limit => self.used as f64 * 100.0 / limit as f64,
        })
    }

    /// Whether usage is past the limit.
    pub fn over_limit(&self) -> bool {
        self.limit.is_some_and(|limit| self.used > limit)
    }
}

impl AgentResources {
    /// Every resource against its limit.
    pub fn usage_lines(&self) -> [UsageLine; 5] {
        let (usage, limits) = (&self.usage, &self.limits);
        let line = |resource, used, limit| UsageLine {
            resource,
            used,
            limit,
        };
        [
            line(
                "cpu_millicores",
                usage.cpu_millicores,
                limits.cpu_millicores,
            ),
            line("memory_mb", usage.memory_mb, limits.memory_mb),
            line("storage_mb", usage.storage_mb, limits.storage_mb),
            line("network_mbps", usage.network_mbps, limits.network_mbps),
            line("api_quota", usage.api_calls, limits.api_quota),
        ]
    }
}

/// One principal's endorsement of an agent's capability.
#[derive(Clone, Debug, PartialEq)]
pub struct Endorsement {
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    pub capability: String,
    /// The endorsing principal (an API key id).
    pub endorser: String,
    pub comment: Option<String>,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AgentSpec {
        serde_json::from_value(serde_json::json!({"name": "a", "kind": "local"})).unwrap()
    }

    #[test]
    fn every_action_target_is_reachable_by_the_status_table_or_is_a_restart() {
        for action in LifecycleAction::ALL {
            for from in action.allowed_from() {
                assert_ne!(*from, Terminated, "{action} must not leave terminated");
            }
        }
        assert!(Terminated.allowed_targets().is_empty());
        assert!(!Paused.accepts_runs() && !Stopped.accepts_runs() && !Terminated.accepts_runs());
        assert!(Idle.accepts_runs());
    }

    #[test]
    fn enums_parse_and_name_the_choices() {
        assert_eq!("paused".parse::<AgentStatus>(), Ok(Paused));
        let error = "sleeping".parse::<AgentStatus>().unwrap_err();
        assert!(
            error.contains("idle") && error.contains("sleeping"),
            "{error}"
        );
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(spec().validate(), Ok(()));
        let mut bad = spec();
        bad.model = Some("openai/".to_owned());
        assert_eq!(bad.validate().unwrap_err().field, "model");
        let mut bad = spec();
        bad.kind = AgentKind::Remote;
        assert_eq!(bad.validate().unwrap_err().field, "agent_url");
        bad.agent_url = Some("ftp://x".to_owned());
        assert_eq!(bad.validate().unwrap_err().field, "agent_url");
        let mut bad = spec();
        bad.tools = vec![
            ToolSpec {
                name: "t".into(),
                description: None,
                parameters: None,
                client_side: false,
                requires_confirmation: false,
            },
            ToolSpec {
                name: "t".into(),
                description: None,
                parameters: None,
                client_side: false,
                requires_confirmation: false,
            },
        ];
        assert_eq!(bad.validate().unwrap_err().field, "tools[1].name");
        let mut bad = spec();
        bad.mcp_servers = vec![McpServerSpec {
            name: "m".into(),
            command: None,
            args: vec![],
            url: None,
        }];
        assert_eq!(bad.validate().unwrap_err().field, "mcp_servers[0]");
    }
}
