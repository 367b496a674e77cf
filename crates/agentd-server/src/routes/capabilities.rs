//! `/agents/{agent_id}/capabilities`: what an agent can do, how well, and who endorses it.

use std::sync::Arc;

use agentd_core::agent::Capability;
use agentd_core::AgentId;
use agentd_runtime::capabilities::{CapabilityPatch, NewCapability};
use agentd_runtime::CapabilityService;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{Json, Path};
use crate::problem::ApiError;
use crate::routes::agents::AgentPath;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_capabilities, add_capability))
        .routes(routes!(update_capability))
        .routes(routes!(endorse))
}

/// A capability of an agent.
#[derive(Serialize, ToSchema)]
pub struct CapabilityView {
    #[schema(example = "research")]
    pub name: String,
    pub description: Option<String>,
    /// How well the agent does it, 0 to 1.
    pub proficiency: f64,
    /// How many times it has done it.
    pub experience: u64,
    /// How many principals endorsed it.
    pub endorsements: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Capability> for CapabilityView {
    fn from(capability: Capability) -> Self {
        Self {
            name: capability.name,
            description: capability.description,
            proficiency: capability.proficiency,
            experience: capability.experience,
            endorsements: capability.endorsements,
            created_at: capability.created_at,
            updated_at: capability.updated_at,
        }
    }
}

/// The agent's capabilities.
#[derive(Serialize, ToSchema)]
pub struct CapabilityList {
    pub data: Vec<CapabilityView>,
}

/// A capability to add. The agent's declared `skills` are added automatically (proficiency 0).
#[derive(Deserialize, ToSchema)]
pub struct AddCapabilityRequest {
    /// 1 to 100 characters, no `/`.
    pub name: String,
    pub description: Option<String>,
    /// 0 to 1 (default 0).
    pub proficiency: Option<f64>,
    /// Default 0.
    pub experience: Option<u64>,
}

/// Changes to a capability; absent fields are kept, a `null` description clears it.
#[derive(Deserialize, ToSchema)]
pub struct UpdateCapabilityRequest {
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub description: Option<Option<String>>,
    /// 0 to 1.
    pub proficiency: Option<f64>,
    pub experience: Option<u64>,
}

/// An endorsement.
#[derive(Deserialize, ToSchema, Default)]
pub struct EndorseRequest {
    pub comment: Option<String>,
}

/// Path of one capability.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CapabilityPath {
    #[param(value_type = uuid::Uuid)]
    pub agent_id: AgentId,
    /// The capability's name.
    pub capability: String,
}

/// The agent's capabilities, by name, with endorsement counts.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/capabilities",
    tag = "agents",
    params(AgentPath),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = CapabilityList))
)]
async fn list_capabilities(
    auth: Auth<scopes::AgentsRead>,
    State(capabilities): State<Arc<CapabilityService>>,
    Path(path): Path<AgentPath>,
) -> Result<axum::Json<CapabilityList>, ApiError> {
    let list = capabilities
        .list(auth.principal.tenant_id, path.agent_id)
        .await?;
    Ok(axum::Json(CapabilityList {
        data: list.into_iter().map(CapabilityView::from).collect(),
    }))
}

/// Adds a capability to the agent.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/capabilities",
    tag = "agents",
    params(AgentPath),
    request_body = AddCapabilityRequest,
    security(("bearer" = ["agents:write"])),
    responses(
        (status = 201, body = CapabilityView),
        (status = 409, description = "The capability exists, or the agent is terminated", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn add_capability(
    auth: Auth<scopes::AgentsWrite>,
    State(capabilities): State<Arc<CapabilityService>>,
    Path(path): Path<AgentPath>,
    Json(request): Json<AddCapabilityRequest>,
) -> Result<(StatusCode, axum::Json<CapabilityView>), ApiError> {
    let new = NewCapability {
        name: request.name,
        description: request.description,
        proficiency: request.proficiency,
        experience: request.experience,
    };
    let capability = capabilities
        .add(&auth.principal, path.agent_id, new)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CapabilityView::from(capability)),
    ))
}

/// Changes a capability's proficiency, experience or description.
#[utoipa::path(
    patch,
    path = "/agents/{agent_id}/capabilities/{capability}",
    tag = "agents",
    params(CapabilityPath),
    request_body = UpdateCapabilityRequest,
    security(("bearer" = ["agents:write"])),
    responses((status = 200, body = CapabilityView))
)]
async fn update_capability(
    auth: Auth<scopes::AgentsWrite>,
    State(capabilities): State<Arc<CapabilityService>>,
    Path(path): Path<CapabilityPath>,
    Json(request): Json<UpdateCapabilityRequest>,
) -> Result<axum::Json<CapabilityView>, ApiError> {
    let patch = CapabilityPatch {
        description: request.description,
        proficiency: request.proficiency,
        experience: request.experience,
    };
    let capability = capabilities
        .update(&auth.principal, path.agent_id, &path.capability, patch)
        .await?;
    Ok(axum::Json(CapabilityView::from(capability)))
}

/// Endorses a capability as the calling principal; each principal endorses a capability once (409 after).
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/capabilities/{capability}/endorse",
    tag = "agents",
    params(CapabilityPath),
    request_body(content = Option<EndorseRequest>, description = "An optional comment"),
    security(("bearer" = ["agents:write"])),
    responses(
        (status = 201, body = CapabilityView),
        (status = 409, description = "Already endorsed by this principal", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn endorse(
    auth: Auth<scopes::AgentsWrite>,
    State(capabilities): State<Arc<CapabilityService>>,
    Path(path): Path<CapabilityPath>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<CapabilityView>), ApiError> {
    let request: EndorseRequest = crate::extract::optional_json(&body)?;
    let comment = request.comment;
    let capability = capabilities
        .endorse(&auth.principal, path.agent_id, &path.capability, comment)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CapabilityView::from(capability)),
    ))
}
