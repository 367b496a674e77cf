//! `/agents/{agent_id}/heartbeat` and `/agents/{agent_id}/health`: heartbeats (optionally with resource
//! gauges) and the health verdict with its reasoning.

use std::sync::Arc;

use agentd_core::agent::{AgentHealth, AgentKind, AgentStatus};
use agentd_runtime::registry::HealthReport;
use agentd_runtime::RegistryService;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::Path;
use crate::problem::ApiError;
use crate::routes::agents::{health_schema, kind_schema, status_schema, AgentPath};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(health))
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
    Path(path): Path<AgentPath>,
    body: axum::body::Bytes,
) -> Result<axum::Json<AgentHealthView>, ApiError> {
    let request: HeartbeatRequest = crate::extract::optional_json(&body)?;
    let gauges = request
        .usage
        .map(|usage| agentd_runtime::resources::Gauges {
            cpu_millicores: usage.cpu_millicores,
            memory_mb: usage.memory_mb,
            storage_mb: usage.storage_mb,
            network_mbps: usage.network_mbps,
        });
    let report = registry
        .heartbeat(&auth.principal, path.agent_id, gauges)
        .await?;
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
