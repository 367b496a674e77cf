//! Runs: starting, following, continuing and cancelling agent runs, and recovering after a restart.
//!
//! [`RunService`] decides (which model, which tools, the session's policy) and hands each execution to
//! a task ([`engine`]). Every face reads a run through [`RunEvents`], which replays stored events and
//! then follows the live ones from the [`hub`], each exactly once and in `seq` order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentd_core::agent::{Agent, ToolSpec};
use agentd_core::run::{
    ChatMessage, Run, RunEvent, RunEventData, RunLimits, RunMetrics, RunStatus, Session, SessionId,
    SessionKind, SessionPolicy, ToolExecution,
};
use agentd_core::{AgentId, RunId, TenantId};
use agentd_models::{Providers, ToolDefinition};
use agentd_store::{RunFilter, Store, Update};
use serde_json::json;

use crate::registry::{load_live_agent, RegistryService};
use crate::tools::mcp::McpPool;
use crate::tools::ToolRegistry;
use crate::{Error, Page, PageRequest, Principal};

mod engine;
mod follow;
mod hub;
mod knowledge;
mod memory;

pub use follow::RunEvents;

use engine::{Execution, Plan, Start, ToolKind};
use hub::{LiveRun, RunHub, SessionTicket};

/// What the caller sends to start a run.
#[derive(Clone, Debug)]
pub enum RunInput {
    /// A new user message; the session's history comes before it (AgentOS).
    Message(String),
    /// A whole conversation the caller keeps itself (Open Agent API, OpenAI); no session history.
    Conversation(Vec<ChatMessage>),
}

/// A request to run an agent.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub input: RunInput,
    /// The session to run in; a new one when absent, created on first use when unknown.
    pub session_id: Option<SessionId>,
    pub user_id: Option<String>,
    /// Extra client-side tools for this run only.
    pub tools: Vec<ToolSpec>,
    /// Limits for this run; unset fields fall back to the agent's, then the server's.
    pub limits: RunLimits,
}

/// A run that was accepted, with a stream of its events from the first.
pub struct RunHandle {
    pub run: Run,
    pub agent: Agent,
    pub events: RunEvents,
}

/// The run service.
pub struct RunService {
    store: Arc<dyn Store>,
    /// Stores the memories automatic memory picks out.
    memories: Arc<crate::memories::MemoryService>,
    /// The knowledge base, searched by runs of agents that use it (see [`Self::with_knowledge`]).
    knowledge: Option<Arc<crate::KnowledgeService>>,
    usage: Arc<crate::UsageService>,
    hub: Arc<RunHub>,
    providers: Providers,
    tools: ToolRegistry,
    mcp: Arc<McpPool>,
    node: String,
    defaults: RunLimits,
}

impl RunService {
    pub fn new(
        store: Arc<dyn Store>,
        usage: Arc<crate::UsageService>,
        providers: Providers,
        tools: ToolRegistry,
        mcp: Arc<McpPool>,
        node: String,
        defaults: RunLimits,
    ) -> Self {
        Self {
            knowledge: None,
            memories: Arc::new(crate::memories::MemoryService::new(store.clone())),
            store,
            usage,
            hub: Arc::new(RunHub::default()),
            providers,
            tools,
            mcp,
            node,
            defaults,
        }
    }

    /// What the run does with its user's memories: `None` without a user or when the agent uses no
    /// memories. Reads the user's memories once, for the context and to tell the model what is known.
    async fn memory_plan(
        &self,
        tenant: TenantId,
        agent: &Agent,
        user_id: Option<&str>,
    ) -> Result<Option<memory::MemoryPlan>, Error> {
        let settings = agent.spec.memory;
        let uses_memory = settings.automatic || settings.add_to_context || settings.agentic;
        let Some(user_id) = user_id.filter(|_| uses_memory) else {
            return Ok(None);
        };
        let known = memory::recall(self.store.as_ref(), tenant, user_id).await?;
        Ok(Some(memory::MemoryPlan {
            service: self.memories.clone(),
            tenant,
            user_id: user_id.to_owned(),
            automatic: settings.automatic,
            known,
        }))
    }

    /// What one execution of `run` needs: the model, the run's tools plus those of memory and
    /// knowledge, and the preamble (instructions, what is known about the user, knowledge for the
    /// context). Made before the run is stored or claimed, so a problem here writes nothing.
    async fn plan(
        &self,
        principal: &Principal,
        agent: &Agent,
        run: &Run,
        (provider, model): (Arc<dyn agentd_models::ModelProvider>, String),
        with_history: bool,
        (mut definitions, mut tools): (Vec<ToolDefinition>, HashMap<String, ToolKind>),
    ) -> Result<Plan, Error> {
        let memory = self
            .memory_plan(principal.tenant_id, agent, run.user_id.as_deref())
            .await?;
        let knowledge = self.knowledge_plan(principal, agent);
        if let Some(plan) = memory.as_ref().filter(|_| agent.spec.memory.agentic) {
            for tool in memory::memory_tools(plan, agent.id) {
                add_server_tool(&mut definitions, &mut tools, tool, "of agentic memory")?;
            }
        }
        if let Some(plan) = knowledge.as_ref().filter(|_| agent.spec.knowledge.search) {
            let tool = Arc::new(knowledge::SearchKnowledge { plan: plan.clone() });
            add_server_tool(&mut definitions, &mut tools, tool, "of knowledge search")?;
        }
        let mut preamble = preamble(agent, memory.as_ref());
        if let Some(plan) = knowledge
            .as_ref()
            .filter(|_| agent.spec.knowledge.add_to_context)
        {
            preamble.extend(plan.context_message(&run.input).await);
        }
        Ok(Plan {
            provider,
            model,
            preamble,
            with_history,
            definitions,
            tools,
            memory,
            knowledge,
        })
    }

    /// The same service, with runs searching `knowledge` for agents that use it.
    pub fn with_knowledge(mut self, knowledge: Arc<crate::KnowledgeService>) -> Self {
        self.knowledge = Some(knowledge);
        self
    }

    /// What the run does with the knowledge base: `None` when the agent does not use it.
    fn knowledge_plan(
        &self,
        principal: &Principal,
        agent: &Agent,
    ) -> Option<knowledge::KnowledgePlan> {
        let settings = agent.spec.knowledge;
        let service = self.knowledge.clone()?;
        (settings.search || settings.add_to_context).then(|| {
            knowledge::KnowledgePlan::new(service, principal.clone(), settings.max_results)
        })
    }

    /// Closes the connections to MCP servers (their child processes end).
    pub async fn shutdown(&self) {
        self.mcp.shutdown().await;
    }

    /// How many runs execute on this node right now.
    pub fn live_runs(&self) -> usize {
        self.hub.live_count()
    }

    /// Accepts a run and starts it on a task of its own (after the session's run in progress, under
    /// the `enqueue` policy). Setup problems (no model, unknown tools, a paused agent, a busy session
    /// under `reject`) are errors here, before anything is written.
    #[tracing::instrument(skip_all, fields(agent.id = %agent_id))]
    pub async fn start(
        &self,
        principal: &Principal,
        agent_id: AgentId,
        mut request: RunRequest,
    ) -> Result<RunHandle, Error> {
        let tenant = principal.tenant_id;
        // A signed-in user runs as themselves: their memories, their sessions' user.
        request.user_id = principal.acting_user(request.user_id)?;
        let agent = load_live_agent(self.store.as_ref(), tenant, agent_id, "run").await?;
        RegistryService::ensure_runnable(&agent)?;
        let model_ref = agent.spec.model.clone().ok_or_else(|| {
            Error::Conflict("the agent has no model: set `model` (provider/model) on it".to_owned())
        })?;
        let (provider, model) = self
            .providers
            .resolve(&model_ref)
            .map_err(|e| Error::Conflict(format!("the agent's model: {e}")))?;
        self.usage.check_tokens(tenant).await?;
        // Last among the checks: it may start (or reach) the agent's MCP servers.
        let run_tools = self.resolve_tools(&agent, &request.tools).await?;
        let session = self
            .open_session(tenant, &agent, request.session_id, request.user_id.clone())
            .await?;
        let policy = match session.policy {
            SessionPolicy::Enqueue => agent.spec.session_policy,
            chosen => chosen,
        };
        let (ticket, busy, current) = self.hub.enter_session(tenant, &session.id);
        if busy {
            match policy {
                SessionPolicy::Reject => {
                    return Err(Error::Conflict(format!(
                        "session `{}` has a run in progress and its policy is `reject`",
                        session.id
                    )))
                }
                SessionPolicy::Interrupt => {
                    if let Some(live) = current.and_then(|run| self.hub.get(run)) {
                        live.cancel.cancel();
                    }
                }
                SessionPolicy::Enqueue => {}
            }
        }
        let (messages, input, history) = match request.input {
            RunInput::Message(text) => (
                vec![ChatMessage::User {
                    content: text.clone(),
                }],
                text,
                true,
            ),
            RunInput::Conversation(messages) => {
                let input = last_user_text(&messages);
                (messages, input, false)
            }
        };
        let now = agentd_core::now();
        let run = Run {
            id: RunId::new(),
            tenant_id: tenant,
            agent_id,
            agent_version: agent.version,
            session_id: session.id.clone(),
            user_id: request.user_id,
            key_id: principal.key_id(),
            parent_run_id: None,
            status: RunStatus::Pending,
            input,
            content: None,
            model: model_ref,
            metrics: RunMetrics::default(),
            error: None,
            messages,
            pending_tools: Vec::new(),
            request_tools: request.tools,
            limits: request.limits.or(agent.spec.run_limits).or(self.defaults),
            iterations: 0,
            last_seq: 0,
            node: self.node.clone(),
            created_at: now,
            updated_at: now,
        };
        let plan = self
            .plan(
                principal,
                &agent,
                &run,
                (provider, model),
                history,
                run_tools,
            )
            .await?;
        let slot = self.usage.acquire_run(principal).await?;
        self.store.insert_run(&run, &[]).await?;
        let live = self.hub.register(run.id, 0);
        self.spawn(ticket, live, run.clone(), plan, Start::Fresh, slot);
        let events = self.follow(tenant, run.id, 0);
        Ok(RunHandle { run, agent, events })
    }

    /// Resumes a paused run with the client's tool results and confirmations.
    #[tracing::instrument(skip_all, fields(run.id = %run_id))]
    pub async fn continue_run(
        &self,
        principal: &Principal,
        agent_id: AgentId,
        run_id: RunId,
        resolved: Vec<ToolExecution>,
    ) -> Result<RunHandle, Error> {
        let tenant = principal.tenant_id;
        let agent = load_live_agent(self.store.as_ref(), tenant, agent_id, "run").await?;
        RegistryService::ensure_runnable(&agent)?;
        let mut run = self.load_run(tenant, agent_id, run_id).await?;
        self.usage.check_tokens(tenant).await?;
        if run.status != RunStatus::Paused {
            return Err(Error::Conflict(format!(
                "cannot continue a run that is {}; only paused runs continue",
                run.status
            )));
        }
        check_resolutions(&run.pending_tools, &resolved)?;
        let (provider, model) = self
            .providers
            .resolve(&run.model)
            .map_err(|e| Error::Conflict(format!("the run's model: {e}")))?;
        let run_tools = self.resolve_tools(&agent, &run.request_tools).await?;
        // A run started from a message sees its session's history; one started from a whole
        // conversation does not.
        let with_history = run.messages.len() <= 1
            || !run
                .messages
                .iter()
                .skip(1)
                .any(|m| matches!(m, ChatMessage::User { .. } | ChatMessage::System { .. }));
        let base_seq = run.last_seq;
        let plan = self
            .plan(
                principal,
                &agent,
                &run,
                (provider, model),
                with_history,
                run_tools,
            )
            .await?;
        let slot = self.usage.acquire_run(principal).await?;
        let continued = self
            .claim(&mut run, RunStatus::Running, RunEventData::RunContinued {})
            .await?;
        let (ticket, _, _) = self.hub.enter_session(tenant, &run.session_id);
        let live = self.hub.register(run.id, base_seq);
        live.publish(Arc::new(continued));
        self.spawn(
            ticket,
            live,
            run.clone(),
            plan,
            Start::Continue(resolved),
            slot,
        );
        let events = self.follow(tenant, run.id, base_seq);
        Ok(RunHandle { run, agent, events })
    }

    /// Cancels a run: a live one stops within moments (model stream and tools included) and ends with
    /// `RunCancelled`; a paused or orphaned one is ended at once. A finished run is left as it is.
    #[tracing::instrument(skip_all, fields(run.id = %run_id))]
    pub async fn cancel(
        &self,
        principal: &Principal,
        agent_id: AgentId,
        run_id: RunId,
    ) -> Result<Run, Error> {
        let tenant = principal.tenant_id;
        let mut run = self.load_run(tenant, agent_id, run_id).await?;
        if let Some(live) = self.hub.get(run_id) {
            let ended = live.ended.notified();
            live.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), ended).await;
        } else if matches!(run.status, RunStatus::Paused | RunStatus::Pending) {
            let cancelled = RunEventData::RunCancelled {
                reason: "cancelled by request".to_owned(),
                content: run.content.clone().unwrap_or_default(),
            };
            match self.claim(&mut run, RunStatus::Cancelled, cancelled).await {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
        }
        self.load_run(tenant, agent_id, run_id).await
    }

    /// Waits until the run ends or pauses, then returns it as stored.
    pub async fn finish(&self, handle: RunHandle) -> Result<Run, Error> {
        let RunHandle {
            run, mut events, ..
        } = handle;
        while events.next().await.is_some() {}
        self.load_run(run.tenant_id, run.agent_id, run.id).await
    }

    /// The paused run that tool results answer: the one named, else the agent's latest paused run in
    /// `session`; `None` when neither is given or the session has none.
    pub async fn paused_run(
        &self,
        tenant: TenantId,
        agent_id: AgentId,
        run_id: Option<RunId>,
        session: Option<&SessionId>,
    ) -> Result<Option<Run>, Error> {
        if let Some(run_id) = run_id {
            return self.load_run(tenant, agent_id, run_id).await.map(Some);
        }
        let Some(session) = session else {
            return Ok(None);
        };
        let filter = RunFilter {
            agent_id: Some(agent_id),
            session_id: Some(session.clone()),
            status: Some(RunStatus::Paused),
        };
        let paused = self
            .store
            .list_runs(tenant, &filter, None, crate::page::MAX_LIMIT)
            .await?;
        Ok(paused.into_iter().last())
    }

    /// One run of the agent.
    pub async fn get(
        &self,
        tenant: TenantId,
        agent_id: AgentId,
        run_id: RunId,
    ) -> Result<Run, Error> {
        self.load_run(tenant, agent_id, run_id).await
    }

    /// A page of runs, oldest first.
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        page: PageRequest<RunId>,
    ) -> Result<Page<Run>, Error> {
        // The runs of an agent the tenant does not have (another tenant's) are a 404, not an
        // empty list. Terminated agents keep their runs listed.
        if let Some(agent_id) = filter.agent_id {
            if self.store.get_agent(tenant, agent_id).await?.is_none() {
                return Err(Error::NotFound("agent"));
            }
        }
        let runs = self
            .store
            .list_runs(tenant, filter, page.after, page.limit + 1)
            .await?;
        Ok(Page::from_overfetch(runs, page.limit, |run| {
            run.id.to_string()
        }))
    }

    /// The run's events after `after_seq`, then the live ones until the run ends or pauses.
    pub async fn events(
        &self,
        tenant: TenantId,
        agent_id: AgentId,
        run_id: RunId,
        after_seq: u64,
    ) -> Result<(Run, RunEvents), Error> {
        let run = self.load_run(tenant, agent_id, run_id).await?;
        Ok((run, self.follow(tenant, run_id, after_seq)))
    }

    /// Ends the runs this node left in flight when it stopped: each gets a `RunError` and status
    /// `error`, so no stream waits for it forever. Paused runs are left paused.
    pub async fn recover(&self) -> Result<usize, Error> {
        let unfinished = self.store.list_unfinished_runs(&self.node).await?;
        let mut ended = 0;
        for (tenant, run_id) in unfinished {
            let Some(mut run) = self.store.get_run(tenant, run_id).await? else {
                continue;
            };
            run.error = Some("the server stopped while the run was in flight".to_owned());
            let failed = RunEventData::RunError {
                content: "the server stopped while the run was in flight".to_owned(),
                error_type: "server_restarted".to_owned(),
            };
            if self.claim(&mut run, RunStatus::Error, failed).await.is_ok() {
                ended += 1;
            }
        }
        if ended > 0 {
            tracing::warn!(
                runs = ended,
                "ended runs left in flight by the previous start"
            );
        }
        Ok(ended)
    }

    /// The agent's name, for event frames.
    pub async fn agent_name(&self, tenant: TenantId, agent_id: AgentId) -> Result<String, Error> {
        let agent = crate::registry::load_agent(self.store.as_ref(), tenant, agent_id).await?;
        Ok(agent.spec.name)
    }

    /// Tokens used by the tenant's finished runs, per agent.
    pub async fn usage(&self, tenant: TenantId) -> Result<Vec<agentd_store::AgentUsage>, Error> {
        Ok(self.store.tenant_usage(tenant).await?)
    }

    /// Figures over the agent's runs.
    pub async fn stats(
        &self,
        tenant: TenantId,
        agent_id: AgentId,
    ) -> Result<agentd_store::RunStats, Error> {
        Ok(self.store.agent_run_stats(tenant, agent_id).await?)
    }

    /// Moves a run that no execution owns to `status` with one event, refusing (with a conflict) if
    /// anyone else wrote to it first.
    async fn claim(
        &self,
        run: &mut Run,
        status: RunStatus,
        data: RunEventData,
    ) -> Result<RunEvent, Error> {
        let expected = run.last_seq;
        run.last_seq += 1;
        run.status = status;
        run.updated_at = agentd_core::now();
        if status.is_terminal() {
            run.pending_tools.clear();
        }
        let event = RunEvent {
            run_id: run.id,
            seq: run.last_seq,
            created_at: run.updated_at,
            data,
        };
        match self
            .store
            .save_run(run, expected, std::slice::from_ref(&event))
            .await
        {
            Ok(Update::Applied) => Ok(event),
            Ok(Update::Stale(current)) => Err(Error::Conflict(format!(
                "the run changed meanwhile (it is {current} now)"
            ))),
            Ok(Update::Missing) => Err(Error::NotFound("run")),
            Err(agentd_store::StoreError::Conflict(_)) => {
                Err(Error::Conflict("the run changed meanwhile".to_owned()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Runs `run` on a task of its own; `slot` (its place under the plan's `concurrent_runs`) is
    /// held until the execution ends or pauses.
    fn spawn(
        &self,
        ticket: SessionTicket,
        live: Arc<LiveRun>,
        run: Run,
        plan: Plan,
        start: Start,
        slot: Option<crate::usage::RunSlot>,
    ) {
        let execution = Execution::new(
            self.store.clone(),
            self.hub.clone(),
            live.clone(),
            run,
            plan,
        );
        let run_id = execution.run.id;
        tokio::spawn(async move {
            let turn = tokio::select! {
                turn = ticket.wait(run_id) => Some(turn),
                _ = live.cancel.cancelled() => None,
            };
            let start = match turn {
                Some(_) => start,
                None => Start::CancelledWhileQueued,
            };
            execution.execute(start).await;
            drop(turn);
            drop(slot);
        });
    }

    async fn load_run(
        &self,
        tenant: TenantId,
        agent_id: AgentId,
        run_id: RunId,
    ) -> Result<Run, Error> {
        match self.store.get_run(tenant, run_id).await? {
            Some(run) if run.agent_id == agent_id => Ok(run),
            _ => Err(Error::NotFound("run")),
        }
    }

    /// The session named by the request (created on first use) or a new one.
    async fn open_session(
        &self,
        tenant: TenantId,
        agent: &Agent,
        id: Option<SessionId>,
        user_id: Option<String>,
    ) -> Result<Session, Error> {
        if let Some(id) = &id {
            if let Some(session) = self.store.get_session(tenant, id).await? {
                if session.component_id != agent.id.to_string() {
                    return Err(Error::Conflict(format!(
                        "session `{id}` belongs to {} `{}`, not to this agent",
                        session.kind, session.component_id
                    )));
                }
                return Ok(session);
            }
        }
        let now = agentd_core::now();
        let session = Session {
            tenant_id: tenant,
            id: id.unwrap_or_default(),
            kind: SessionKind::Agent,
            component_id: agent.id.to_string(),
            user_id,
            name: None,
            state: Default::default(),
            metadata: Default::default(),
            summary: None,
            policy: SessionPolicy::default(),
            created_at: now,
            updated_at: now,
        };
        if self.store.create_session(&session).await? {
            return Ok(session);
        }
        // Created by a concurrent request a moment ago.
        self.store
            .get_session(tenant, &session.id)
            .await?
            .ok_or(Error::NotFound("session"))
    }

    /// The tools a run offers the model: the agent's (server tools by name, client-side ones as
    /// declared), those of its MCP servers (named `<server>__<tool>`) and the request's (client-side).
    async fn resolve_tools(
        &self,
        agent: &Agent,
        request_tools: &[ToolSpec],
    ) -> Result<(Vec<ToolDefinition>, HashMap<String, ToolKind>), Error> {
        let mut definitions = Vec::new();
        let mut kinds = HashMap::new();
        for server in &agent.spec.mcp_servers {
            let tools = self
                .mcp
                .tools(server)
                .await
                .map_err(|message| Error::Conflict(format!("the agent's tools: {message}")))?;
            for tool in tools {
                definitions.push(ToolDefinition {
                    name: tool.name().to_owned(),
                    description: tool.description().to_owned(),
                    parameters: tool.parameters(),
                });
                kinds.insert(
                    tool.name().to_owned(),
                    ToolKind::Server {
                        tool,
                        confirm: false,
                    },
                );
            }
        }
        for (index, spec) in agent.spec.tools.iter().enumerate() {
            if spec.client_side {
                definitions.push(client_definition(spec));
                kinds.insert(spec.name.clone(), ToolKind::Client);
                continue;
            }
            let tool = self.tools.get(&spec.name).ok_or_else(|| {
                Error::Conflict(format!(
                    "the agent's tools[{index}] `{}` is no server tool (built-ins: {}); mark it `client_side` if the caller executes it",
                    spec.name,
                    self.tools.names().join(", ")
                ))
            })?;
            definitions.push(ToolDefinition {
                name: spec.name.clone(),
                description: spec
                    .description
                    .clone()
                    .unwrap_or_else(|| tool.description().to_owned()),
                parameters: spec.parameters.clone().unwrap_or_else(|| tool.parameters()),
            });
            kinds.insert(
                spec.name.clone(),
                ToolKind::Server {
                    tool,
                    confirm: spec.requires_confirmation,
                },
            );
        }
        for spec in request_tools {
            definitions.retain(|d| d.name != spec.name);
            definitions.push(client_definition(spec));
            kinds.insert(spec.name.clone(), ToolKind::Client);
        }
        Ok((definitions, kinds))
    }

    /// Events of the run after `after_seq`, then live ones.
    fn follow(&self, tenant: TenantId, run_id: RunId, after_seq: u64) -> RunEvents {
        RunEvents::new(
            self.store.clone(),
            self.hub.clone(),
            tenant,
            run_id,
            after_seq,
        )
    }
}

fn client_definition(spec: &ToolSpec) -> ToolDefinition {
    ToolDefinition {
        name: spec.name.clone(),
        description: spec
            .description
            .clone()
            .unwrap_or_else(|| spec.name.clone()),
        parameters: spec
            .parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    }
}

/// Adds a tool that agentd provides for the run (memory, knowledge); `source` names where it comes
/// from when one of the agent's own tools has the same name.
fn add_server_tool(
    definitions: &mut Vec<ToolDefinition>,
    tools: &mut HashMap<String, ToolKind>,
    tool: Arc<dyn crate::tools::ServerTool>,
    source: &str,
) -> Result<(), Error> {
    if tools.contains_key(tool.name()) {
        return Err(Error::Conflict(format!(
            "the agent's tool `{}` clashes with the tool {source}",
            tool.name()
        )));
    }
    definitions.push(ToolDefinition {
        name: tool.name().to_owned(),
        description: tool.description().to_owned(),
        parameters: tool.parameters(),
    });
    tools.insert(
        tool.name().to_owned(),
        ToolKind::Server {
            tool,
            confirm: false,
        },
    );
    Ok(())
}

/// The messages before the conversation: the agent's instructions, then what is known about the
/// user when the agent adds memories to its context.
fn preamble(agent: &Agent, memory: Option<&memory::MemoryPlan>) -> Vec<ChatMessage> {
    let instructions = agent
        .spec
        .instructions
        .clone()
        .map(|content| ChatMessage::System { content });
    let settings = agent.spec.memory;
    let known = memory
        .filter(|_| settings.add_to_context || settings.agentic)
        .and_then(|plan| memory::context_message(&plan.known, settings.agentic));
    instructions.into_iter().chain(known).collect()
}

fn last_user_text(messages: &[ChatMessage]) -> String {
    messages
        .iter()
        .rev()
        .find_map(|m| match m {
            ChatMessage::User { content } => Some(content.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Every pending tool must be answered: a result for client-side tools, a decision for
/// confirmations.
fn check_resolutions(pending: &[ToolExecution], resolved: &[ToolExecution]) -> Result<(), Error> {
    for tool in pending {
        let answer = resolved
            .iter()
            .find(|r| r.tool_call_id == tool.tool_call_id);
        let Some(answer) = answer else {
            return Err(Error::invalid(
                "tools",
                format!(
                    "the paused run waits on tool call `{}` ({}); send it back with {}",
                    tool.tool_call_id,
                    tool.tool_name,
                    if tool.external_execution_required {
                        "its `result`"
                    } else {
                        "`confirmed` true or false"
                    }
                ),
            ));
        };
        if tool.external_execution_required && answer.result.is_none() {
            return Err(Error::invalid(
                "tools",
                format!("tool call `{}` needs a `result`", tool.tool_call_id),
            ));
        }
        if tool.requires_confirmation && answer.confirmed.is_none() {
            return Err(Error::invalid(
                "tools",
                format!(
                    "tool call `{}` needs `confirmed` true or false",
                    tool.tool_call_id
                ),
            ));
        }
    }
    Ok(())
}
