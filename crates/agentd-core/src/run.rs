//! Runs: one execution of an agent, the session it belongs to, and its ordered event log.
//!
//! The event log is the one truth every face renders (AgentOS SSE, the Open Agent API, later OpenAI, A2A
//! and AG-UI). Event kinds follow AgentOS's names; [`RunEventData`] is the typed payload of each.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AgentId, RunId, TenantId, Timestamp};

string_enum!(
    /// Where a run is.
    RunStatus {
        Pending = "pending",
        Running = "running",
        Paused = "paused",
        Completed = "completed",
        Cancelled = "cancelled",
        Error = "error",
    }
);

impl RunStatus {
    /// Whether the run can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Error)
    }
}

string_enum!(
    /// What a session talks to.
    SessionKind {
        Agent = "agent",
        Team = "team",
        Workflow = "workflow",
    }
);

string_enum!(
    /// What happens to a new message while the session has a run in progress.
    SessionPolicy {
        /// Wait for the run in progress to end, then start (the default).
        Enqueue = "enqueue",
        /// Refuse the new message with a conflict.
        Reject = "reject",
        /// Cancel the run in progress and start the new one.
        Interrupt = "interrupt",
    }
);

// `string_enum!` derives no `Default`, so it is written out.
#[allow(clippy::derivable_impls)]
impl Default for SessionPolicy {
    fn default() -> Self {
        Self::Enqueue
    }
}

/// A session id. AgentOS clients choose their own (`"s1"`, a uuid4…), so it is a constrained string:
/// 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `:`. New sessions get a UUIDv7.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Validates a client-chosen id.
    pub fn parse(value: &str) -> Result<Self, String> {
        let valid = (1..=128).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err("must be 1 to 128 letters, digits, `-`, `_`, `.` or `:`".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SessionId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A conversation with an agent (or, later, a team or workflow) for a user. Its runs are rows of their
/// own; the session holds only what is shared across them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub tenant_id: TenantId,
    pub id: SessionId,
    pub kind: SessionKind,
    /// The agent (team, workflow) id the session talks to.
    pub component_id: String,
    pub user_id: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub state: Map<String, Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    pub summary: Option<String>,
    #[serde(default)]
    pub policy: SessionPolicy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Who said what, in the provider-neutral form the run loop keeps and providers translate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A model's request to call a tool. `arguments` is the JSON text the model produced, kept verbatim
/// (it may not even be valid JSON; the loop reports that to the model as a tool error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Token counts of one model call or a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// A run's totals, in AgentOS's `metrics` shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    /// Seconds from the run's start to its first content token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token: Option<f64>,
    /// Seconds the run took, pauses excluded.
    pub duration: f64,
}

impl RunMetrics {
    pub fn add_usage(&mut self, usage: Usage) {
        self.input_tokens += usage.input_tokens;
        self.output_tokens += usage.output_tokens;
        self.total_tokens += usage.total_tokens;
    }
}

/// Timing of one tool execution, in seconds since the Unix epoch (AgentOS's shape).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolMetrics {
    pub start_time: f64,
    pub end_time: f64,
    pub duration: f64,
}

/// One tool call as the run sees it: what was asked, how it must be resolved, and how it ended. The
/// shape and names are AgentOS's `ToolExecution`, so AgentOS clients can fill in `confirmed` or
/// `result` and send it back to continue a paused run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolExecution {
    pub tool_call_id: String,
    pub tool_name: String,
    #[serde(default)]
    pub tool_args: Value,
    #[serde(default)]
    pub result: Option<String>,
    /// Whether the call failed (its `result` then holds the error message).
    #[serde(default)]
    pub tool_call_error: Option<bool>,
    #[serde(default)]
    pub metrics: Option<ToolMetrics>,
    #[serde(default)]
    pub requires_confirmation: bool,
    #[serde(default)]
    pub confirmed: Option<bool>,
    #[serde(default)]
    pub confirmation_note: Option<String>,
    /// The client executes this tool and sends back its `result`.
    #[serde(default)]
    pub external_execution_required: bool,
}

impl ToolExecution {
    /// A call as the model made it, before anything is decided about it.
    pub fn requested(call: &ToolCall) -> Self {
        let tool_args = serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()));
        Self {
            tool_call_id: call.id.clone(),
            tool_name: call.name.clone(),
            tool_args,
            result: None,
            tool_call_error: None,
            metrics: None,
            requires_confirmation: false,
            confirmed: None,
            confirmation_note: None,
            external_execution_required: false,
        }
    }
}

/// The typed payload of a run event; the variant name is the AgentOS event name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum RunEventData {
    RunStarted {
        model: String,
        model_provider: String,
    },
    ModelRequestStarted {
        model: String,
        model_provider: String,
    },
    ModelRequestCompleted {
        model: String,
        model_provider: String,
        input_tokens: u64,
        output_tokens: u64,
        total_tokens: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_to_first_token: Option<f64>,
    },
    /// A delta of the answer.
    RunContent {
        content: String,
    },
    ToolCallStarted {
        tool: ToolExecution,
    },
    ToolCallCompleted {
        tool: ToolExecution,
        content: String,
    },
    ToolCallError {
        tool: ToolExecution,
        error: String,
    },
    /// The run waits for the client: tool results or confirmations for `tools`.
    RunPaused {
        tools: Vec<ToolExecution>,
        content: String,
    },
    RunContinued {},
    /// The model is picking out what the run taught about its user (automatic memory).
    MemoryUpdateStarted {},
    /// The user's new memories are stored (`memories` may be empty).
    MemoryUpdateCompleted {
        memories: Vec<String>,
    },
    RunCompleted {
        content: String,
        metrics: RunMetrics,
        /// What the run looked up in the knowledge base, with what it found.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        references: Vec<KnowledgeReferences>,
    },
    RunCancelled {
        reason: String,
        /// What the answer had reached when the run was cancelled.
        content: String,
    },
    RunError {
        /// The message.
        content: String,
        error_type: String,
    },
}

impl RunEventData {
    /// The AgentOS event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RunStarted { .. } => "RunStarted",
            Self::ModelRequestStarted { .. } => "ModelRequestStarted",
            Self::ModelRequestCompleted { .. } => "ModelRequestCompleted",
            Self::RunContent { .. } => "RunContent",
            Self::ToolCallStarted { .. } => "ToolCallStarted",
            Self::ToolCallCompleted { .. } => "ToolCallCompleted",
            Self::ToolCallError { .. } => "ToolCallError",
            Self::RunPaused { .. } => "RunPaused",
            Self::RunContinued {} => "RunContinued",
            Self::MemoryUpdateStarted {} => "MemoryUpdateStarted",
            Self::MemoryUpdateCompleted { .. } => "MemoryUpdateCompleted",
            Self::RunCompleted { .. } => "RunCompleted",
            Self::RunCancelled { .. } => "RunCancelled",
            Self::RunError { .. } => "RunError",
        }
    }

    /// Whether this event ends the run for good (exactly one per run).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::RunCompleted { .. } | Self::RunCancelled { .. } | Self::RunError { .. }
        )
    }

    /// Whether a stream following the run stops after this event: a terminal event, or a pause (the
    /// run goes on in a new stream once continued).
    pub fn ends_stream(&self) -> bool {
        self.is_terminal() || matches!(self, Self::RunPaused { .. })
    }
}

/// One knowledge search of a run (AgentOS's `MessageReferences`): the query, the chunks found, and
/// how long it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeReferences {
    pub query: String,
    pub references: Vec<KnowledgeReference>,
    /// Seconds the search took.
    pub time: f64,
}

/// One chunk a knowledge search found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeReference {
    pub content_id: String,
    pub name: String,
    pub chunk_id: String,
    pub content: String,
    pub score: f64,
    #[serde(default)]
    pub meta_data: serde_json::Map<String, serde_json::Value>,
}

/// One entry of a run's event log. `seq` starts at 1 and grows by one per event of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub run_id: RunId,
    pub seq: u64,
    pub created_at: Timestamp,
    pub data: RunEventData,
}

/// Bounds on one run. Unset fields fall back to the agent's, then the server's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLimits {
    /// Model calls per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// Input plus output tokens per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Wall time of the run, pauses excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u64>,
}

impl RunLimits {
    /// These limits, with unset fields taken from `fallback`.
    pub fn or(self, fallback: RunLimits) -> RunLimits {
        RunLimits {
            max_iterations: self.max_iterations.or(fallback.max_iterations),
            max_tokens: self.max_tokens.or(fallback.max_tokens),
            max_seconds: self.max_seconds.or(fallback.max_seconds),
        }
    }
}

/// One execution of an agent. The transcript of the run (`messages`: its user input, the model's
/// answers and tool results) lives here, so a session's history is the concatenation of its runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    /// The spec version the run executes.
    pub agent_version: u32,
    pub session_id: SessionId,
    pub user_id: Option<String>,
    /// The API key that started the run (usage is metered per key).
    pub key_id: Option<crate::KeyId>,
    pub parent_run_id: Option<RunId>,
    pub status: RunStatus,
    /// The user's message.
    pub input: String,
    /// The answer so far (complete once the run completed).
    pub content: Option<String>,
    /// `provider/model`.
    pub model: String,
    pub metrics: RunMetrics,
    /// What went wrong, for a run in `error`.
    pub error: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// Tool calls a paused run waits on.
    pub pending_tools: Vec<ToolExecution>,
    /// Tools sent with the request (client-side for this run only).
    pub request_tools: Vec<crate::agent::ToolSpec>,
    pub limits: RunLimits,
    /// Model calls made so far.
    pub iterations: u32,
    /// The sequence number of the last event written.
    pub last_seq: u64,
    /// The node executing the run (so a restarting node knows which in-flight runs were its own).
    pub node: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
