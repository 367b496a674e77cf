//! The model gateway: model calls straight through to a provider (OpenAI's `/v1` face and the
//! Ollama-style `/v1/llm/*` routes), metered per key and checked against the tenant's plan. A model is
//! a `provider/model` ref, a route from `[routes]`, or an agent addressed as `agent/<id>`, which the
//! faces run through [`crate::RunService`] instead.

use std::sync::Arc;

use agentd_core::agent::{Agent, AgentStatus};
use agentd_core::run::Usage;
use agentd_core::{AgentId, TenantId, Timestamp};
use agentd_models::{EmbedRequest, Embeddings, ModelEvent, ModelRequest, ModelStream, Providers};
use agentd_store::{AgentFilter, Store};
use futures::StreamExt;

use crate::usage::UsageService;
use crate::{Error, Principal};

/// The prefix that addresses an agent as a model.
pub const AGENT_PREFIX: &str = "agent/";
/// Agents listed as models at most.
const MAX_LISTED_AGENTS: usize = 10_000;

/// What a model name addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A provider's model or a route (the name as given).
    Model(String),
    /// An agent, run with its instructions and tools.
    Agent(AgentId),
}

/// One entry of the model list.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedModel {
    /// `provider/model`, a route name, or `agent/<id>`.
    pub id: String,
    /// The provider's name, `agentd` for routes, the agent's owner (or `agentd`) for agents.
    pub owned_by: String,
    /// When it appeared (agents: their creation; configured models: this node's start).
    pub created: Timestamp,
    /// The agent's name, for agents.
    pub name: Option<String>,
}

/// The gateway service.
pub struct GatewayService {
    store: Arc<dyn Store>,
    providers: Providers,
    usage: Arc<UsageService>,
    started_at: Timestamp,
}

impl GatewayService {
    pub fn new(store: Arc<dyn Store>, providers: Providers, usage: Arc<UsageService>) -> Self {
        Self {
            store,
            providers,
            usage,
            started_at: agentd_core::now(),
        }
    }

    /// The configured models and routes, then the tenant's agents (not terminated) as `agent/<id>`.
    pub async fn models(&self, tenant: TenantId) -> Result<Vec<ListedModel>, Error> {
        let mut models: Vec<ListedModel> = self
            .providers
            .catalog()
            .into_iter()
            .map(|model| ListedModel {
                id: model.id,
                owned_by: model.owned_by,
                created: self.started_at,
                name: None,
            })
            .collect();
        let mut after = None;
        let mut listed = 0;
        while listed < MAX_LISTED_AGENTS {
            let page = self
                .store
                .list_agents(tenant, &AgentFilter::default(), after, 500)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            listed += page.len();
            models.extend(
                page.iter()
                    .filter(|agent| agent.status != AgentStatus::Terminated)
                    .map(listed_agent),
            );
        }
        Ok(models)
    }

    /// What `model` addresses; `UnknownModel` for a name that is neither configured nor one of the
    /// tenant's (not terminated) agents.
    pub async fn target(&self, tenant: TenantId, model: &str) -> Result<Target, Error> {
        if let Some(id) = model.strip_prefix(AGENT_PREFIX) {
            let unknown = || Error::UnknownModel(model.to_owned());
            let id: AgentId = id.parse().map_err(|_| unknown())?;
            let agent = self
                .store
                .get_agent(tenant, id)
                .await?
                .ok_or_else(unknown)?;
            if agent.status == AgentStatus::Terminated {
                return Err(unknown());
            }
            return Ok(Target::Agent(id));
        }
        match self.providers.resolve(model) {
            Ok(_) => Ok(Target::Model(model.to_owned())),
            Err(_) => Err(Error::UnknownModel(model.to_owned())),
        }
    }

    /// Streams a model call for `principal`, after checking the tenant's monthly tokens. The usage the
    /// provider reports is metered when the stream ends (or is dropped) under `endpoint`.
    pub async fn stream(
        &self,
        principal: &Principal,
        model: &str,
        endpoint: &'static str,
        mut request: ModelRequest,
    ) -> Result<ModelStream, Error> {
        self.usage.check_tokens(principal.tenant_id).await?;
        let (provider, name) = self
            .providers
            .resolve(model)
            .map_err(|_| Error::UnknownModel(model.to_owned()))?;
        request.model = name;
        let stream = provider.stream(request).await.map_err(Error::Provider)?;
        let meter = Meter {
            usage: self.usage.clone(),
            principal: principal.clone(),
            model: model.to_owned(),
            endpoint,
            counted: Usage::default(),
            recorded: false,
        };
        Ok(metered(stream, meter))
    }

    /// Embeds `input` with `model` for `principal`, metered under `endpoint`.
    pub async fn embed(
        &self,
        principal: &Principal,
        model: &str,
        endpoint: &'static str,
        input: Vec<String>,
        dimensions: Option<u32>,
    ) -> Result<Embeddings, Error> {
        self.usage.check_tokens(principal.tenant_id).await?;
        let (provider, name) = self
            .providers
            .resolve(model)
            .map_err(|_| Error::UnknownModel(model.to_owned()))?;
        let embeddings = provider
            .embed(EmbedRequest {
                model: name,
                input,
                dimensions,
            })
            .await
            .map_err(Error::Provider)?;
        self.usage
            .record_call(principal, model, endpoint, embeddings.prompt_tokens, 0)
            .await?;
        Ok(embeddings)
    }
}

fn listed_agent(agent: &Agent) -> ListedModel {
    ListedModel {
        id: format!("{AGENT_PREFIX}{}", agent.id),
        owned_by: agent
            .spec
            .owner
            .clone()
            .unwrap_or_else(|| "agentd".to_owned()),
        created: agent.created_at,
        name: Some(agent.spec.name.clone()),
    }
}

/// Counts the usage a stream reports and records it once: when the stream ends, or, if the client
/// went away first, when it is dropped.
struct Meter {
    usage: Arc<UsageService>,
    principal: Principal,
    model: String,
    endpoint: &'static str,
    counted: Usage,
    recorded: bool,
}

impl Meter {
    async fn record(&mut self) {
        self.recorded = true;
        let (prompt, completion) = (self.counted.input_tokens, self.counted.output_tokens);
        if let Err(error) = self
            .usage
            .record_call(
                &self.principal,
                &self.model,
                self.endpoint,
                prompt,
                completion,
            )
            .await
        {
            tracing::error!(%error, model = %self.model, "cannot meter a model call");
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let mut rest = Meter {
            usage: self.usage.clone(),
            principal: self.principal.clone(),
            model: std::mem::take(&mut self.model),
            endpoint: self.endpoint,
            counted: self.counted,
            recorded: true,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { rest.record().await });
        }
    }
}

fn metered(stream: ModelStream, meter: Meter) -> ModelStream {
    futures::stream::unfold(Some((stream, meter)), |state| async move {
        let (mut stream, mut meter) = state?;
        match stream.next().await {
            Some(item) => {
                if let Ok(ModelEvent::Usage(usage)) = &item {
                    meter.counted += *usage;
                }
                Some((item, Some((stream, meter))))
            }
            None => {
                meter.record().await;
                None
            }
        }
    })
    .boxed()
}
