//! The route table: one module per resource, each owning its handlers and returning its routes with
//! their OpenAPI entries.

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
