//! The application state, split so each handler and extractor takes only the part it uses.

use std::sync::Arc;

use agentd_runtime::IdentityService;
use agentd_runtime::{
    AccessService, AuditService, CapabilityService, Config, GatewayService, KnowledgeService,
    MemoryService, RegistryService, ResourceService, RunService, Runtime, SessionService,
    UsageService,
};
use axum::extract::FromRef;

use crate::metrics::Metrics;

/// Everything the faces need, each part reachable on its own through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub runtime: Runtime,
    pub access: Arc<AccessService>,
    pub registry: Arc<RegistryService>,
    pub capabilities: Arc<CapabilityService>,
    pub resources: Arc<ResourceService>,
    pub runs: Arc<RunService>,
    pub sessions: Arc<SessionService>,
    pub memories: Arc<MemoryService>,
    pub knowledge: Arc<KnowledgeService>,
    pub usage: Arc<UsageService>,
    pub gateway: Arc<GatewayService>,
    pub identity: Arc<IdentityService>,
    pub audit: Arc<AuditService>,
    pub users: Arc<agentd_runtime::users::UserService>,
    pub login: Arc<agentd_runtime::login::LoginService>,
    pub tokens: Arc<agentd_runtime::tokens::TokenService>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// The state for a started runtime.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            access: runtime.access.clone(),
            registry: runtime.registry.clone(),
            capabilities: runtime.capabilities.clone(),
            resources: runtime.resources.clone(),
            runs: runtime.runs.clone(),
            sessions: runtime.sessions.clone(),
            memories: runtime.memories.clone(),
            knowledge: runtime.knowledge.clone(),
            usage: runtime.usage.clone(),
            gateway: runtime.gateway.clone(),
            identity: runtime.identity.clone(),
            audit: runtime.audit.clone(),
            users: runtime.users.clone(),
            login: runtime.login.clone(),
            tokens: runtime.tokens.clone(),
            config: runtime.config.clone(),
            metrics: Arc::new(Metrics::default()),
            runtime,
        }
    }
}
