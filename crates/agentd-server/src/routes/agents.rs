//! `/agents`: the registry face. Create agents from specs, list and filter them, change their spec
//! (each change a new version, guarded by `If-Match`), drive their lifecycle and read their events.

use std::sync::Arc;

use agentd_core::agent::{
    Agent, AgentHealth, AgentKind, AgentSpec, AgentStatus, KnowledgeSettings, LifecycleAction,
    McpServerSpec, MemorySettings, ToolSpec,
};
use agentd_core::{AgentId, ErrorCode};
use agentd_runtime::{AgentFilter, PageRequest, RegistryService, SpecPatch};

use axum::extract::{OriginalUri, State};
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditEvent;
use crate::auth::{scopes, Auth};
use crate::extract::{Json, Path, Query};
use crate::listing::array_page;
use crate::problem::ApiError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, update_agent, delete_agent))
        .routes(routes!(set_status))
        .routes(routes!(lifecycle))
}

fn string_enum_schema(values: impl Iterator<Item = &'static str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
}
pub(crate) fn status_schema() -> ObjectBuilder {
    string_enum_schema(AgentStatus::ALL.iter().map(|s| s.as_str()))
}
pub(crate) fn health_schema() -> ObjectBuilder {
    string_enum_schema(AgentHealth::ALL.iter().map(|s| s.as_str()))
}
pub(crate) fn kind_schema() -> ObjectBuilder {
    string_enum_schema(AgentKind::ALL.iter().map(|s| s.as_str()))
}
fn action_schema() -> ObjectBuilder {
    string_enum_schema(LifecycleAction::ALL.iter().map(|s| s.as_str()))
}

/// A tool the agent may call.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolBody {
    /// 1 to 64 letters, digits, `_` or `-`; unique within the agent.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Executed by the client: runs pause for its result.
    #[serde(default)]
    pub client_side: bool,
    /// Runs pause for a confirmation before executing it.
    #[serde(default)]
    pub requires_confirmation: bool,
}

impl From<ToolBody> for ToolSpec {
    fn from(tool: ToolBody) -> Self {
        Self {
            name: tool.name,
            description: tool.description,
            parameters: tool.parameters,
            client_side: tool.client_side,
            requires_confirmation: tool.requires_confirmation,
        }
    }
}

impl From<ToolSpec> for ToolBody {
    fn from(tool: ToolSpec) -> Self {
        Self {
            name: tool.name,
            description: tool.description,
            parameters: tool.parameters,
            client_side: tool.client_side,
            requires_confirmation: tool.requires_confirmation,
        }
    }
}

/// An MCP server: `command` (+ `args`) for stdio, or `url` for streamable HTTP.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct McpServerBody {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl From<McpServerBody> for McpServerSpec {
    fn from(server: McpServerBody) -> Self {
        Self {
            name: server.name,
            command: server.command,
            args: server.args,
            url: server.url,
        }
    }
}

impl From<McpServerSpec> for McpServerBody {
    fn from(server: McpServerSpec) -> Self {
        Self {
            name: server.name,
            command: server.command,
            args: server.args,
            url: server.url,
        }
    }
}

/// An agent's model as answers give it, in AgentOS's shape: `id` is the model reference agentd
/// resolves (`provider/model`, or a route or model name); `provider` and `model` are its two halves
/// (`provider` is absent when the reference has no `provider/` part).
#[derive(Clone, Serialize, ToSchema)]
pub struct ModelView {
    #[schema(example = "openai/gpt-4o-mini")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "openai")]
    pub provider: Option<String>,
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
}

impl ModelView {
    fn of(reference: String) -> Self {
        let (provider, model) = agentd_core::agent::split_model_ref(&reference);
        Self {
            provider: provider.map(str::to_owned),
            model: model.to_owned(),
            id: reference,
        }
    }
}

/// A model as requests name it: the reference as a string (`openai/gpt-4o-mini`), or the object
/// answers carry (`{"id": …}`, or `{"provider": …, "model": …}`), so an agent read can be sent back.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ModelInput {
    #[schema(example = "openai/gpt-4o-mini")]
    Reference(String),
    Object(ModelView),
}

impl ModelInput {
    fn into_reference(self) -> String {
        match self {
            Self::Reference(reference) => reference,
            Self::Object(view) => view.id,
        }
    }
}

impl<'de> Deserialize<'de> for ModelInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let text = |value: Option<&Value>, field: &str| match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(D::Error::custom(format!("`{field}` must be a string"))),
        };
        match Value::deserialize(deserializer)? {
            Value::String(reference) => Ok(Self::Reference(reference)),
            Value::Object(object) => {
                let id = text(object.get("id"), "id")?;
                let provider = text(object.get("provider"), "provider")?;
                let model = text(object.get("model"), "model")?;
                let reference = match (id, provider, model) {
                    (Some(id), _, _) => id,
                    (None, Some(provider), Some(model)) => format!("{provider}/{model}"),
                    (None, None, Some(model)) => model,
                    _ => {
                        return Err(D::Error::custom(
                            "a model object needs `id`, or `provider` and `model`",
                        ))
                    }
                };
                Ok(Self::Reference(reference))
            }
            _ => Err(D::Error::custom(
                "expected a model reference such as \"openai/gpt-4o-mini\" or an object with `id`",
            )),
        }
    }
}

/// An agent's tools as answers give them, in AgentOS's shape (`{"tools": [...]}`).
#[derive(Clone, Serialize, ToSchema)]
pub struct ToolsView {
    pub tools: Vec<ToolBody>,
}

/// Tools as requests give them: a list, or the `{"tools": [...]}` object answers carry.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ToolsInput {
    List(Vec<ToolBody>),
    Object(ToolsView),
}

impl Default for ToolsInput {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

impl ToolsInput {
    fn into_specs(self) -> Vec<ToolSpec> {
        let (Self::List(tools) | Self::Object(ToolsView { tools })) = self;
        tools.into_iter().map(ToolSpec::from).collect()
    }
}

impl<'de> Deserialize<'de> for ToolsInput {
    /// A visitor rather than a detour through `Value`, so a bad tool is named by its path
    /// (`tools[0].name`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ToolsInput;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of tools or an object with a `tools` list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<ToolsInput, A::Error> {
                let deserializer = serde::de::value::SeqAccessDeserializer::new(seq);
                Vec::<ToolBody>::deserialize(deserializer).map(ToolsInput::List)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ToolsInput, A::Error> {
                let mut tools = None;
                // AgentOS's object also carries `tool_call_limit` and `tool_choice`; agentd's
                // limits are set elsewhere, so those are skipped.
                while let Some(key) = map.next_key::<String>()? {
                    if key == "tools" {
                        tools = Some(map.next_value::<Vec<ToolBody>>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                tools
                    .map(ToolsInput::List)
                    .ok_or_else(|| serde::de::Error::missing_field("tools"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A new agent. Accepts the Open Agent API's fields (`name`, `model`, `prompt`, `description`,
/// `tools`) as well as the full spec.
#[derive(Deserialize, ToSchema)]
pub struct CreateAgentRequest {
    /// Display name, 1 to 200 characters.
    #[schema(example = "researcher")]
    pub name: String,
    pub description: Option<String>,
    /// The system instructions.
    pub instructions: Option<String>,
    /// Open Agent API spelling of `instructions`; used when `instructions` is absent.
    pub prompt: Option<String>,
    /// `provider/model` (e.g. `openai/gpt-4o-mini`), a route, or a model name for the default
    /// provider; also the `{"id": …}` object answers carry.
    pub model: Option<ModelInput>,
    /// A list of tools, or the `{"tools": [...]}` object answers carry.
    #[serde(default)]
    pub tools: ToolsInput,
    #[serde(default)]
    pub mcp_servers: Vec<McpServerBody>,
    /// Capability names.
    #[serde(default)]
    pub skills: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// `local` (default) or `remote`.
    #[serde(default = "local")]
    #[schema(schema_with = kind_schema)]
    pub kind: AgentKind,
    /// Base URL of a remote agent (required when `kind` is `remote`).
    pub agent_url: Option<String>,
    /// Health path probed under `agent_url` (default `/health`).
    pub health_path: Option<String>,
    pub team_id: Option<String>,
    /// Owner; defaults to the creating key's id.
    pub owner: Option<String>,
    /// How the agent uses its users' long-term memories.
    #[serde(default)]
    pub memory: MemoryBody,
    /// AgentOS spelling of `memory.automatic`.
    pub enable_user_memories: Option<bool>,
    /// AgentOS spelling of `memory.add_to_context`.
    pub add_memories_to_context: Option<bool>,
    /// AgentOS spelling of `memory.agentic`.
    pub enable_agentic_memory: Option<bool>,
    /// How the agent uses the tenant's knowledge base.
    #[serde(default)]
    pub knowledge: KnowledgeBody,
    /// AgentOS spelling of `knowledge.search`.
    pub search_knowledge: Option<bool>,
    /// AgentOS spelling of `knowledge.add_to_context`.
    pub add_knowledge_to_context: Option<bool>,
}

/// How an agent uses the knowledge base.
#[derive(Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBody {
    /// The model gets a `search_knowledge` tool (agentic RAG).
    #[serde(default)]
    pub search: bool,
    /// The chunks best matching the run's message are given to the model before it answers.
    #[serde(default)]
    pub add_to_context: bool,
    /// Chunks per search, 1 to 20 (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
}

impl From<KnowledgeBody> for KnowledgeSettings {
    fn from(body: KnowledgeBody) -> Self {
        Self {
            search: body.search,
            add_to_context: body.add_to_context,
            max_results: body.max_results,
        }
    }
}

impl From<KnowledgeSettings> for KnowledgeBody {
    fn from(settings: KnowledgeSettings) -> Self {
        Self {
            search: settings.search,
            add_to_context: settings.add_to_context,
            max_results: settings.max_results,
        }
    }
}

/// How an agent uses the memories of the users it talks to; both need runs to name their `user_id`.
#[derive(Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryBody {
    /// After each completed run, the model picks out new facts about the user and they are stored
    /// as the user's memories (`MemoryUpdateStarted` / `MemoryUpdateCompleted` in the stream).
    #[serde(default)]
    pub automatic: bool,
    /// The user's memories are given to the model at the start of each run.
    #[serde(default)]
    pub add_to_context: bool,
    /// The model gets `add_memory`, `update_memory` and `delete_memory` tools for the user's
    /// memories (and sees them with their ids).
    #[serde(default)]
    pub agentic: bool,
}

impl From<MemoryBody> for MemorySettings {
    fn from(body: MemoryBody) -> Self {
        Self {
            automatic: body.automatic,
            add_to_context: body.add_to_context,
            agentic: body.agentic,
        }
    }
}

impl From<MemorySettings> for MemoryBody {
    fn from(settings: MemorySettings) -> Self {
        Self {
            automatic: settings.automatic,
            add_to_context: settings.add_to_context,
            agentic: settings.agentic,
        }
    }
}

fn local() -> AgentKind {
    AgentKind::Local
}

impl From<CreateAgentRequest> for AgentSpec {
    fn from(request: CreateAgentRequest) -> Self {
        Self {
            name: request.name,
            description: request.description,
            instructions: request.instructions.or(request.prompt),
            model: request.model.map(ModelInput::into_reference),
            tools: request.tools.into_specs(),
            mcp_servers: request
                .mcp_servers
                .into_iter()
                .map(McpServerSpec::from)
                .collect(),
            skills: request.skills,
            tags: request.tags,
            metadata: request.metadata,
            kind: request.kind,
            agent_url: request.agent_url,
            health_path: request.health_path,
            team_id: request.team_id,
            owner: request.owner,
            run_limits: Default::default(),
            session_policy: Default::default(),
            memory: MemorySettings {
                automatic: request
                    .enable_user_memories
                    .unwrap_or(request.memory.automatic),
                add_to_context: request
                    .add_memories_to_context
                    .unwrap_or(request.memory.add_to_context),
                agentic: request
                    .enable_agentic_memory
                    .unwrap_or(request.memory.agentic),
            },
            knowledge: KnowledgeSettings {
                search: request.search_knowledge.unwrap_or(request.knowledge.search),
                add_to_context: request
                    .add_knowledge_to_context
                    .unwrap_or(request.knowledge.add_to_context),
                max_results: request.knowledge.max_results,
            },
        }
    }
}

/// Changes to an agent's spec: absent fields are kept, `null` clears an optional field. Every change
/// makes a new version. Send the version you read as `If-Match` (or `version`) to refuse lost updates.
#[derive(Deserialize, ToSchema)]
pub struct UpdateAgentRequest {
    /// The version this change is based on; like `If-Match`, a stale one is refused with 412.
    pub version: Option<u32>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub instructions: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub model: Option<Option<ModelInput>>,
    pub tools: Option<ToolsInput>,
    pub mcp_servers: Option<Vec<McpServerBody>>,
    pub skills: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub agent_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub health_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub owner: Option<Option<String>>,
    pub memory: Option<MemoryBody>,
    pub knowledge: Option<KnowledgeBody>,
}

impl From<UpdateAgentRequest> for SpecPatch {
    fn from(request: UpdateAgentRequest) -> Self {
        Self {
            name: request.name,
            description: request.description,
            instructions: request.instructions,
            model: request
                .model
                .map(|model| model.map(ModelInput::into_reference)),
            tools: request.tools.map(ToolsInput::into_specs),
            mcp_servers: request
                .mcp_servers
                .map(|servers| servers.into_iter().map(McpServerSpec::from).collect()),
            skills: request.skills,
            tags: request.tags,
            metadata: request.metadata,
            agent_url: request.agent_url,
            health_path: request.health_path,
            team_id: request.team_id,
            owner: request.owner,
            memory: request.memory.map(MemorySettings::from),
            knowledge: request.knowledge.map(KnowledgeSettings::from),
        }
    }
}

/// Performance figures computed from the agent's runs (zero until it has run).
#[derive(Serialize, ToSchema)]
pub struct PerformanceView {
    pub total_runs: u64,
    /// Completed runs over finished runs, 0 to 1.
    pub task_completion_rate: f64,
    pub average_latency_ms: f64,
    /// Failed runs over finished runs, 0 to 1.
    pub error_rate: f64,
}

impl From<agentd_runtime::RunStats> for PerformanceView {
    fn from(stats: agentd_runtime::RunStats) -> Self {
        let finished = stats.completed + stats.errored + stats.cancelled;
        let rate = |count: u64| {
            if finished == 0 {
                0.0
            } else {
                count as f64 / finished as f64
            }
        };
        Self {
            total_runs: stats.total,
            task_completion_rate: rate(stats.completed),
            average_latency_ms: stats.average_duration * 1000.0,
            error_rate: rate(stats.errored),
        }
    }
}

/// An agent: its current spec and instance state.
#[derive(Serialize, ToSchema)]
pub struct AgentView {
    pub id: uuid::Uuid,
    /// The same id, under the Open Agent API's name.
    pub agent_id: uuid::Uuid,
    /// Spec version, from 1.
    pub version: u32,
    pub name: String,
    pub description: Option<String>,
    pub instructions: Option<String>,
    pub model: Option<ModelView>,
    pub tools: ToolsView,
    pub mcp_servers: Vec<McpServerBody>,
    pub skills: Vec<String>,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    #[schema(schema_with = kind_schema)]
    pub kind: AgentKind,
    pub agent_url: Option<String>,
    pub health_path: Option<String>,
    pub team_id: Option<String>,
    pub owner: Option<String>,
    #[schema(schema_with = status_schema)]
    pub status: AgentStatus,
    #[schema(schema_with = health_schema)]
    pub health: AgentHealth,
    /// Figures over the agent's runs; given by `GET /agents/{agent_id}` (and on creation), left out of
    /// lists and other answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The agent's Ed25519 public key, base64 (see `POST /agents/{agent_id}/sign`). `null` for an
    /// agent made before identities existed, until its first signature.
    #[schema(example = "MCowBQYDK2VwAyEA…")]
    pub public_key: Option<String>,
    pub memory: MemoryBody,
    pub knowledge: KnowledgeBody,
}

impl From<Agent> for AgentView {
    fn from(agent: Agent) -> Self {
        let spec = agent.spec;
        Self {
            id: agent.id.as_uuid(),
            agent_id: agent.id.as_uuid(),
            version: agent.version,
            name: spec.name,
            description: spec.description,
            instructions: spec.instructions,
            model: spec.model.map(ModelView::of),
            tools: ToolsView {
                tools: spec.tools.into_iter().map(ToolBody::from).collect(),
            },
            mcp_servers: spec
                .mcp_servers
                .into_iter()
                .map(McpServerBody::from)
                .collect(),
            skills: spec.skills,
            tags: spec.tags,
            metadata: spec.metadata,
            kind: spec.kind,
            agent_url: spec.agent_url,
            health_path: spec.health_path,
            team_id: spec.team_id,
            owner: spec.owner,
            status: agent.status,
            health: agent.health,
            performance: None,
            created_at: agent.created_at,
            updated_at: agent.updated_at,
            last_heartbeat_at: agent.last_heartbeat_at,
            public_key: agent.public_key,
            memory: spec.memory.into(),
            knowledge: spec.knowledge.into(),
        }
    }
}

/// An agent answered with its version as `ETag`, for `If-Match`.
fn with_etag(status: StatusCode, agent: Agent) -> Response {
    view_with_etag(status, AgentView::from(agent))
}

fn view_with_etag(status: StatusCode, view: AgentView) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", view.version)).ok();
    let mut response = (status, axum::Json(view)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(ETAG, etag);
    }
    response
}

/// Filters and pagination of `GET /agents`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListAgentsQuery {
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only agents in this status (terminated agents are listed only when asked for).
    #[param(schema_with = status_schema)]
    pub status: Option<AgentStatus>,
    #[param(schema_with = health_schema)]
    pub health: Option<AgentHealth>,
    /// Only agents with this tag.
    pub tag: Option<String>,
    pub team_id: Option<String>,
    pub owner: Option<String>,
    /// Only agents whose name starts with this (case-sensitive).
    pub name_prefix: Option<String>,
    /// Only agents with this capability (declared skills count).
    pub capability: Option<String>,
}

/// Path of one agent.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentPath {
    #[param(value_type = uuid::Uuid)]
    pub agent_id: AgentId,
}

/// Creates an agent at version 1. A local agent is `idle` (ready to run) when this returns.
#[utoipa::path(
    post,
    path = "/agents",
    tag = "agents",
    request_body = CreateAgentRequest,
    security(("bearer" = ["agents:write"])),
    responses((status = 201, body = AgentView, headers(("ETag" = String, description = "The version, for If-Match"))))
)]
async fn create_agent(
    auth: Auth<scopes::AgentsWrite>,
    State(registry): State<Arc<RegistryService>>,
    Json(request): Json<CreateAgentRequest>,
) -> Result<Response, ApiError> {
    let agent = registry
        .create(&auth.principal, AgentSpec::from(request))
        .await?;
    let id = agent.id;
    // A new agent has no runs yet: its figures are zero.
    let mut view = AgentView::from(agent);
    view.performance = Some(PerformanceView::from(agentd_runtime::RunStats::default()));
    let mut response = view_with_etag(StatusCode::CREATED, view);
    response
        .extensions_mut()
        .insert(AuditEvent::created(format!("/agents/{id}"), Some(id)));
    Ok(response)
}

/// Lists the tenant's agents, oldest first, with filters. The body is a JSON array of agents, as
/// AgentOS and its clients have it; the next page is in the `Link` header (`rel="next"`) and its
/// cursor in `X-Next-Cursor`, both absent on the last page. A key holding only per-agent read
/// scopes (`agents:<id>:read`) lists just those agents.
#[utoipa::path(
    get,
    path = "/agents",
    tag = "agents",
    params(ListAgentsQuery),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = Vec<AgentView>, headers(
        ("Link" = String, description = "`</agents?…&cursor=…>; rel=\"next\"` while more pages follow"),
        ("X-Next-Cursor" = String, description = "The `cursor` of the next page, while more pages follow"),
    )))
)]
async fn list_agents(
    auth: Auth<scopes::AgentsList>,
    State(registry): State<Arc<RegistryService>>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<ListAgentsQuery>,
) -> Result<Response, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = AgentFilter {
        status: query.status,
        health: query.health,
        tag: query.tag,
        team_id: query.team_id,
        owner: query.owner,
        name_prefix: query.name_prefix,
        capability: query.capability,
        ids: auth
            .only
            .map(|ids| ids.iter().filter_map(|id| id.parse().ok()).collect()),
    };
    let page = registry
        .list(auth.principal.tenant_id, &filter, page)
        .await?;
    let agents: Vec<AgentView> = page.items.into_iter().map(AgentView::from).collect();
    Ok(array_page(agents, page.next_cursor, &uri))
}

/// One agent.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}",
    tag = "agents",
    params(AgentPath),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = AgentView, headers(("ETag" = String, description = "The version, for If-Match"))))
)]
async fn get_agent(
    auth: Auth<scopes::AgentsRead>,
    State(registry): State<Arc<RegistryService>>,
    State(runs): State<Arc<agentd_runtime::RunService>>,
    Path(path): Path<AgentPath>,
) -> Result<Response, ApiError> {
    let tenant = auth.principal.tenant_id;
    let agent = registry.get(tenant, path.agent_id).await?;
    let stats = runs.stats(tenant, path.agent_id).await?;
    let mut view = AgentView::from(agent);
    view.performance = Some(PerformanceView::from(stats));
    Ok(view_with_etag(StatusCode::OK, view))
}

/// The version named by `If-Match` (`"3"`, `3` or `W/"3"`); `*` means any.
fn if_match_version(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse().map(Some).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidField,
            "If-Match",
            "must be an agent version such as \"3\" (the ETag)",
        )
    })
}

/// Changes the agent's spec, making a new version. `If-Match` with a stale version → 412.
#[utoipa::path(
    patch,
    path = "/agents/{agent_id}",
    tag = "agents",
    params(AgentPath, ("If-Match" = Option<String>, Header, description = "The version (ETag) this change is based on")),
    request_body = UpdateAgentRequest,
    security(("bearer" = ["agents:write"])),
    responses(
        (status = 200, body = AgentView, headers(("ETag" = String, description = "The new version"))),
        (status = 409, description = "The agent is terminated", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The version is stale", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn update_agent(
    auth: Auth<scopes::AgentsWrite>,
    State(registry): State<Arc<RegistryService>>,
    Path(path): Path<AgentPath>,
    headers: HeaderMap,
    Json(request): Json<UpdateAgentRequest>,
) -> Result<Response, ApiError> {
    let header_version = if_match_version(&headers)?;
    let expected = match (header_version, request.version) {
        (Some(header), Some(body)) if header != body => {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "version",
                "`version` and If-Match disagree",
            ))
        }
        (header, body) => header.or(body),
    };
    let agent = registry
        .update(
            &auth.principal,
            path.agent_id,
            SpecPatch::from(request),
            expected,
        )
        .await?;
    Ok(with_etag(StatusCode::OK, agent))
}

/// Terminates the agent. Its versions, events and audit trail are kept; it is no longer listed
/// unless `status=terminated` is asked for.
#[utoipa::path(
    delete,
    path = "/agents/{agent_id}",
    tag = "agents",
    params(AgentPath),
    security(("bearer" = ["agents:delete"])),
    responses((status = 204, description = "Terminated"))
)]
async fn delete_agent(
    auth: Auth<scopes::AgentsDelete>,
    State(registry): State<Arc<RegistryService>>,
    Path(path): Path<AgentPath>,
) -> Result<StatusCode, ApiError> {
    registry.terminate(&auth.principal, path.agent_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A status to set.
#[derive(Deserialize, ToSchema)]
pub struct SetStatusRequest {
    #[schema(schema_with = status_schema)]
    pub status: AgentStatus,
}

/// Sets the agent's status as the lifecycle state machine allows; an illegal change → 409 naming
/// the current status and the allowed ones.
#[utoipa::path(
    put,
    path = "/agents/{agent_id}/status",
    tag = "agents",
    params(AgentPath),
    request_body = SetStatusRequest,
    security(("bearer" = ["agents:write"])),
    responses(
        (status = 200, body = AgentView),
        (status = 409, description = "Not allowed from the current status", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn set_status(
    auth: Auth<scopes::AgentsWrite>,
    State(registry): State<Arc<RegistryService>>,
    Path(path): Path<AgentPath>,
    Json(request): Json<SetStatusRequest>,
) -> Result<Response, ApiError> {
    let agent = registry
        .set_status(&auth.principal, path.agent_id, request.status)
        .await?;
    Ok(with_etag(StatusCode::OK, agent))
}

/// Path of a lifecycle action.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LifecyclePath {
    #[param(value_type = uuid::Uuid)]
    pub agent_id: AgentId,
    /// `spawn` (from stopped or error), `pause` (from idle or busy), `resume` (from paused), `restart`
    /// (from any but terminated and initializing) or `terminate`.
    #[param(schema_with = action_schema)]
    pub action: LifecycleAction,
}

/// Runs a lifecycle action: spawn, pause, resume, restart or terminate. Spawn and restart pass through
/// `initializing`; a local agent is `idle` when they return.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/{action}",
    tag = "agents",
    params(LifecyclePath),
    security(("bearer" = ["agents:write"])),
    responses(
        (status = 200, body = AgentView),
        (status = 409, description = "Not allowed from the current status", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn lifecycle(
    auth: Auth<scopes::AgentsWrite>,
    State(registry): State<Arc<RegistryService>>,
    Path(path): Path<LifecyclePath>,
) -> Result<Response, ApiError> {
    let agent = registry
        .act(&auth.principal, path.agent_id, path.action)
        .await?;
    Ok(with_etag(StatusCode::OK, agent))
}
