//! `/audit` and `/api/audit/{agent_id}`: the tenant's audit log, newest first, and one agent's own
//! trail (which a key scoped to that agent can read). Entries are written by the audit middleware
//! (`crate::audit`), never by these routes.

use std::sync::Arc;

use agentd_core::audit::{AuditEntry, AuditOutcome};
use agentd_core::AgentId;
use agentd_runtime::{AuditFilter, AuditService, PageRequest};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{Path, Query};
use crate::problem::ApiError;
use crate::routes::agents::AgentPath;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(agent_audit))
}

fn outcome_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(AuditOutcome::ALL.iter().map(|o| o.as_str())))
}

/// One entry of the audit log, with its place in the tenant's hash chain.
#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    pub id: uuid::Uuid,
    /// The entry's place in the tenant's chain, from 1.
    pub seq: u64,
    /// Who acted: `key:<id>`, `user:<id>` or `anonymous`.
    #[schema(example = "key:0190f4c2-8d1e-7a3b-9c4d-5e6f7a8b9c0d")]
    pub actor: String,
    /// The method and route template, or a named event such as `auth.login`.
    #[schema(example = "POST /agents/{agent_id}/pause")]
    pub action: String,
    /// The path acted on, with its parameters.
    #[schema(example = "/agents/0190f4c2-8d1e-7a3b-9c4d-5e6f7a8b9c0d/pause")]
    pub target: String,
    /// The agent the entry concerns, if any.
    pub agent_id: Option<uuid::Uuid>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// `success`, `denied` (401/403) or `failed`.
    #[schema(schema_with = outcome_schema)]
    pub outcome: String,
    /// The caller's address, as the server saw it.
    pub client_addr: Option<String>,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The hash of the entry before it in the chain (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this entry's canonical encoding and `prev_hash`.
    pub hash: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        let record = entry.record;
        Self {
            id: record.id.as_uuid(),
            seq: entry.seq,
            actor: record.actor,
            action: record.action,
            target: record.target,
            agent_id: record.agent_id.map(|id| id.as_uuid()),
            status: record.status,
            outcome: record.outcome.as_str().to_owned(),
            client_addr: record.client_addr,
            request_id: record.request_id,
            created_at: record.created_at,
            prev_hash: entry.prev_hash,
            hash: entry.hash,
        }
    }
}

/// One page of audit entries, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub data: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and pagination of an audit list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only entries of this actor (`key:<id>`, `user:<id>`, `anonymous`).
    pub actor: Option<String>,
    /// Only entries with this action, e.g. `POST /agents/{agent_id}/pause`.
    pub action: Option<String>,
    /// Only entries whose target starts with this, e.g. `/keys` or `/agents/<id>`.
    pub target: Option<String>,
    /// Only entries concerning this agent.
    #[param(value_type = Option<uuid::Uuid>)]
    pub agent_id: Option<AgentId>,
    #[param(schema_with = outcome_schema)]
    pub outcome: Option<AuditOutcome>,
    /// Only entries at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only entries before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

impl AuditQuery {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            actor: self.actor.clone(),
            action: self.action.clone(),
            target_prefix: self.target.clone(),
            agent_id: self.agent_id,
            outcome: self.outcome,
            from: self.from,
            to: self.to,
        }
    }
}

/// Filters and pagination of one agent's trail.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrailQuery {
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only entries with this action, e.g. `POST /agents/{agent_id}/pause`.
    pub action: Option<String>,
    #[param(schema_with = outcome_schema)]
    pub outcome: Option<AuditOutcome>,
    /// Only entries at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only entries before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

fn render(page: agentd_runtime::Page<AuditEntry>) -> axum::Json<AuditList> {
    axum::Json(AuditList {
        data: page.items.into_iter().map(AuditEntryView::from).collect(),
        next_cursor: page.next_cursor,
    })
}

/// The tenant's audit log, newest first, with filters: every change, every refused request (401,
/// 403) and every login.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditQuery),
    security(("bearer" = ["audit:read"])),
    responses((status = 200, body = AuditList))
)]
async fn list_audit(
    auth: Auth<scopes::AuditRead>,
    State(audit): State<Arc<AuditService>>,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<AuditList>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let page = audit
        .list(auth.principal.tenant_id, &query.filter(), page)
        .await?;
    Ok(render(page))
}

/// One agent's audit trail, newest first: what was done to it and what its own keys did. A key
/// scoped to the agent (`agents:<id>:read`) may read it.
#[utoipa::path(
    get,
    path = "/api/audit/{agent_id}",
    tag = "audit",
    params(AgentPath, TrailQuery),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, body = AuditList))
)]
async fn agent_audit(
    auth: Auth<scopes::AgentsRead>,
    State(audit): State<Arc<AuditService>>,
    Path(path): Path<AgentPath>,
    Query(query): Query<TrailQuery>,
) -> Result<axum::Json<AuditList>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = AuditFilter {
        action: query.action,
        outcome: query.outcome,
        from: query.from,
        to: query.to,
        ..AuditFilter::default()
    };
    let page = audit
        .agent_trail(auth.principal.tenant_id, path.agent_id, filter, page)
        .await?;
    Ok(render(page))
}
