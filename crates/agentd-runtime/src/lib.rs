//! agentd's services. A [`Runtime`] opens the store named by the [`Config`], runs first-start
//! bootstrap, and holds the services the faces call. Services decide; faces only render.

use std::sync::Arc;

use agentd_core::PlainKey;
use agentd_store::Store;

pub mod access;
pub mod agent_keys;
pub mod audit;
pub mod auth_config;
mod cache;
pub mod capabilities;
pub mod config;
pub mod error;
pub mod gateway;
pub mod health;
pub mod identity;
pub mod knowledge;
pub mod login;
pub mod mail;
pub mod memories;
pub mod page;
pub mod registry;
pub mod resources;
pub mod runs;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod tools;
pub mod usage;
pub mod users;

pub use access::{AccessService, Principal, Subject};
pub use agent_keys::NewAgentKey;
pub use agentd_store::{
    AgentFilter, AgentUsage, AuditFilter, MemoryFilter, MemorySort, RunFilter, RunStats,
    SessionFilter,
};
pub use audit::{AuditService, ChainReport};
pub use capabilities::CapabilityService;
pub use config::Config;
pub use error::Error;
pub use gateway::{GatewayService, ListedModel, Target};
pub use identity::{IdentityService, Signature, Verification, VerifyRequest};
pub use knowledge::KnowledgeService;
pub use memories::MemoryService;
pub use page::{Page, PageRequest};
pub use registry::{RegistryService, SpecPatch};
pub use resources::ResourceService;
pub use runs::{RunEvents, RunHandle, RunInput, RunRequest, RunService};
pub use sessions::SessionService;
pub use usage::{AccountUsage, RateStatus, UsageService, UsageTotals};

/// The running services of one agentd node.
#[derive(Clone)]
pub struct Runtime {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub access: Arc<AccessService>,
    pub registry: Arc<RegistryService>,
    pub capabilities: Arc<CapabilityService>,
    pub resources: Arc<ResourceService>,
    pub runs: Arc<RunService>,
    pub sessions: Arc<SessionService>,
    /// User memories.
    pub memories: Arc<MemoryService>,
    /// The knowledge base: contents, their processing, and search.
    pub knowledge: Arc<KnowledgeService>,
    pub usage: Arc<UsageService>,
    pub gateway: Arc<GatewayService>,
    /// The audit log; call [`AuditService::flush`] before closing the store.
    pub audit: Arc<AuditService>,
    /// Agents' Ed25519 identities: signing and verifying.
    pub identity: Arc<IdentityService>,
    /// Seals secrets at rest (agent private keys, the JWT signing key).
    pub master_key: Arc<secrets::MasterKey>,
    /// Issues and verifies JWTs; publishes the JWKS.
    pub tokens: Arc<tokens::TokenService>,
    /// Magic links, OAuth logins and refreshes.
    pub login: Arc<login::LoginService>,
    /// Users of a tenant, and tenants.
    pub users: Arc<users::UserService>,
    /// When this node started, for `/health` and `/info`.
    pub started_at: agentd_core::Timestamp,
}

/// What starting a runtime produced besides the runtime itself.
pub struct Started {
    pub runtime: Runtime,
    /// The admin key made on the very first start, to be shown once; `None` on every later start.
    pub first_admin_key: Option<PlainKey>,
}

impl Runtime {
    /// Opens the database (creating the data directory for SQLite), migrates it, and on first start
    /// creates the default tenant and its admin key.
    #[tracing::instrument(skip_all, fields(backend))]
    pub async fn start(config: Config) -> Result<Started, Error> {
        let url = config.database_url()?;
        let master_key = Arc::new(secrets::MasterKey::load(
            config.master_key.as_deref(),
            &config.data_dir,
        )?);
        let store = agentd_store::connect(&url).await.map_err(Error::from)?;
        tracing::Span::current().record("backend", store.backend().as_str());
        let tokens =
            Arc::new(tokens::TokenService::load(store.clone(), &master_key, &config.auth).await?);
        let access = Arc::new(AccessService::new(store.clone()).with_tokens(tokens.clone()));
        let mailer = Arc::new(mail::Mailer::from_config(&config.smtp, &config.data_dir)?);
        let public_url = config
            .auth
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen));
        let login = Arc::new(login::LoginService::new(
            store.clone(),
            tokens.clone(),
            mailer,
            config.auth.clone(),
            public_url,
        )?);
        let identity = Arc::new(IdentityService::new(store.clone(), master_key.clone()));
        let first_admin_key = access.bootstrap_default_tenant().await?;
        let policy = health::HealthPolicy::from(&config.health);
        let resources = Arc::new(ResourceService::new(store.clone()));
        let providers = agentd_models::Providers::from_config(&config.providers)
            .and_then(|providers| providers.with_routes(&config.routes))
            .map_err(|e| Error::Config(format!("providers: {e}")))?;
        if let Some(embedder) = &config.knowledge.embedder {
            providers
                .resolve(embedder)
                .map_err(|e| Error::Config(format!("knowledge.embedder: {e}")))?;
        }
        let usage = Arc::new(UsageService::new(
            store.clone(),
            config.plans.clone(),
            config.default_plan.clone(),
        ));
        let gateway = Arc::new(GatewayService::new(
            store.clone(),
            providers.clone(),
            usage.clone(),
        ));
        let knowledge = Arc::new(KnowledgeService::new(
            store.clone(),
            gateway.clone(),
            config.knowledge.clone(),
            config.tools.http_fetch.clone(),
            config.node_id.clone(),
        ));
        knowledge.recover().await?;
        let runs = Arc::new(
            RunService::new(
                store.clone(),
                usage.clone(),
                providers,
                tools::ToolRegistry::builtin(config.tools.http_fetch.clone()),
                Arc::new(tools::mcp::McpPool::new(config.tools.mcp.clone())),
                config.node_id.clone(),
                config.runs.limits(),
            )
            .with_knowledge(knowledge.clone()),
        );
        runs.recover().await?;
        let audit = Arc::new(AuditService::start(store.clone()));
        let runtime = Self {
            runs,
            sessions: Arc::new(SessionService::new(store.clone())),
            memories: Arc::new(MemoryService::new(store.clone())),
            knowledge,
            audit: audit.clone(),
            usage,
            gateway,
            config: Arc::new(config),
            registry: Arc::new(RegistryService::new(
                store.clone(),
                audit,
                policy,
                resources.clone(),
                identity.clone(),
            )),
            identity,
            capabilities: Arc::new(CapabilityService::new(store.clone())),
            users: Arc::new(users::UserService::new(store.clone(), access.clone())),
            resources,
            store,
            access,
            master_key,
            tokens,
            login,
            started_at: agentd_core::now(),
        };
        Ok(Started {
            runtime,
            first_admin_key,
        })
    }
}

/// What a health check found out about the database.
#[derive(Clone, Debug)]
pub struct DatabaseHealth {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Whether the database answered in time.
    pub reachable: bool,
    /// The round trip, when it answered.
    pub latency: Option<std::time::Duration>,
    /// Why it did not, in words safe to show.
    pub problem: Option<String>,
}

impl Runtime {
    /// Pings the database with a timeout.
    pub async fn database_health(&self, timeout: std::time::Duration) -> DatabaseHealth {
        let backend = self.store.backend().as_str();
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(timeout, self.store.ping()).await;
        let problem = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "database health check failed");
                Some("the database did not answer".to_owned())
            }
            Err(_) => Some(format!("the database did not answer within {timeout:?}")),
        };
        DatabaseHealth {
            backend,
            reachable: problem.is_none(),
            latency: problem.is_none().then(|| started.elapsed()),
            problem,
        }
    }

    /// Starts the background jobs of a serving node (the health sweeper) and returns their handles,
    /// so a caller can stop them.
    pub fn start_background_jobs(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, Error> {
        let policy = health::HealthPolicy::from(&self.config.health);
        let sweeper = health::HealthSweeper::new(self.store.clone(), self.audit.clone(), policy)?;
        let every = std::time::Duration::from_millis(self.config.health.sweep_interval_ms);
        Ok(vec![tokio::spawn(sweeper.run(every))])
    }

    /// The database backend's name.
    pub fn backend(&self) -> &'static str {
        self.store.backend().as_str()
    }
}
