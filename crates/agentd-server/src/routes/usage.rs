//! `GET /account/usage` (Open Agent API): the tenant's metered usage per key, agent and model, with
//! its plan and limits; and `GET /models` (AgentOS): the models the tenant's agents use.

use std::collections::BTreeSet;
use std::sync::Arc;

use agentd_core::Timestamp;
use agentd_runtime::{AgentFilter, RegistryService, UsageService, UsageTotals};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::Query;
use crate::problem::ApiError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(account_usage))
        .routes(routes!(agent_models))
}

/// The period to add up; both ends default to the current calendar month (UTC).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// RFC 3339; inclusive.
    #[param(value_type = Option<String>)]
    pub start: Option<Timestamp>,
    /// RFC 3339; exclusive.
    #[param(value_type = Option<String>)]
    pub end: Option<Timestamp>,
}

/// Requests and tokens.
#[derive(Serialize, ToSchema)]
pub struct UsageFigures {
    /// Gateway calls plus runs.
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl From<UsageTotals> for UsageFigures {
    fn from(totals: UsageTotals) -> Self {
        Self {
            requests: totals.requests,
            prompt_tokens: totals.prompt_tokens,
            completion_tokens: totals.completion_tokens,
            total_tokens: totals.total_tokens(),
        }
    }
}

/// Usage of one key, agent or model.
#[derive(Serialize, ToSchema)]
pub struct UsageEntry {
    /// The key id, agent id or model.
    pub id: Option<String>,
    #[serde(flatten)]
    pub usage: UsageFigures,
}

/// The plan and its limits (`null`: no limit).
#[derive(Serialize, ToSchema)]
pub struct PlanView {
    pub name: String,
    pub requests_per_minute: Option<u32>,
    pub monthly_tokens: Option<u64>,
}

/// The tenant's usage over a period.
#[derive(Serialize, ToSchema)]
pub struct AccountUsageView {
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub end: Timestamp,
    pub plan: PlanView,
    #[serde(flatten)]
    pub totals: UsageFigures,
    /// Per API key (`id` null for runs started before keys were recorded).
    pub by_key: Vec<UsageEntry>,
    /// Per agent (runs only).
    pub by_agent: Vec<UsageEntry>,
    /// Per model (`provider/model` or a route).
    pub by_model: Vec<UsageEntry>,
}

/// The tenant's metered usage (runs and gateway calls) per key, agent and model, with its plan.
#[utoipa::path(
    get,
    path = "/account/usage",
    tag = "usage",
    params(UsageQuery),
    security(("bearer" = ["usage:read"])),
    responses((status = 200, body = AccountUsageView))
)]
async fn account_usage(
    auth: Auth<scopes::UsageRead>,
    State(usage): State<Arc<UsageService>>,
    Query(query): Query<UsageQuery>,
) -> Result<axum::Json<AccountUsageView>, ApiError> {
    let account = usage
        .account(auth.principal.tenant_id, query.start, query.end)
        .await?;
    let entries = |items: Vec<(Option<String>, UsageTotals)>| {
        items
            .into_iter()
            .map(|(id, totals)| UsageEntry {
                id,
                usage: totals.into(),
            })
            .collect()
    };
    Ok(axum::Json(AccountUsageView {
        start: account.from,
        end: account.to,
        plan: PlanView {
            name: account.plan,
            requests_per_minute: account.limits.requests_per_minute,
            monthly_tokens: account.limits.monthly_tokens,
        },
        totals: account.totals.into(),
        by_key: entries(
            account
                .by_key
                .into_iter()
                .map(|(id, t)| (id.map(|id| id.to_string()), t))
                .collect(),
        ),
        by_agent: entries(
            account
                .by_agent
                .into_iter()
                .map(|(id, t)| (Some(id.to_string()), t))
                .collect(),
        ),
        by_model: entries(
            account
                .by_model
                .into_iter()
                .map(|(id, t)| (Some(id), t))
                .collect(),
        ),
    }))
}

/// A model agents use, as AgentOS lists it.
#[derive(Serialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct AgentModel {
    /// The model's name at its provider.
    pub id: String,
    /// The provider's configured name.
    pub provider: String,
}

/// The distinct models the tenant's agents use (AgentOS's `GET /models`).
#[utoipa::path(
    get,
    path = "/models",
    tag = "usage",
    security(("bearer" = ["models:read"])),
    responses((status = 200, body = Vec<AgentModel>))
)]
async fn agent_models(
    auth: Auth<scopes::ModelsRead>,
    State(registry): State<Arc<RegistryService>>,
) -> Result<axum::Json<Vec<AgentModel>>, ApiError> {
    let refs = registry
        .model_refs(auth.principal.tenant_id, &AgentFilter::default())
        .await?;
    let models: BTreeSet<AgentModel> = refs
        .into_iter()
        .map(|model| {
            let (provider, id) = agentd_core::agent::split_model_ref(&model);
            AgentModel {
                id: id.to_owned(),
                provider: provider.unwrap_or_default().to_owned(),
            }
        })
        .collect();
    Ok(axum::Json(models.into_iter().collect()))
}
