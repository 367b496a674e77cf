//! `/agents`: the registry face. Create agents from specs, list and filter them, change their spec
//! (each change a new version, guarded by `If-Match`), drive their lifecycle and read their events.

use std::sync::Arc;

use agentd_core::agent::{
    Agent, AgentEvent, AgentHealth, AgentKind, AgentSpec, AgentStatus, AgentVersion,
    LifecycleAction, McpServerSpec, ToolSpec,
};
use agentd_core::{AgentId, ErrorCode, EventId};
use agentd_runtime::registry::HealthReport;
use agentd_runtime::{AgentFilter, PageRequest, RegistryService, SpecPatch};

use axum::extract::State;
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{Json, Path, Query};
use crate::problem::ApiError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, update_agent, delete_agent))
        .routes(routes!(list_versions))
        .routes(routes!(list_events))
        .routes(routes!(set_status))
        .routes(routes!(lifecycle))
        .routes(routes!(heartbeat))
        .routes(routes!(health))
}

fn string_enum_schema(values: impl Iterator<Item = &'static str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
}
fn status_schema() -> ObjectBuilder {
    string_enum_schema(AgentStatus::ALL.iter().map(|s| s.as_str()))
}
fn health_schema() -> ObjectBuilder {
    string_enum_schema(AgentHealth::ALL.iter().map(|s| s.as_str()))
}
fn kind_schema() -> ObjectBuilder {
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
    /// `provider/model` (e.g. `openai/gpt-4o-mini`) or a model name for the default provider.
    #[schema(example = "openai/gpt-4o-mini")]
    pub model: Option<String>,
    #[serde(default)]
    pub tools: Vec<ToolBody>,
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
            model: request.model,
            tools: request.tools.into_iter().map(ToolSpec::from).collect(),
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
        }
    }
}

/// Absent → `None` (keep); `null` → `Some(None)` (clear); a value → `Some(Some(value))`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Changes to an agent's spec: absent fields are kept, `null` clears an optional field. Every change
/// makes a new version. Send the version you read as `If-Match` (or `version`) to refuse lost updates.
#[derive(Deserialize, ToSchema)]
pub struct UpdateAgentRequest {
    /// The version this change is based on; like `If-Match`, a stale one is refused with 412.
    pub version: Option<u32>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub instructions: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub model: Option<Option<String>>,
    pub tools: Option<Vec<ToolBody>>,
    pub mcp_servers: Option<Vec<McpServerBody>>,
    pub skills: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "nullable")]
    pub agent_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub health_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub owner: Option<Option<String>>,
}

impl From<UpdateAgentRequest> for SpecPatch {
    fn from(request: UpdateAgentRequest) -> Self {
        Self {
            name: request.name,
            description: request.description,
            instructions: request.instructions,
            model: request.model,
            tools: request
                .tools
                .map(|tools| tools.into_iter().map(ToolSpec::from).collect()),
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
    pub model: Option<String>,
    pub tools: Vec<ToolBody>,
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
    pub performance: PerformanceView,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
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
            model: spec.model,
            tools: spec.tools.into_iter().map(ToolBody::from).collect(),
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
            performance: PerformanceView {
                total_runs: 0,
                task_completion_rate: 0.0,
                average_latency_ms: 0.0,
                error_rate: 0.0,
            },
            created_at: agent.created_at,
            updated_at: agent.updated_at,
            last_heartbeat_at: agent.last_heartbeat_at,
        }
    }
}

/// An agent answered with its version as `ETag`, for `If-Match`.
fn with_etag(status: StatusCode, agent: Agent) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", agent.version)).ok();
    let mut response = (status, axum::Json(AgentView::from(agent))).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(ETAG, etag);
    }
    response
}

/// One page of agents.
#[derive(Serialize, ToSchema)]
pub struct AgentList {
    pub data: Vec<AgentView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
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
    Ok(with_etag(StatusCode::CREATED, agent))
}

/// Lists the tenant's agents, oldest first, with filters.
#[utoipa::path(
    get,
    path = "/agents",
    tag = "agents",
    params(ListAgentsQuery),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = AgentList))
)]
async fn list_agents(
    auth: Auth<scopes::AgentsRead>,
    State(registry): State<Arc<RegistryService>>,
    Query(query): Query<ListAgentsQuery>,
) -> Result<axum::Json<AgentList>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = AgentFilter {
        status: query.status,
        health: query.health,
        tag: query.tag,
        team_id: query.team_id,
        owner: query.owner,
        name_prefix: query.name_prefix,
        capability: query.capability,
    };
    let page = registry
        .list(auth.principal.tenant_id, &filter, page)
        .await?;
    Ok(axum::Json(AgentList {
        data: page.items.into_iter().map(AgentView::from).collect(),
        next_cursor: page.next_cursor,
    }))
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
    Path(path): Path<AgentPath>,
) -> Result<Response, ApiError> {
    let agent = registry
        .get(auth.principal.tenant_id, path.agent_id)
        .await?;
    Ok(with_etag(StatusCode::OK, agent))
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

/// One version of an agent's spec.
#[derive(Serialize, ToSchema)]
pub struct AgentVersionView {
    pub version: u32,
    pub name: String,
    pub description: Option<String>,
    pub instructions: Option<String>,
    pub model: Option<String>,
    pub tools: Vec<ToolBody>,
    pub skills: Vec<String>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<AgentVersion> for AgentVersionView {
    fn from(version: AgentVersion) -> Self {
        Self {
            version: version.version,
            name: version.spec.name,
            description: version.spec.description,
            instructions: version.spec.instructions,
            model: version.spec.model,
            tools: version.spec.tools.into_iter().map(ToolBody::from).collect(),
            skills: version.spec.skills,
            tags: version.spec.tags,
            created_at: version.created_at,
        }
    }
}

/// Every spec version of the agent.
#[derive(Serialize, ToSchema)]
pub struct AgentVersionList {
    pub data: Vec<AgentVersionView>,
}

/// The agent's spec versions, oldest first.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/versions",
    tag = "agents",
    params(AgentPath),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = AgentVersionList))
)]
async fn list_versions(
    auth: Auth<scopes::AgentsRead>,
    State(registry): State<Arc<RegistryService>>,
    Path(path): Path<AgentPath>,
) -> Result<axum::Json<AgentVersionList>, ApiError> {
    let versions = registry
        .versions(auth.principal.tenant_id, path.agent_id)
        .await?;
    Ok(axum::Json(AgentVersionList {
        data: versions.into_iter().map(AgentVersionView::from).collect(),
    }))
}

/// One entry of an agent's event log.
#[derive(Serialize, ToSchema)]
pub struct AgentEventView {
    pub id: uuid::Uuid,
    /// `created`, `status_changed`, `config_updated` or `health_changed`.
    pub kind: String,
    /// What caused it: `create`, `pause`, `set status`, `ready`, `update`…
    pub action: String,
    #[schema(schema_with = status_schema)]
    pub from_status: Option<AgentStatus>,
    #[schema(schema_with = status_schema)]
    pub to_status: Option<AgentStatus>,
    /// The API key id that caused it, or `system`.
    pub actor: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub created_at: DateTime<Utc>,
}

impl From<AgentEvent> for AgentEventView {
    fn from(event: AgentEvent) -> Self {
        Self {
            id: event.id.as_uuid(),
            kind: event.kind.as_str().to_owned(),
            action: event.action,
            from_status: event.from_status,
            to_status: event.to_status,
            actor: event.actor,
            detail: event.detail,
            created_at: event.created_at,
        }
    }
}

/// A page of events.
#[derive(Serialize, ToSchema)]
pub struct AgentEventList {
    pub data: Vec<AgentEventView>,
    pub next_cursor: Option<String>,
}

/// Pagination of a list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The agent's lifecycle, health and configuration events, oldest first.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/events",
    tag = "agents",
    params(AgentPath, PageQuery),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = AgentEventList))
)]
async fn list_events(
    auth: Auth<scopes::AgentsRead>,
    State(registry): State<Arc<RegistryService>>,
    Path(path): Path<AgentPath>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<AgentEventList>, ApiError> {
    let page: PageRequest<EventId> = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let page = registry
        .events(auth.principal.tenant_id, path.agent_id, page)
        .await?;
    Ok(axum::Json(AgentEventList {
        data: page.items.into_iter().map(AgentEventView::from).collect(),
        next_cursor: page.next_cursor,
    }))
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

/// Health thresholds, as silence in seconds.
#[derive(Serialize, ToSchema)]
pub struct HealthThresholds {
    pub heartbeat_interval_seconds: f64,
    pub degraded_after_seconds: f64,
    pub unhealthy_after_seconds: f64,
    pub critical_after_seconds: f64,
}

/// An agent's health and why.
#[derive(Serialize, ToSchema)]
pub struct AgentHealthView {
    pub agent_id: uuid::Uuid,
    /// The health last recorded (by a heartbeat or the sweeper).
    #[schema(schema_with = health_schema)]
    pub health: AgentHealth,
    /// What the thresholds say at this moment; the sweeper records it on its next pass.
    #[schema(schema_with = health_schema)]
    pub current_verdict: AgentHealth,
    /// The reasoning behind the verdict.
    pub reason: String,
    #[schema(schema_with = status_schema)]
    pub status: AgentStatus,
    #[schema(schema_with = kind_schema)]
    pub kind: AgentKind,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Seconds since the agent was last heard from (or created, if never); absent when not watched.
    pub silence_seconds: Option<f64>,
    pub missed_intervals: u32,
    pub thresholds: HealthThresholds,
    /// The URL probed for a remote agent.
    pub probe_url: Option<String>,
}

impl From<HealthReport> for AgentHealthView {
    fn from(report: HealthReport) -> Self {
        let policy = &report.policy;
        Self {
            agent_id: report.agent.id.as_uuid(),
            health: report.agent.health,
            current_verdict: report.verdict.health,
            reason: report.verdict.reason,
            status: report.agent.status,
            kind: report.agent.spec.kind,
            last_heartbeat_at: report.agent.last_heartbeat_at,
            silence_seconds: report.verdict.silence.map(|s| s.as_secs_f64()),
            missed_intervals: report.verdict.missed,
            thresholds: HealthThresholds {
                heartbeat_interval_seconds: policy.interval.as_secs_f64(),
                degraded_after_seconds: policy.threshold(policy.degraded_after).as_secs_f64(),
                unhealthy_after_seconds: policy.threshold(policy.unhealthy_after).as_secs_f64(),
                critical_after_seconds: policy.threshold(policy.critical_after).as_secs_f64(),
            },
            probe_url: report.probe_url,
        }
    }
}

/// Gauges an agent reports with its heartbeat.
#[derive(Deserialize, ToSchema, Default)]
pub struct UsageGauges {
    pub cpu_millicores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub storage_mb: Option<u64>,
    pub network_mbps: Option<u64>,
}

/// A heartbeat, optionally with the agent's current resource usage.
#[derive(Deserialize, ToSchema, Default)]
pub struct HeartbeatRequest {
    pub usage: Option<UsageGauges>,
}

/// Records a heartbeat: the agent is healthy now, and an `initializing` agent becomes `idle`. The
/// optional `usage` updates the gauges shown at `/agents/{id}/resources`.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/heartbeat",
    tag = "agents",
    params(AgentPath),
    request_body(content = Option<HeartbeatRequest>, description = "Optional resource usage"),
    security(("bearer" = ["agents:write"])),
    responses(
        (status = 200, body = AgentHealthView),
        (status = 409, description = "The agent is stopped or terminated", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn heartbeat(
    auth: Auth<scopes::AgentsWrite>,
    State(registry): State<Arc<RegistryService>>,
    State(resources): State<Arc<agentd_runtime::ResourceService>>,
    Path(path): Path<AgentPath>,
    body: axum::body::Bytes,
) -> Result<axum::Json<AgentHealthView>, ApiError> {
    // The body is optional: an empty one is a plain heartbeat.
    let request: HeartbeatRequest = if body.iter().all(u8::is_ascii_whitespace) {
        HeartbeatRequest::default()
    } else {
        crate::extract::parse_json(&body)?
    };
    let report = registry.heartbeat(&auth.principal, path.agent_id).await?;
    if let Some(usage) = request.usage {
        let gauges = agentd_runtime::resources::Gauges {
            cpu_millicores: usage.cpu_millicores,
            memory_mb: usage.memory_mb,
            storage_mb: usage.storage_mb,
            network_mbps: usage.network_mbps,
        };
        resources
            .report(&auth.principal, path.agent_id, gauges)
            .await?;
    }
    Ok(axum::Json(AgentHealthView::from(report)))
}

/// The agent's health and the reasoning behind it: silence, missed intervals and thresholds.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/health",
    tag = "agents",
    params(AgentPath),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = AgentHealthView))
)]
async fn health(
    auth: Auth<scopes::AgentsRead>,
    State(registry): State<Arc<RegistryService>>,
    Path(path): Path<AgentPath>,
) -> Result<axum::Json<AgentHealthView>, ApiError> {
    let report = registry
        .health(auth.principal.tenant_id, path.agent_id)
        .await?;
    Ok(axum::Json(AgentHealthView::from(report)))
}
