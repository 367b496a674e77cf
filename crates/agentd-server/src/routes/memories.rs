//! `/memories…`, `/memory_topics` and `/user_memory_stats`: AgentOS's user memory API. Lists use
//! AgentOS's `{data, meta}` shape with page numbers, and also give a cursor for the next page.

use std::sync::Arc;

use agentd_core::memory::Memory;
use agentd_core::MemoryId;
use agentd_runtime::memories::{
    parse_sort, parse_topics, MemoryPageRequest, MemoryPatch, NewMemory,
};
use agentd_runtime::{MemoryFilter, MemoryService};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{parse_json, Json, Path, Query};
use crate::problem::ApiError;
use crate::routes::PageMeta;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_memories, create_memory, delete_memories))
        .routes(routes!(get_memory, update_memory, delete_memory))
        .routes(routes!(memory_topics))
        .routes(routes!(optimize_memories))
        .routes(routes!(user_memory_stats))
}

/// Path of one memory.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemoryPath {
    #[param(value_type = uuid::Uuid)]
    pub memory_id: MemoryId,
}

/// A memory about a user, in AgentOS's `UserMemory` shape.
#[derive(Serialize, ToSchema)]
pub struct MemoryView {
    pub memory_id: String,
    /// The fact.
    pub memory: String,
    pub topics: Vec<String>,
    pub user_id: String,
    pub agent_id: Option<String>,
    pub team_id: Option<String>,
    /// The input the memory was drawn from.
    pub input: Option<String>,
    pub feedback: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Memory> for MemoryView {
    fn from(memory: Memory) -> Self {
        Self {
            memory_id: memory.id.to_string(),
            memory: memory.memory,
            topics: memory.topics,
            user_id: memory.user_id,
            agent_id: memory.agent_id,
            team_id: memory.team_id,
            input: memory.input,
            feedback: memory.feedback,
            created_at: memory.created_at,
            updated_at: memory.updated_at,
        }
    }
}

/// A page of memories.
#[derive(Serialize, ToSchema)]
pub struct MemoryList {
    pub data: Vec<MemoryView>,
    pub meta: PageMeta,
}

/// Filters, order and page of the memory list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemoryListQuery {
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub team_id: Option<String>,
    /// Comma-separated: only memories with every one of these topics.
    pub topics: Option<String>,
    /// Memories whose text contains this (ASCII letters in any case).
    pub search_content: Option<String>,
    /// Memories per page (1 to 500, default 50).
    pub limit: Option<u32>,
    /// The page, from 1 (the default); not with `cursor`.
    pub page: Option<u32>,
    /// `next_cursor` of the previous page; not with `page`.
    pub cursor: Option<String>,
    /// `updated_at` (default) or `created_at`.
    pub sort_by: Option<String>,
    /// `desc` (default) or `asc`.
    pub sort_order: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

/// The tenant's memories, with filters, most recently updated first unless sorted otherwise.
#[utoipa::path(
    get,
    path = "/memories",
    tag = "memories",
    params(MemoryListQuery),
    security(("bearer" = ["memories:read"])),
    responses((status = 200, body = MemoryList))
)]
async fn list_memories(
    auth: Auth<scopes::MemoriesRead>,
    State(memories): State<Arc<MemoryService>>,
    Query(query): Query<MemoryListQuery>,
) -> Result<axum::Json<MemoryList>, ApiError> {
    let sort = parse_sort(query.sort_by.as_deref(), query.sort_order.as_deref())?;
    let filter = MemoryFilter {
        user_id: auth.principal.acting_user(non_empty(query.user_id))?,
        agent_id: non_empty(query.agent_id),
        team_id: non_empty(query.team_id),
        topics: parse_topics(query.topics.as_deref()),
        text_contains: non_empty(query.search_content),
    };
    let page = MemoryPageRequest {
        limit: query.limit,
        page: query.page,
        cursor: query.cursor,
    };
    let listed = memories
        .list(auth.principal.tenant_id, filter, sort, page)
        .await?;
    Ok(axum::Json(MemoryList {
        meta: PageMeta::new(listed.page, listed.limit, listed.total, listed.next_cursor),
        data: listed.memories.into_iter().map(MemoryView::from).collect(),
    }))
}

/// A new memory.
#[derive(Deserialize, ToSchema)]
pub struct CreateMemoryRequest {
    /// The fact, 1 to 5000 characters.
    pub memory: String,
    /// Whom the memory is about (required).
    pub user_id: Option<String>,
    pub topics: Option<Vec<String>>,
    /// The agent that learned it.
    pub agent_id: Option<String>,
    /// The team that learned it.
    pub team_id: Option<String>,
    /// The input the memory was drawn from.
    pub input: Option<String>,
}

/// Stores a memory about a user.
#[utoipa::path(
    post,
    path = "/memories",
    tag = "memories",
    request_body = CreateMemoryRequest,
    security(("bearer" = ["memories:write"])),
    responses((status = 201, body = MemoryView))
)]
async fn create_memory(
    auth: Auth<scopes::MemoriesWrite>,
    State(memories): State<Arc<MemoryService>>,
    Json(request): Json<CreateMemoryRequest>,
) -> Result<(StatusCode, axum::Json<MemoryView>), ApiError> {
    let new = NewMemory {
        memory: request.memory,
        user_id: auth.principal.acting_user(request.user_id)?,
        agent_id: request.agent_id,
        team_id: request.team_id,
        topics: request.topics.unwrap_or_default(),
        input: request.input,
    };
    let memory = memories.create(auth.principal.tenant_id, new).await?;
    Ok((StatusCode::CREATED, axum::Json(MemoryView::from(memory))))
}

/// Memories to delete.
#[derive(Deserialize, ToSchema)]
pub struct DeleteMemoriesRequest {
    /// At least one.
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub memory_ids: Vec<MemoryId>,
    /// Delete only those of this user.
    pub user_id: Option<String>,
}

/// How many memories were deleted.
#[derive(Serialize, ToSchema)]
pub struct DeletedMemories {
    pub deleted: u64,
}

/// Deletes several memories. Ids the tenant does not have (or, with `user_id`, that are another
/// user's) are skipped.
#[utoipa::path(
    delete,
    path = "/memories",
    tag = "memories",
    request_body = DeleteMemoriesRequest,
    security(("bearer" = ["memories:delete"])),
    responses((status = 200, body = DeletedMemories))
)]
async fn delete_memories(
    auth: Auth<scopes::MemoriesDelete>,
    State(memories): State<Arc<MemoryService>>,
    body: Bytes,
) -> Result<axum::Json<DeletedMemories>, ApiError> {
    // Read whatever the content type: clients often send a DELETE's body without one.
    let request: DeleteMemoriesRequest = parse_json(&body)?;
    let deleted = memories
        .delete_many(
            auth.principal.tenant_id,
            &request.memory_ids,
            auth.principal.acting_user(non_empty(request.user_id))?,
        )
        .await?;
    Ok(axum::Json(DeletedMemories { deleted }))
}

/// One memory.
#[utoipa::path(
    get,
    path = "/memories/{memory_id}",
    tag = "memories",
    params(MemoryPath),
    security(("bearer" = ["memories:read"])),
    responses((status = 200, body = MemoryView))
)]
async fn get_memory(
    auth: Auth<scopes::MemoriesRead>,
    State(memories): State<Arc<MemoryService>>,
    Path(path): Path<MemoryPath>,
) -> Result<axum::Json<MemoryView>, ApiError> {
    let memory = memories.get_for(&auth.principal, path.memory_id).await?;
    Ok(axum::Json(MemoryView::from(memory)))
}

/// Changes to a memory: absent fields are kept, `null` clears `agent_id`, `team_id`, `input` and
/// `feedback`. A memory's user does not change (a `user_id` sent by AgentOS clients is ignored).
#[derive(Deserialize, ToSchema)]
pub struct UpdateMemoryRequest {
    pub memory: Option<String>,
    /// Replaces the topics.
    pub topics: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<String>)]
    pub team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<String>)]
    pub input: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<String>)]
    pub feedback: Option<Option<String>>,
}

/// Changes a memory's text, topics, agent, team, input or feedback.
#[utoipa::path(
    patch,
    path = "/memories/{memory_id}",
    tag = "memories",
    params(MemoryPath),
    request_body = UpdateMemoryRequest,
    security(("bearer" = ["memories:write"])),
    responses((status = 200, body = MemoryView))
)]
async fn update_memory(
    auth: Auth<scopes::MemoriesWrite>,
    State(memories): State<Arc<MemoryService>>,
    Path(path): Path<MemoryPath>,
    Json(request): Json<UpdateMemoryRequest>,
) -> Result<axum::Json<MemoryView>, ApiError> {
    let patch = MemoryPatch {
        memory: request.memory,
        topics: request.topics,
        agent_id: request.agent_id,
        team_id: request.team_id,
        input: request.input,
        feedback: request.feedback,
    };
    // Another user's memory is not found for a signed-in user.
    memories.get_for(&auth.principal, path.memory_id).await?;
    let memory = memories
        .update(auth.principal.tenant_id, path.memory_id, patch)
        .await?;
    Ok(axum::Json(MemoryView::from(memory)))
}

/// Deletes a memory.
#[utoipa::path(
    delete,
    path = "/memories/{memory_id}",
    tag = "memories",
    params(MemoryPath),
    security(("bearer" = ["memories:delete"])),
    responses((status = 204))
)]
async fn delete_memory(
    auth: Auth<scopes::MemoriesDelete>,
    State(memories): State<Arc<MemoryService>>,
    Path(path): Path<MemoryPath>,
) -> Result<StatusCode, ApiError> {
    memories.get_for(&auth.principal, path.memory_id).await?;
    memories
        .delete(auth.principal.tenant_id, path.memory_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whose topics.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemoryTopicsQuery {
    /// Only this user's topics.
    pub user_id: Option<String>,
}

/// The distinct topics of the tenant's memories, sorted (a plain array, as AgentOS answers).
#[utoipa::path(
    get,
    path = "/memory_topics",
    tag = "memories",
    params(MemoryTopicsQuery),
    security(("bearer" = ["memories:read"])),
    responses((status = 200, body = Vec<String>))
)]
async fn memory_topics(
    auth: Auth<scopes::MemoriesRead>,
    State(memories): State<Arc<MemoryService>>,
    Query(query): Query<MemoryTopicsQuery>,
) -> Result<axum::Json<Vec<String>>, ApiError> {
    let topics = memories
        .topics(
            auth.principal.tenant_id,
            auth.principal.acting_user(non_empty(query.user_id))?,
        )
        .await?;
    Ok(axum::Json(topics))
}

/// One user's memory figures.
#[derive(Serialize, ToSchema)]
pub struct UserMemoryStatsView {
    pub user_id: String,
    pub total_memories: u64,
    pub last_memory_updated_at: DateTime<Utc>,
}

/// Paging facts of the per-user figures.
#[derive(Serialize, ToSchema)]
pub struct UserMemoryStatsMeta {
    pub page: u32,
    pub limit: u32,
    pub total_pages: u64,
    /// Users with memories.
    pub total_count: u64,
}

/// A page of per-user memory figures.
#[derive(Serialize, ToSchema)]
pub struct UserMemoryStatsList {
    pub data: Vec<UserMemoryStatsView>,
    pub meta: UserMemoryStatsMeta,
}

/// Which users' figures.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserMemoryStatsQuery {
    /// Only this user.
    pub user_id: Option<String>,
    /// Users per page (1 to 500, default 50).
    pub limit: Option<u32>,
    /// The page, from 1.
    pub page: Option<u32>,
}

/// Per user: how many memories and when the last one changed, most recently changed first.
#[utoipa::path(
    get,
    path = "/user_memory_stats",
    tag = "memories",
    params(UserMemoryStatsQuery),
    security(("bearer" = ["memories:read"])),
    responses((status = 200, body = UserMemoryStatsList))
)]
async fn user_memory_stats(
    auth: Auth<scopes::MemoriesRead>,
    State(memories): State<Arc<MemoryService>>,
    Query(query): Query<UserMemoryStatsQuery>,
) -> Result<axum::Json<UserMemoryStatsList>, ApiError> {
    let listed = memories
        .user_stats(
            auth.principal.tenant_id,
            auth.principal.acting_user(non_empty(query.user_id))?,
            query.limit,
            query.page,
        )
        .await?;
    Ok(axum::Json(UserMemoryStatsList {
        meta: UserMemoryStatsMeta {
            page: listed.page,
            limit: listed.limit,
            total_pages: listed.total.div_ceil(u64::from(listed.limit)),
            total_count: listed.total,
        },
        data: listed
            .users
            .into_iter()
            .map(|stats| UserMemoryStatsView {
                user_id: stats.user_id,
                total_memories: stats.total_memories,
                last_memory_updated_at: stats.last_memory_updated_at,
            })
            .collect(),
    }))
}

/// What to optimize.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizeMemoriesRequest {
    /// The user whose memories are merged.
    pub user_id: String,
    /// The model that merges them: `provider/model` or AgentOS's `provider:model`.
    #[schema(example = "openai/gpt-4o-mini")]
    pub model: String,
    /// Replace the memories with the merged one (default); `false` only shows the result.
    #[serde(default = "yes")]
    pub apply: bool,
}

fn yes() -> bool {
    true
}

/// What the optimization did.
#[derive(Serialize, ToSchema)]
pub struct OptimizeMemoriesView {
    /// The user's memories after: the merged one, or the unchanged ones when there was at most one.
    pub memories: Vec<MemoryView>,
    pub memories_before: u64,
    pub memories_after: u64,
    /// Estimated tokens of the memories' texts (about four characters a token).
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub tokens_saved: u64,
    /// `tokens_saved` as a percentage of `tokens_before`.
    pub reduction_percentage: f64,
    /// Whether the merged memory replaced the old ones.
    pub applied: bool,
}

/// Merges all of a user's memories into one with a model (AgentOS's `summarize` strategy). The model
/// call is metered to the caller like a gateway call.
#[utoipa::path(
    post,
    path = "/optimize-memories",
    tag = "memories",
    request_body = OptimizeMemoriesRequest,
    security(("bearer" = ["memories:write"])),
    responses((status = 200, body = OptimizeMemoriesView))
)]
async fn optimize_memories(
    auth: Auth<scopes::MemoriesWrite>,
    State(memories): State<Arc<MemoryService>>,
    State(gateway): State<Arc<agentd_runtime::GatewayService>>,
    Json(request): Json<OptimizeMemoriesRequest>,
) -> Result<axum::Json<OptimizeMemoriesView>, ApiError> {
    let model = match request.model.contains('/') {
        true => request.model,
        false => request.model.replacen(':', "/", 1),
    };
    let user_id = auth
        .principal
        .acting_user(Some(request.user_id))?
        .unwrap_or_default();
    let report = memories
        .optimize(&auth.principal, &gateway, user_id, &model, request.apply)
        .await?;
    let saved = report.tokens_before.saturating_sub(report.tokens_after);
    let reduction = if report.tokens_before == 0 {
        0.0
    } else {
        (saved as f64 * 1000.0 / report.tokens_before as f64).round() / 10.0
    };
    Ok(axum::Json(OptimizeMemoriesView {
        memories: report.memories.into_iter().map(MemoryView::from).collect(),
        memories_before: report.memories_before,
        memories_after: report.memories_after,
        tokens_before: report.tokens_before,
        tokens_after: report.tokens_after,
        tokens_saved: saved,
        reduction_percentage: reduction,
        applied: report.applied,
    }))
}
