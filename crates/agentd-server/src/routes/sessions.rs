//! `/sessions…`: AgentOS's session API. A session is created on a run's first use or here, and holds
//! its runs as rows of their own.

use std::sync::Arc;

use agentd_core::run::{Session, SessionId, SessionKind, SessionPolicy};
use agentd_core::{ErrorCode, RunId};
use agentd_runtime::sessions::{NewSession, SessionPatch};
use agentd_runtime::{PageRequest, SessionFilter, SessionService};
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{parse_json, Json, Path, Query};
use crate::listing::array_page;
use crate::problem::ApiError;
use crate::routes::agent_history::PageQuery;
use crate::routes::runs::RunView;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions, create_session, delete_sessions))
        .routes(routes!(get_session, update_session, delete_session))
        .routes(routes!(rename_session))
        .routes(routes!(list_session_runs))
        .routes(routes!(get_session_run))
}

/// Path of one session.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    #[param(value_type = String)]
    pub session_id: SessionId,
}

/// Path of one run of a session.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionRunPath {
    #[param(value_type = String)]
    pub session_id: SessionId,
    #[param(value_type = uuid::Uuid)]
    pub run_id: RunId,
}

/// A session.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub session_id: String,
    pub session_name: Option<String>,
    /// `agent`, `team` or `workflow`.
    pub session_type: String,
    /// The agent (team, workflow) the session talks to.
    pub component_id: String,
    pub agent_id: Option<String>,
    pub user_id: Option<String>,
    #[schema(value_type = Object)]
    pub session_state: Map<String, Value>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub summary: Option<String>,
    /// What a message does while a run is in progress: `enqueue`, `reject` or `interrupt`.
    pub policy: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Session> for SessionView {
    fn from(session: Session) -> Self {
        Self {
            session_id: session.id.to_string(),
            session_name: session.name,
            session_type: session.kind.as_str().to_owned(),
            agent_id: (session.kind == SessionKind::Agent).then(|| session.component_id.clone()),
            component_id: session.component_id,
            user_id: session.user_id,
            session_state: session.state,
            metadata: session.metadata,
            summary: session.summary,
            policy: session.policy.as_str().to_owned(),
            created_at: session.created_at,
            updated_at: session.updated_at,
        }
    }
}

/// Paging facts of a session list.
#[derive(Serialize, ToSchema)]
pub struct SessionListMeta {
    pub limit: u32,
    /// Sessions matching the filters, on every page.
    pub total_count: u64,
    pub next_cursor: Option<String>,
}

/// A page of sessions, newest first, in AgentOS's `{data, meta}` shape.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub data: Vec<SessionView>,
    pub meta: SessionListMeta,
}

/// Filters of the session list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListQuery {
    /// `agent`, `team` or `workflow`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    pub component_id: Option<String>,
    pub user_id: Option<String>,
    /// Sessions whose name contains this text.
    pub session_name: Option<String>,
}

fn parse_kind(raw: Option<String>) -> Result<Option<SessionKind>, ApiError> {
    raw.filter(|s| !s.is_empty())
        .map(|raw| {
            raw.parse()
                .map_err(|message| ApiError::field(ErrorCode::InvalidField, "type", message))
        })
        .transpose()
}

/// A client's `session_id`: absent or empty is `None`, anything else must be a valid id.
pub fn optional_session_id(raw: Option<&str>) -> Result<Option<SessionId>, ApiError> {
    raw.filter(|s| !s.is_empty())
        .map(|raw| {
            SessionId::parse(raw)
                .map_err(|message| ApiError::field(ErrorCode::InvalidField, "session_id", message))
        })
        .transpose()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

/// The tenant's sessions, newest first, with filters.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    params(SessionListQuery, PageQuery),
    security(("bearer" = ["sessions:read"])),
    responses((status = 200, body = SessionList))
)]
async fn list_sessions(
    auth: Auth<scopes::SessionsRead>,
    State(sessions): State<Arc<SessionService>>,
    Query(query): Query<SessionListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<axum::Json<SessionList>, ApiError> {
    let filter = SessionFilter {
        kind: parse_kind(query.kind)?,
        component_id: non_empty(query.component_id),
        user_id: non_empty(query.user_id),
        name_contains: non_empty(query.session_name),
    };
    let listed = sessions
        .list(
            auth.principal.tenant_id,
            &filter,
            page.limit,
            page.cursor.as_deref(),
        )
        .await?;
    Ok(axum::Json(SessionList {
        meta: SessionListMeta {
            limit: page.limit.unwrap_or(agentd_runtime::page::DEFAULT_LIMIT),
            total_count: listed.total,
            next_cursor: listed.next_cursor,
        },
        data: listed.sessions.into_iter().map(SessionView::from).collect(),
    }))
}

/// A new session.
#[derive(Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    /// Your own id; a UUIDv7 when absent.
    pub session_id: Option<String>,
    pub session_name: Option<String>,
    /// The agent the session talks to.
    pub agent_id: Option<String>,
    /// The component for `team` and `workflow` sessions.
    pub component_id: Option<String>,
    /// `agent` (default), `team` or `workflow`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub user_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub session_state: Map<String, Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// `enqueue` (default), `reject` or `interrupt`.
    #[schema(value_type = Option<String>)]
    pub policy: Option<SessionPolicy>,
}

/// Creates a session.
#[utoipa::path(
    post,
    path = "/sessions",
    tag = "sessions",
    request_body = CreateSessionRequest,
    security(("bearer" = ["sessions:write"])),
    responses((status = 201, body = SessionView))
)]
async fn create_session(
    auth: Auth<scopes::SessionsWrite>,
    State(sessions): State<Arc<SessionService>>,
    Json(request): Json<CreateSessionRequest>,
) -> Result<(StatusCode, axum::Json<SessionView>), ApiError> {
    let id = optional_session_id(request.session_id.as_deref())?;
    let component_id = non_empty(request.agent_id)
        .or(non_empty(request.component_id))
        .ok_or_else(|| {
            ApiError::field(
                ErrorCode::InvalidField,
                "agent_id",
                "missing field `agent_id`: the agent the session talks to",
            )
        })?;
    let new = NewSession {
        id,
        kind: parse_kind(request.kind)?,
        component_id,
        user_id: non_empty(request.user_id),
        name: request.session_name,
        state: request.session_state,
        metadata: request.metadata,
        policy: request.policy,
    };
    let session = sessions.create(auth.principal.tenant_id, new).await?;
    Ok((StatusCode::CREATED, axum::Json(SessionView::from(session))))
}

/// Sessions to delete.
#[derive(Deserialize, ToSchema)]
pub struct DeleteSessionsRequest {
    #[schema(value_type = Vec<String>)]
    pub session_ids: Vec<SessionId>,
}

/// How many sessions were deleted.
#[derive(Serialize, ToSchema)]
pub struct DeletedSessions {
    pub deleted: u64,
}

/// Deletes several sessions with their runs. Ids the tenant does not have are skipped.
#[utoipa::path(
    delete,
    path = "/sessions",
    tag = "sessions",
    request_body = DeleteSessionsRequest,
    security(("bearer" = ["sessions:delete"])),
    responses((status = 200, body = DeletedSessions))
)]
async fn delete_sessions(
    auth: Auth<scopes::SessionsDelete>,
    State(sessions): State<Arc<SessionService>>,
    body: Bytes,
) -> Result<axum::Json<DeletedSessions>, ApiError> {
    let request: DeleteSessionsRequest = parse_json(&body)?;
    let deleted = sessions
        .delete_many(auth.principal.tenant_id, &request.session_ids)
        .await?;
    Ok(axum::Json(DeletedSessions { deleted }))
}

/// One session, with the fields AgentOS's session detail has besides: `agent_session_id`, and a
/// `session_name` that is never null (an unnamed session is called by its first message, as AgentOS
/// does, or `""` before it has one).
#[derive(Serialize, ToSchema)]
pub struct SessionDetailView {
    #[serde(flatten)]
    pub session: SessionView,
    /// The session id again, for agent sessions.
    pub agent_session_id: Option<String>,
}

/// One session.
#[utoipa::path(
    get,
    path = "/sessions/{session_id}",
    tag = "sessions",
    params(SessionPath),
    security(("bearer" = ["sessions:read"])),
    responses((status = 200, body = SessionDetailView))
)]
async fn get_session(
    auth: Auth<scopes::SessionsRead>,
    State(sessions): State<Arc<SessionService>>,
    Path(path): Path<SessionPath>,
) -> Result<axum::Json<SessionDetailView>, ApiError> {
    let session = sessions
        .get(auth.principal.tenant_id, &path.session_id)
        .await?;
    let name = sessions.display_name(&session).await?;
    let mut view = SessionView::from(session);
    view.session_name = Some(name);
    Ok(axum::Json(SessionDetailView {
        agent_session_id: view.agent_id.is_some().then(|| view.session_id.clone()),
        session: view,
    }))
}

/// Changes to a session: absent fields are kept, `null` clears `session_name` and `summary`.
#[derive(Deserialize, ToSchema)]
pub struct UpdateSessionRequest {
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<String>)]
    pub session_name: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub session_state: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<String>)]
    pub summary: Option<Option<String>>,
    #[schema(value_type = Option<String>)]
    pub policy: Option<SessionPolicy>,
}

/// Changes a session's name, state, metadata, summary or policy.
#[utoipa::path(
    patch,
    path = "/sessions/{session_id}",
    tag = "sessions",
    params(SessionPath),
    request_body = UpdateSessionRequest,
    security(("bearer" = ["sessions:write"])),
    responses((status = 200, body = SessionView))
)]
async fn update_session(
    auth: Auth<scopes::SessionsWrite>,
    State(sessions): State<Arc<SessionService>>,
    Path(path): Path<SessionPath>,
    Json(request): Json<UpdateSessionRequest>,
) -> Result<axum::Json<SessionView>, ApiError> {
    let patch = SessionPatch {
        name: request.session_name,
        state: request.session_state,
        metadata: request.metadata,
        summary: request.summary,
        policy: request.policy,
    };
    let session = sessions
        .update(auth.principal.tenant_id, &path.session_id, patch)
        .await?;
    Ok(axum::Json(SessionView::from(session)))
}

/// A new name.
#[derive(Deserialize, ToSchema)]
pub struct RenameSessionRequest {
    pub session_name: String,
}

/// Renames a session.
#[utoipa::path(
    post,
    path = "/sessions/{session_id}/rename",
    tag = "sessions",
    params(SessionPath),
    request_body = RenameSessionRequest,
    security(("bearer" = ["sessions:write"])),
    responses((status = 200, body = SessionView))
)]
async fn rename_session(
    auth: Auth<scopes::SessionsWrite>,
    State(sessions): State<Arc<SessionService>>,
    Path(path): Path<SessionPath>,
    Json(request): Json<RenameSessionRequest>,
) -> Result<axum::Json<SessionView>, ApiError> {
    let patch = SessionPatch {
        name: Some(Some(request.session_name)),
        ..SessionPatch::default()
    };
    let session = sessions
        .update(auth.principal.tenant_id, &path.session_id, patch)
        .await?;
    Ok(axum::Json(SessionView::from(session)))
}

/// Deletes a session with its runs.
#[utoipa::path(
    delete,
    path = "/sessions/{session_id}",
    tag = "sessions",
    params(SessionPath),
    security(("bearer" = ["sessions:delete"])),
    responses((status = 204))
)]
async fn delete_session(
    auth: Auth<scopes::SessionsDelete>,
    State(sessions): State<Arc<SessionService>>,
    Path(path): Path<SessionPath>,
) -> Result<StatusCode, ApiError> {
    sessions
        .delete(auth.principal.tenant_id, &path.session_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The session's runs, oldest first, as a JSON array (AgentOS's shape); the next page is in the
/// `Link` header (`rel="next"`) and its cursor in `X-Next-Cursor`, both absent on the last page.
#[utoipa::path(
    get,
    path = "/sessions/{session_id}/runs",
    tag = "sessions",
    params(SessionPath, PageQuery),
    security(("bearer" = ["sessions:read"])),
    responses((status = 200, body = Vec<RunView>, headers(
        ("Link" = String, description = "`<…&cursor=…>; rel=\"next\"` while more pages follow"),
        ("X-Next-Cursor" = String, description = "The `cursor` of the next page, while more pages follow"),
    )))
)]
async fn list_session_runs(
    auth: Auth<scopes::SessionsRead>,
    State(sessions): State<Arc<SessionService>>,
    OriginalUri(uri): OriginalUri,
    Path(path): Path<SessionPath>,
    Query(page): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = PageRequest::parse(page.limit, page.cursor.as_deref())?;
    let listed = sessions
        .runs(auth.principal.tenant_id, &path.session_id, page)
        .await?;
    let runs: Vec<RunView> = listed.items.into_iter().map(RunView::from).collect();
    Ok(array_page(runs, listed.next_cursor, &uri))
}

/// One run of the session.
#[utoipa::path(
    get,
    path = "/sessions/{session_id}/runs/{run_id}",
    tag = "sessions",
    params(SessionRunPath),
    security(("bearer" = ["sessions:read"])),
    responses((status = 200, body = RunView))
)]
async fn get_session_run(
    auth: Auth<scopes::SessionsRead>,
    State(sessions): State<Arc<SessionService>>,
    Path(path): Path<SessionRunPath>,
) -> Result<axum::Json<RunView>, ApiError> {
    let run = sessions
        .run(auth.principal.tenant_id, &path.session_id, path.run_id)
        .await?;
    Ok(axum::Json(RunView::from(run)))
}
