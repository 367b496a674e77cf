//! `/agents/{agent_id}/versions` and `/agents/{agent_id}/events`: an agent's history.

use std::sync::Arc;

use agentd_core::agent::{AgentEvent, AgentStatus, AgentVersion};
use agentd_core::EventId;
use agentd_runtime::{PageRequest, RegistryService};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{Path, Query};
use crate::problem::ApiError;
use crate::routes::agents::{status_schema, AgentPath, ToolBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_versions))
        .routes(routes!(list_events))
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
