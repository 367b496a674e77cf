//! The route table: one module per resource, each owning its handlers and returning its routes with
//! their OpenAPI entries.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub mod agent_health;
pub mod agent_history;
pub mod agents;
pub mod audit;
pub mod capabilities;
pub mod chat;
pub mod identity;
pub mod keys;
pub mod knowledge;
pub mod llm;
pub mod login;
pub mod memories;
pub mod openai;
pub mod resources;
pub mod runs;
pub mod sessions;
pub mod system;
pub mod usage;
pub mod users;

/// Every API route, with its documentation.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(system::router())
        .merge(keys::router())
        .merge(identity::router())
        .merge(agents::router())
        .merge(agent_history::router())
        .merge(agent_health::router())
        .merge(capabilities::router())
        .merge(resources::router())
        .merge(runs::router())
        .merge(chat::router())
        .merge(sessions::router())
        .merge(memories::router())
        .merge(knowledge::router())
        .merge(openai::router())
        .merge(llm::router())
        .merge(usage::router())
        .merge(users::router())
        .merge(login::router())
        .merge(audit::router())
}

/// Paging facts of a list that is asked for by page number or by cursor, as AgentOS gives them.
#[derive(Serialize, ToSchema)]
pub struct PageMeta {
    /// The page number; `null` when the list was asked for by cursor.
    pub page: Option<u32>,
    pub limit: u32,
    pub total_pages: u64,
    /// Items matching the filters, on every page.
    pub total_count: u64,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl PageMeta {
    /// The facts of a page of `limit` items out of `total_count`.
    pub fn new(
        page: Option<u32>,
        limit: u32,
        total_count: u64,
        next_cursor: Option<String>,
    ) -> Self {
        Self {
            page,
            limit,
            total_pages: total_count.div_ceil(u64::from(limit.max(1))),
            total_count,
            next_cursor,
        }
    }
}
