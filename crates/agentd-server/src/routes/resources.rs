//! `/agents/{agent_id}/resources`: limits, usage, consumption against the limits, and resets.

use std::sync::Arc;

use agentd_core::agent::{AgentResources, ResourceLimits, ResourceUsage};
use agentd_runtime::resources::{Consumption, LimitsPatch};
use agentd_runtime::ResourceService;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, Problem};
use crate::routes::agents::AgentPath;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_resources, set_limits))
        .routes(routes!(get_usage, consume))
        .routes(routes!(reset))
}

/// Limits; absent (or `null`) means unlimited.
#[derive(Serialize, ToSchema)]
pub struct LimitsView {
    pub cpu_millicores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub storage_mb: Option<u64>,
    pub network_mbps: Option<u64>,
    /// API calls allowed between resets.
    pub api_quota: Option<u64>,
}

impl From<ResourceLimits> for LimitsView {
    fn from(limits: ResourceLimits) -> Self {
        Self {
            cpu_millicores: limits.cpu_millicores,
            memory_mb: limits.memory_mb,
            storage_mb: limits.storage_mb,
            network_mbps: limits.network_mbps,
            api_quota: limits.api_quota,
        }
    }
}

/// Usage: gauges the agent reports, and API calls since the last reset.
#[derive(Serialize, ToSchema)]
pub struct UsageView {
    pub cpu_millicores: u64,
    pub memory_mb: u64,
    pub storage_mb: u64,
    pub network_mbps: u64,
    pub api_calls: u64,
}

impl From<ResourceUsage> for UsageView {
    fn from(usage: ResourceUsage) -> Self {
        Self {
            cpu_millicores: usage.cpu_millicores,
            memory_mb: usage.memory_mb,
            storage_mb: usage.storage_mb,
            network_mbps: usage.network_mbps,
            api_calls: usage.api_calls,
        }
    }
}

/// An agent's resource allocation and usage.
#[derive(Serialize, ToSchema)]
pub struct ResourcesView {
    pub limits: LimitsView,
    pub usage: UsageView,
    /// When usage was last reset.
    pub reset_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<AgentResources> for ResourcesView {
    fn from(resources: AgentResources) -> Self {
        Self {
            limits: LimitsView::from(resources.limits),
            usage: UsageView::from(resources.usage),
            reset_at: resources.reset_at,
            updated_at: resources.updated_at,
        }
    }
}

/// New limits: absent fields are kept, `null` removes a limit.
#[derive(Deserialize, ToSchema)]
pub struct LimitsRequest {
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<u64>)]
    pub cpu_millicores: Option<Option<u64>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<u64>)]
    pub memory_mb: Option<Option<u64>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<u64>)]
    pub storage_mb: Option<Option<u64>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<u64>)]
    pub network_mbps: Option<Option<u64>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<u64>)]
    pub api_quota: Option<Option<u64>>,
}

/// One resource against its limit.
#[derive(Serialize, ToSchema)]
pub struct ResourceLine {
    /// `cpu_millicores`, `memory_mb`, `storage_mb`, `network_mbps` or `api_quota` (API calls).
    pub resource: &'static str,
    pub used: u64,
    pub limit: Option<u64>,
    /// Used over limit, in percent; absent when unlimited.
    pub percent: Option<f64>,
    pub over_limit: bool,
}

/// Usage against limits.
#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    pub resources: Vec<ResourceLine>,
    pub reset_at: DateTime<Utc>,
}

impl From<AgentResources> for UsageReport {
    fn from(resources: AgentResources) -> Self {
        Self {
            resources: resources
                .usage_lines()
                .iter()
                .map(|line| ResourceLine {
                    resource: line.resource,
                    used: line.used,
                    limit: line.limit,
                    percent: line.percent(),
                    over_limit: line.over_limit(),
                })
                .collect(),
            reset_at: resources.reset_at,
        }
    }
}

/// Consumption to charge.
#[derive(Deserialize, ToSchema)]
pub struct ConsumeRequest {
    /// API calls made.
    #[serde(default)]
    pub api_calls: u64,
    /// Storage added, in MB.
    #[serde(default)]
    pub storage_mb: u64,
}

/// The agent's limits and usage.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/resources",
    tag = "agents",
    params(AgentPath),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = ResourcesView))
)]
async fn get_resources(
    auth: Auth<scopes::AgentsRead>,
    State(resources): State<Arc<ResourceService>>,
    Path(path): Path<AgentPath>,
) -> Result<axum::Json<ResourcesView>, ApiError> {
    let current = resources
        .get(auth.principal.tenant_id, path.agent_id)
        .await?;
    Ok(axum::Json(ResourcesView::from(current)))
}

/// Changes the agent's limits.
#[utoipa::path(
    patch,
    path = "/agents/{agent_id}/resources",
    tag = "agents",
    params(AgentPath),
    request_body = LimitsRequest,
    security(("bearer" = ["agents:write"])),
    responses((status = 200, body = ResourcesView))
)]
async fn set_limits(
    auth: Auth<scopes::AgentsWrite>,
    State(resources): State<Arc<ResourceService>>,
    Path(path): Path<AgentPath>,
    Json(request): Json<LimitsRequest>,
) -> Result<axum::Json<ResourcesView>, ApiError> {
    let patch = LimitsPatch {
        cpu_millicores: request.cpu_millicores,
        memory_mb: request.memory_mb,
        storage_mb: request.storage_mb,
        network_mbps: request.network_mbps,
        api_quota: request.api_quota,
    };
    let updated = resources
        .set_limits(&auth.principal, path.agent_id, patch)
        .await?;
    Ok(axum::Json(ResourcesView::from(updated)))
}

/// Usage against each limit.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/resources/usage",
    tag = "agents",
    params(AgentPath),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = UsageReport))
)]
async fn get_usage(
    auth: Auth<scopes::AgentsRead>,
    State(resources): State<Arc<ResourceService>>,
    Path(path): Path<AgentPath>,
) -> Result<axum::Json<UsageReport>, ApiError> {
    let current = resources
        .get(auth.principal.tenant_id, path.agent_id)
        .await?;
    Ok(axum::Json(UsageReport::from(current)))
}

/// Charges consumption (API calls, storage) against the limits. Past the API quota → 429
/// `quota_exceeded`; past the storage limit → 403 `limit_exceeded`; `field` names the limit and nothing
/// is charged.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/resources/usage",
    tag = "agents",
    params(AgentPath),
    request_body = ConsumeRequest,
    security(("bearer" = ["agents:write"])),
    responses(
        (status = 200, body = ResourcesView),
        (status = 429, description = "The API quota is used up", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn consume(
    auth: Auth<scopes::AgentsWrite>,
    State(resources): State<Arc<ResourceService>>,
    Path(path): Path<AgentPath>,
    Json(request): Json<ConsumeRequest>,
) -> Result<axum::Json<ResourcesView>, ApiError> {
    let consumption = Consumption {
        api_calls: request.api_calls,
        storage_mb: request.storage_mb,
    };
    let updated = resources
        .consume(&auth.principal, path.agent_id, consumption)
        .await?;
    Ok(axum::Json(ResourcesView::from(updated)))
}

/// Zeroes the usage and starts a new quota period.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/resources/reset",
    tag = "agents",
    params(AgentPath),
    security(("bearer" = ["agents:write"])),
    responses((status = 200, body = ResourcesView))
)]
async fn reset(
    auth: Auth<scopes::AgentsWrite>,
    State(resources): State<Arc<ResourceService>>,
    Path(path): Path<AgentPath>,
) -> Result<axum::Json<ResourcesView>, ApiError> {
    let updated = resources.reset(&auth.principal, path.agent_id).await?;
    Ok(axum::Json(ResourcesView::from(updated)))
}
