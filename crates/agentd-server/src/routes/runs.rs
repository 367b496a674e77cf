//! `/agents/{agent_id}/runs…`: AgentOS's run API. Runs are posted as form fields (or JSON), stream as
//! SSE with AgentOS's event names and fields (every frame with `id: <seq>`), and can be listed, read,
//! continued, cancelled and resumed.

use std::sync::Arc;

use agentd_core::run::{Run, RunEvent, RunLimits, RunStatus, SessionId, ToolExecution};
use agentd_core::{AgentId, ErrorCode, RunId};
use agentd_runtime::{PageRequest, RunHandle, RunInput, RunRequest, RunService};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{Path, Query};
use crate::form::Fields;
use crate::problem::ApiError;
use crate::routes::agent_history::PageQuery;
use crate::routes::agents::ToolBody;
use crate::routes::sessions::optional_session_id;
use crate::sse::{self, Frame};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_run, list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(continue_run))
        .routes(routes!(resume_run))
        .routes(routes!(run_events))
        .routes(routes!(usage))
}

/// Tokens used by one agent's finished runs.
#[derive(Serialize, ToSchema)]
pub struct AgentUsageView {
    pub agent_id: String,
    pub runs: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

/// Tokens used by the tenant's finished runs, in all and per agent.
#[derive(Serialize, ToSchema)]
pub struct UsageView {
    pub runs: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub agents: Vec<AgentUsageView>,
}

/// The tenant's token usage from its finished runs, in all and per agent.
#[utoipa::path(
    get,
    path = "/usage",
    tag = "runs",
    security(("bearer" = ["metrics:read"])),
    responses((status = 200, body = UsageView))
)]
async fn usage(
    auth: Auth<scopes::MetricsRead>,
    State(runs): State<Arc<RunService>>,
) -> Result<axum::Json<UsageView>, ApiError> {
    let agents: Vec<AgentUsageView> = runs
        .usage(auth.principal.tenant_id)
        .await?
        .into_iter()
        .map(|usage| AgentUsageView {
            agent_id: usage.agent_id.to_string(),
            runs: usage.runs,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            total_tokens: usage.input_tokens + usage.output_tokens,
        })
        .collect();
    Ok(axum::Json(UsageView {
        runs: agents.iter().map(|a| a.runs).sum(),
        input_tokens: agents.iter().map(|a| a.input_tokens).sum(),
        output_tokens: agents.iter().map(|a| a.output_tokens).sum(),
        total_tokens: agents.iter().map(|a| a.total_tokens).sum(),
        agents,
    }))
}

/// Path of one run of one agent.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunPath {
    #[param(value_type = uuid::Uuid)]
    pub agent_id: AgentId,
    #[param(value_type = uuid::Uuid)]
    pub run_id: RunId,
}

/// Path of one agent.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentRunsPath {
    #[param(value_type = uuid::Uuid)]
    pub agent_id: AgentId,
}

/// A run request, as form fields (AgentOS) or JSON. In a form, `tools` is JSON text and booleans are
/// `true`/`false`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // Documents the body; `Fields` reads it.
pub struct CreateRunBody {
    /// The user's message.
    message: String,
    /// Stream the run as server-sent events (default true).
    stream: Option<bool>,
    /// The session to run in; created on first use. A new session when absent.
    session_id: Option<String>,
    user_id: Option<String>,
    /// Return 202 at once with the run id; join the stream later with `/events` or `/resume`.
    background: Option<bool>,
    /// Client-side tools for this run only: the run pauses when the model calls one.
    tools: Option<Vec<ToolBody>>,
    /// Model calls allowed in this run.
    max_iterations: Option<u32>,
    /// Input plus output tokens allowed in this run.
    max_tokens: Option<u64>,
    /// Wall time allowed, in seconds (pauses excluded).
    max_seconds: Option<u64>,
}

/// A run, in AgentOS's `RunOutput` shape. Absent fields are left out.
#[derive(Serialize, ToSchema)]
pub struct RunView {
    pub run_id: String,
    pub agent_id: String,
    pub session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `PENDING`, `RUNNING`, `PAUSED`, `COMPLETED`, `CANCELLED` or `ERROR`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub content_type: &'static str,
    pub model: String,
    pub model_provider: String,
    #[schema(value_type = Object)]
    pub metrics: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[schema(value_type = Object)]
    pub input: Value,
    /// For a paused run, the tool calls it waits on (fill in `result` or `confirmed` and send them to
    /// `/continue`).
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Value>,
    /// The spec version the run executes.
    pub agent_version: u32,
    /// Seconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<Run> for RunView {
    fn from(run: Run) -> Self {
        let (provider, model) = split_model(&run.model);
        Self {
            run_id: run.id.to_string(),
            agent_id: run.agent_id.to_string(),
            session_id: run.session_id.to_string(),
            user_id: run.user_id,
            status: run.status.as_str().to_ascii_uppercase(),
            content: run.content,
            content_type: "str",
            model,
            model_provider: provider,
            metrics: serde_json::to_value(run.metrics).unwrap_or_default(),
            error: run.error,
            input: json!({ "input_content": run.input }),
            tools: run
                .pending_tools
                .iter()
                .map(|t| serde_json::to_value(t).unwrap_or_default())
                .collect(),
            messages: run
                .messages
                .iter()
                .map(|m| serde_json::to_value(m).unwrap_or_default())
                .collect(),
            agent_version: run.agent_version,
            created_at: run.created_at.timestamp(),
            updated_at: run.updated_at.timestamp(),
        }
    }
}

fn split_model(model_ref: &str) -> (String, String) {
    let (provider, model) = agentd_core::agent::split_model_ref(model_ref);
    (provider.unwrap_or_default().to_owned(), model.to_owned())
}

/// A page of runs.
#[derive(Serialize, ToSchema)]
pub struct RunList {
    pub data: Vec<RunView>,
    pub next_cursor: Option<String>,
}

/// The `data` of one SSE frame of a run (`event: <Name>`, `id: <seq>`): the run's context, the
/// event's own fields (`content`, `tool`, `tools`, `metrics`, `error_type`…) and its 0-based
/// `event_index`.
#[derive(Serialize, ToSchema)]
pub struct RunEventFrame {
    /// `RunStarted`, `ModelRequestStarted`, `ModelRequestCompleted`, `RunContent`, `ToolCallStarted`,
    /// `ToolCallCompleted`, `ToolCallError`, `RunPaused`, `RunContinued`, `RunCompleted`,
    /// `RunCancelled` or `RunError`.
    pub event: String,
    pub run_id: String,
    pub session_id: String,
    pub agent_id: String,
    pub agent_name: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// The frame's `id` minus one.
    pub event_index: u64,
    pub nested_depth: u32,
    pub content: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub tool: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<Value>,
}

/// What `background=true` answers.
#[derive(Serialize, ToSchema)]
pub struct RunAccepted {
    pub run_id: String,
    pub session_id: String,
    /// `PENDING`.
    pub status: String,
}

/// Renders run events as AgentOS frames: `event: <Name>` and a flat JSON object with the run's
/// context (`agent_id`, `run_id`, `session_id`…), the event's fields and its 0-based `event_index`.
pub fn agentos_frames(run: &Run, agent_name: &str) -> impl Fn(&RunEvent) -> Vec<Frame> {
    let mut base = Map::new();
    base.insert("agent_id".into(), json!(run.agent_id.to_string()));
    base.insert("agent_name".into(), json!(agent_name));
    base.insert("run_id".into(), json!(run.id.to_string()));
    base.insert("session_id".into(), json!(run.session_id.to_string()));
    if let Some(parent) = run.parent_run_id {
        base.insert("parent_run_id".into(), json!(parent.to_string()));
    }
    base.insert("nested_depth".into(), json!(0));
    move |event| {
        let mut data = Map::new();
        data.insert("created_at".into(), json!(event.created_at.timestamp()));
        data.extend(base.clone());
        if let Ok(Value::Object(fields)) = serde_json::to_value(&event.data) {
            data.extend(fields);
        }
        if matches!(
            event.data,
            agentd_core::run::RunEventData::RunContent { .. }
        ) {
            data.insert("content_type".into(), json!("str"));
        }
        data.insert("event_index".into(), json!(event.seq.saturating_sub(1)));
        vec![Frame {
            name: Some(event.data.name()),
            data: Value::Object(data),
        }]
    }
}

fn run_limits(fields: &Fields) -> Result<RunLimits, ApiError> {
    let max_iterations = fields
        .number("max_iterations")?
        .map(|n| {
            u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::field(
                    ErrorCode::InvalidField,
                    "max_iterations",
                    "must be 1 to 4294967295",
                )
            })
        })
        .transpose()?;
    Ok(RunLimits {
        max_iterations,
        max_tokens: fields.number("max_tokens")?,
        max_seconds: fields.number("max_seconds")?,
    })
}

fn session_id(fields: &Fields) -> Result<Option<SessionId>, ApiError> {
    optional_session_id(fields.string("session_id")?.as_deref())
}

/// Answers a started (or continued) run as the request asked: a stream, or the finished run.
async fn respond(runs: &RunService, handle: RunHandle, stream: bool) -> Result<Response, ApiError> {
    if stream {
        let frames = agentos_frames(&handle.run, &handle.agent.spec.name);
        return Ok(sse::stream(handle.events, frames));
    }
    let finished = runs.finish(handle).await?;
    Ok(axum::Json(RunView::from(finished)).into_response())
}

/// Runs the agent. With `stream` (the default) the answer is an SSE stream of the run's events; without
/// it, the finished (or paused) run; with `background=true` and `stream=false`, 202 at once.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/runs",
    tag = "runs",
    params(AgentRunsPath),
    request_body(content(
        (CreateRunBody = "multipart/form-data"),
        (CreateRunBody = "application/x-www-form-urlencoded"),
        (CreateRunBody = "application/json"),
    )),
    security(("bearer" = ["agents:run"])),
    responses(
        (status = 200, description = "An event stream of the run, or the run when `stream=false`",
            content((RunEventFrame = "text/event-stream"), (RunView = "application/json"))),
        (status = 202, body = RunAccepted),
    )
)]
async fn create_run(
    auth: Auth<scopes::AgentsRun>,
    State(runs): State<Arc<RunService>>,
    Path(path): Path<AgentRunsPath>,
    fields: Fields,
) -> Result<Response, ApiError> {
    let message = fields.required_string("message")?;
    let stream = fields.bool("stream")?.unwrap_or(true);
    let background = fields.bool("background")?.unwrap_or(false);
    let tools: Vec<ToolBody> = fields.structured("tools")?.unwrap_or_default();
    let request = RunRequest {
        input: RunInput::Message(message),
        session_id: session_id(&fields)?,
        user_id: fields.string("user_id")?,
        tools: tools
            .into_iter()
            .map(|tool| {
                let mut spec = agentd_core::agent::ToolSpec::from(tool);
                spec.client_side = true;
                spec
            })
            .collect(),
        limits: run_limits(&fields)?,
    };
    let handle = runs.start(&auth.principal, path.agent_id, request).await?;
    if background && !stream {
        let accepted = RunAccepted {
            run_id: handle.run.id.to_string(),
            session_id: handle.run.session_id.to_string(),
            status: "PENDING".to_owned(),
        };
        return Ok((StatusCode::ACCEPTED, axum::Json(accepted)).into_response());
    }
    respond(&runs, handle, stream).await
}

/// Filters of the run list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunListQuery {
    /// Only runs of this session.
    pub session_id: Option<String>,
    /// Only runs with this status (`pending`, `running`, `paused`, `completed`, `cancelled`, `error`;
    /// any case).
    pub status: Option<String>,
}

/// The agent's runs, oldest first.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/runs",
    tag = "runs",
    params(AgentRunsPath, RunListQuery, PageQuery),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = RunList))
)]
async fn list_runs(
    auth: Auth<scopes::AgentsRead>,
    State(runs): State<Arc<RunService>>,
    Path(path): Path<AgentRunsPath>,
    Query(filter): Query<RunListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<axum::Json<RunList>, ApiError> {
    let session_id = optional_session_id(filter.session_id.as_deref())?;
    let status = filter
        .status
        .filter(|s| !s.is_empty())
        .map(|raw| {
            raw.to_ascii_lowercase()
                .parse::<RunStatus>()
                .map_err(|message| ApiError::field(ErrorCode::InvalidField, "status", message))
        })
        .transpose()?;
    let filter = agentd_runtime::RunFilter {
        agent_id: Some(path.agent_id),
        session_id,
        status,
    };
    let page = PageRequest::parse(page.limit, page.cursor.as_deref())?;
    let listed = runs.list(auth.principal.tenant_id, &filter, page).await?;
    Ok(axum::Json(RunList {
        data: listed.items.into_iter().map(RunView::from).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// One run.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/runs/{run_id}",
    tag = "runs",
    params(RunPath),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = RunView))
)]
async fn get_run(
    auth: Auth<scopes::AgentsRead>,
    State(runs): State<Arc<RunService>>,
    Path(path): Path<RunPath>,
) -> Result<axum::Json<RunView>, ApiError> {
    let run = runs
        .get(auth.principal.tenant_id, path.agent_id, path.run_id)
        .await?;
    Ok(axum::Json(RunView::from(run)))
}

/// Cancels the run. A running one stops within moments, model stream and tools included, and ends with
/// `RunCancelled`; a paused one is cancelled at once; a finished one is left as it is. Answers the run.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/runs/{run_id}/cancel",
    tag = "runs",
    params(RunPath),
    security(("bearer" = ["agents:run"])),
    responses((status = 200, body = RunView))
)]
async fn cancel_run(
    auth: Auth<scopes::AgentsRun>,
    State(runs): State<Arc<RunService>>,
    Path(path): Path<RunPath>,
) -> Result<axum::Json<RunView>, ApiError> {
    let run = runs
        .cancel(&auth.principal, path.agent_id, path.run_id)
        .await?;
    Ok(axum::Json(RunView::from(run)))
}

/// How a paused run is continued: its pending tool calls with `result` (client-side tools) or
/// `confirmed` (confirmations) filled in. In a form, `tools` is JSON text.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // Documents the body; `Fields` reads it.
pub struct ContinueRunBody {
    #[schema(value_type = Vec<Object>)]
    tools: Vec<Value>,
    /// Stream the rest of the run (default true).
    stream: Option<bool>,
}

/// Continues a paused run with tool results or confirmations, streaming the rest of it from
/// `RunContinued` (or answering the finished run with `stream=false`).
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/runs/{run_id}/continue",
    tag = "runs",
    params(RunPath),
    request_body(content(
        (ContinueRunBody = "multipart/form-data"),
        (ContinueRunBody = "application/x-www-form-urlencoded"),
        (ContinueRunBody = "application/json"),
    )),
    security(("bearer" = ["agents:run"])),
    responses((status = 200, description = "An event stream of the rest of the run, or the run when `stream=false`",
        content((RunEventFrame = "text/event-stream"), (RunView = "application/json"))))
)]
async fn continue_run(
    auth: Auth<scopes::AgentsRun>,
    State(runs): State<Arc<RunService>>,
    Path(path): Path<RunPath>,
    fields: Fields,
) -> Result<Response, ApiError> {
    let tools: Vec<ToolExecution> = fields.structured("tools")?.unwrap_or_default();
    let stream = fields.bool("stream")?.unwrap_or(true);
    let handle = runs
        .continue_run(&auth.principal, path.agent_id, path.run_id, tools)
        .await?;
    respond(&runs, handle, stream).await
}

/// Where `/resume` picks up.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // Documents the body; `Fields` reads it.
pub struct ResumeRunBody {
    /// The `event_index` of the last event received; the stream starts after it. From the start when
    /// absent.
    last_event_index: Option<u64>,
    session_id: Option<String>,
}

/// AgentOS's reconnect: replays the run's events after `last_event_index`, then follows the live ones
/// until the run ends or pauses.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/runs/{run_id}/resume",
    tag = "runs",
    params(RunPath),
    request_body(content(
        (ResumeRunBody = "multipart/form-data"),
        (ResumeRunBody = "application/x-www-form-urlencoded"),
        (ResumeRunBody = "application/json"),
    )),
    security(("bearer" = ["agents:run"])),
    responses((status = 200, description = "An event stream of the run", content_type = "text/event-stream", body = RunEventFrame))
)]
async fn resume_run(
    auth: Auth<scopes::AgentsRun>,
    State(runs): State<Arc<RunService>>,
    Path(path): Path<RunPath>,
    fields: Fields,
) -> Result<Response, ApiError> {
    let after = fields
        .number("last_event_index")?
        .map_or(0, |index| index + 1);
    stream_events(&runs, &auth.principal, &path, after).await
}

/// Where `/events` starts when no `Last-Event-ID` is sent.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after the event with this `id` (what `Last-Event-ID` says on a reconnect).
    pub after: Option<u64>,
}

/// The run's events as SSE: those after `Last-Event-ID` (or `after`), then the live ones until the run
/// ends or pauses. Works for finished runs and after a server restart.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/runs/{run_id}/events",
    tag = "runs",
    params(RunPath, EventsQuery, ("Last-Event-ID" = Option<u64>, Header, description = "The `id` of the last event received")),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, description = "An event stream of the run", content_type = "text/event-stream", body = RunEventFrame))
)]
async fn run_events(
    auth: Auth<scopes::AgentsRead>,
    State(runs): State<Arc<RunService>>,
    Path(path): Path<RunPath>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = sse::last_event_id(&headers)?.or(query.after).unwrap_or(0);
    stream_events(&runs, &auth.principal, &path, after).await
}

async fn stream_events(
    runs: &RunService,
    principal: &agentd_runtime::Principal,
    path: &RunPath,
    after: u64,
) -> Result<Response, ApiError> {
    let (run, events) = runs
        .events(principal.tenant_id, path.agent_id, path.run_id, after)
        .await?;
    let agent_name = runs.agent_name(principal.tenant_id, path.agent_id).await?;
    Ok(sse::stream(events, agentos_frames(&run, &agent_name)))
}
