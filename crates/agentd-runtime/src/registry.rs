//! The agent registry: creating agents from specs, versioned spec changes with optimistic
//! concurrency, the lifecycle state machine, and each agent's event log.

use std::sync::Arc;

use agentd_core::agent::{
    Agent, AgentEvent, AgentEventKind, AgentHealth, AgentKind, AgentSpec, AgentStatus,
    AgentVersion, LifecycleAction,
};
use agentd_core::audit::AuditRecord;
use agentd_core::{AgentId, EventId, TenantId};
use agentd_store::{AgentFilter, Store, Update};

use crate::health::{health_events, mark_ready, HealthPolicy, HealthSweeper, Verdict};
use crate::identity::IdentityService;
use crate::resources::{Gauges, ResourceService};
use crate::{AuditService, Error, Page, PageRequest, Principal};

/// How often a lost compare-and-set race is retried before answering 409.
const RACE_RETRIES: usize = 3;

/// Changes to an agent's spec; absent fields keep their value.
#[derive(Clone, Debug, Default)]
pub struct SpecPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub instructions: Option<Option<String>>,
    pub model: Option<Option<String>>,
    pub tools: Option<Vec<agentd_core::agent::ToolSpec>>,
    pub mcp_servers: Option<Vec<agentd_core::agent::McpServerSpec>>,
    pub skills: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub agent_url: Option<Option<String>>,
    pub health_path: Option<Option<String>>,
    pub team_id: Option<Option<String>>,
    pub owner: Option<Option<String>>,
    pub memory: Option<agentd_core::agent::MemorySettings>,
    pub knowledge: Option<agentd_core::agent::KnowledgeSettings>,
}

impl SpecPatch {
    fn apply(self, spec: &mut AgentSpec) {
        macro_rules! set {
            ($($field:ident),*) => {
                $(if let Some(value) = self.$field { spec.$field = value; })*
            };
        }
        set!(
            name,
            description,
            instructions,
            model,
            tools,
            mcp_servers,
            skills,
            tags,
            metadata,
            agent_url,
            health_path,
            team_id,
            owner,
            memory,
            knowledge
        );
    }
}

/// One agent of the tenant, or `NotFound`. Every service that acts on an agent starts here.
pub(crate) async fn load_agent(
    store: &dyn Store,
    tenant: TenantId,
    id: AgentId,
) -> Result<Agent, Error> {
    store
        .get_agent(tenant, id)
        .await?
        .ok_or(Error::NotFound("agent"))
}

/// Like [`load_agent`], refusing a terminated agent: its history is read-only.
pub(crate) async fn load_live_agent(
    store: &dyn Store,
    tenant: TenantId,
    id: AgentId,
    action: &str,
) -> Result<Agent, Error> {
    let agent = load_agent(store, tenant, id).await?;
    if agent.status == AgentStatus::Terminated {
        return Err(Error::action_not_allowed(action, agent.status, &[]));
    }
    Ok(agent)
}

/// The registry of agents.
pub struct RegistryService {
    store: Arc<dyn Store>,
    /// Where the events of heartbeats go too (a successful heartbeat has no audit entry of its own).
    audit: Arc<AuditService>,
    health: HealthPolicy,
    resources: Arc<ResourceService>,
    /// Gives each new agent its Ed25519 identity.
    identity: Arc<IdentityService>,
}

/// An agent's health and the reasoning behind it.
pub struct HealthReport {
    pub agent: Agent,
    /// What the thresholds say now (the stored health is refreshed by the sweeper).
    pub verdict: Verdict,
    pub policy: HealthPolicy,
    /// The URL probed for a remote agent.
    pub probe_url: Option<String>,
}

impl RegistryService {
    pub fn new(
        store: Arc<dyn Store>,
        audit: Arc<AuditService>,
        health: HealthPolicy,
        resources: Arc<ResourceService>,
        identity: Arc<IdentityService>,
    ) -> Self {
        Self {
            store,
            audit,
            health,
            resources,
            identity,
        }
    }

    /// Copies `events` to the tenant's audit log, as `principal`'s doing.
    async fn audit_events(&self, principal: &Principal, events: &[AgentEvent]) {
        for event in events {
            let record = AuditRecord::of_agent_event(event, principal.subject.label());
            self.audit.record(record).await;
        }
    }

    /// Records a heartbeat: the agent is `healthy` now, and an `initializing` agent becomes `idle`.
    /// Gauges sent with it update the agent's resource usage.
    #[tracing::instrument(skip_all, fields(tenant.id = %principal.tenant_id, agent.id = %id))]
    pub async fn heartbeat(
        &self,
        principal: &Principal,
        id: AgentId,
        gauges: Option<Gauges>,
    ) -> Result<HealthReport, Error> {
        let agent = self.get(principal.tenant_id, id).await?;
        if matches!(agent.status, AgentStatus::Terminated | AgentStatus::Stopped) {
            let allowed = [
                AgentStatus::Initializing,
                AgentStatus::Idle,
                AgentStatus::Busy,
                AgentStatus::Paused,
                AgentStatus::Error,
            ];
            return Err(Error::action_not_allowed(
                "heartbeat",
                agent.status,
                &allowed,
            ));
        }
        let now = agentd_core::now();
        let events = health_events(
            &agent,
            AgentHealth::Healthy,
            "heartbeat received",
            &principal.actor(),
        );
        match self
            .store
            .record_agent_health(
                principal.tenant_id,
                id,
                AgentHealth::Healthy,
                Some(now),
                &events,
            )
            .await?
        {
            Update::Missing => return Err(Error::NotFound("agent")),
            Update::Applied => self.audit_events(principal, &events).await,
            Update::Stale(_) => {}
        }
        if agent.status == AgentStatus::Initializing {
            let ready = mark_ready(self.store.as_ref(), &agent, "heartbeat received").await?;
            self.audit_events(principal, ready.as_slice()).await;
        }
        if let Some(gauges) = gauges {
            self.resources.report(principal, id, gauges).await?;
        }
        self.health(principal.tenant_id, id).await
    }

    /// An agent's health with the reasoning: silence, missed intervals, thresholds.
    pub async fn health(&self, tenant: TenantId, id: AgentId) -> Result<HealthReport, Error> {
        let agent = self.get(tenant, id).await?;
        let verdict = self.health.judge(&agent, agentd_core::now());
        Ok(HealthReport {
            probe_url: HealthSweeper::probe_url(&agent),
            agent,
            verdict,
            policy: self.health.clone(),
        })
    }

    /// Creates an agent at version 1, with its Ed25519 identity. A local agent is ready at once: it
    /// passes through `initializing` to `idle`. A remote agent stays `initializing` until it is heard
    /// from.
    #[tracing::instrument(skip_all, fields(tenant.id = %principal.tenant_id))]
    pub async fn create(&self, principal: &Principal, mut spec: AgentSpec) -> Result<Agent, Error> {
        spec.validate()
            .map_err(|e| Error::invalid(e.field, e.message))?;
        if spec.owner.is_none() {
            spec.owner = Some(principal.actor());
        }
        let now = agentd_core::now();
        let id = AgentId::new();
        let identity = self.identity.mint(id)?;
        let mut agent = Agent {
            id,
            tenant_id: principal.tenant_id,
            version: 1,
            spec,
            status: AgentStatus::Initializing,
            health: AgentHealth::Unknown,
            created_at: now,
            updated_at: now,
            last_heartbeat_at: None,
            public_key: Some(identity.public_key),
        };
        let actor = principal.actor();
        let mut events = vec![
            AgentEvent::new(&agent, AgentEventKind::Created, "create", &actor)
                .with_detail(serde_json::json!({"version": 1})),
        ];
        if agent.spec.kind == AgentKind::Local {
            events.push(
                AgentEvent::new(&agent, AgentEventKind::StatusChanged, "ready", "system")
                    .transition(AgentStatus::Initializing, AgentStatus::Idle),
            );
            agent.status = AgentStatus::Idle;
        }
        self.store
            .create_agent(&agent, Some(&identity.sealed_private_key), &events)
            .await?;
        tracing::info!(agent.id = %agent.id, "agent created");
        Ok(agent)
    }

    /// One agent of the tenant.
    pub async fn get(&self, tenant: TenantId, id: AgentId) -> Result<Agent, Error> {
        load_agent(self.store.as_ref(), tenant, id).await
    }

    /// The model refs (`provider/model`) of the tenant's agents matching `filter`, each once, sorted.
    pub async fn model_refs(
        &self,
        tenant: TenantId,
        filter: &AgentFilter,
    ) -> Result<Vec<String>, Error> {
        let mut refs = std::collections::BTreeSet::new();
        let mut after = None;
        loop {
            let page = self.store.list_agents(tenant, filter, after, 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            refs.extend(page.into_iter().filter_map(|agent| agent.spec.model));
        }
        Ok(refs.into_iter().collect())
    }

    /// A page of the tenant's agents matching `filter`, oldest first.
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &AgentFilter,
        page: PageRequest<AgentId>,
    ) -> Result<Page<Agent>, Error> {
        let agents = self
            .store
            .list_agents(tenant, filter, page.after, page.limit + 1)
            .await?;
        Ok(Page::from_overfetch(agents, page.limit, |agent| {
            agent.id.to_string()
        }))
    }

    /// Applies `patch` as a new spec version. With `expected_version` (from `If-Match`), a stale
    /// version is refused; without it, the latest version is patched.
    #[tracing::instrument(skip_all, fields(tenant.id = %principal.tenant_id, agent.id = %id))]
    pub async fn update(
        &self,
        principal: &Principal,
        id: AgentId,
        patch: SpecPatch,
        expected_version: Option<u32>,
    ) -> Result<Agent, Error> {
        for _ in 0..RACE_RETRIES {
            let current =
                load_live_agent(self.store.as_ref(), principal.tenant_id, id, "update").await?;
            if let Some(expected) = expected_version {
                if expected != current.version {
                    return Err(Error::PreconditionFailed {
                        current: current.version.to_string(),
                    });
                }
            }
            let mut spec = current.spec.clone();
            patch.clone().apply(&mut spec);
            if spec.kind == AgentKind::Remote && spec.agent_url.is_none() {
                return Err(Error::invalid(
                    "agent_url",
                    "a remote agent needs `agent_url`",
                ));
            }
            spec.validate()
                .map_err(|e| Error::invalid(e.field, e.message))?;
            let updated = Agent {
                version: current.version + 1,
                spec,
                updated_at: agentd_core::now(),
                ..current.clone()
            };
            let event = AgentEvent::new(
                &updated,
                AgentEventKind::ConfigUpdated,
                "update",
                principal.actor(),
            )
            .with_detail(
                serde_json::json!({"from_version": current.version, "to_version": updated.version}),
            );
            match self
                .store
                .update_agent_spec(&updated, current.version, &event)
                .await?
            {
                Update::Applied => return Ok(updated),
                Update::Missing => return Err(Error::NotFound("agent")),
                Update::Stale(now) if expected_version.is_some() => {
                    return Err(Error::PreconditionFailed { current: now })
                }
                Update::Stale(_) => continue,
            }
        }
        Err(Error::Conflict(
            "the agent changed concurrently; retry".to_owned(),
        ))
    }

    /// Every spec version of an agent, oldest first.
    pub async fn versions(
        &self,
        tenant: TenantId,
        id: AgentId,
    ) -> Result<Vec<AgentVersion>, Error> {
        self.get(tenant, id).await?;
        Ok(self.store.list_agent_versions(tenant, id).await?)
    }

    /// A page of an agent's events, oldest first.
    pub async fn events(
        &self,
        tenant: TenantId,
        id: AgentId,
        page: PageRequest<EventId>,
    ) -> Result<Page<AgentEvent>, Error> {
        self.get(tenant, id).await?;
        let events = self
            .store
            .list_agent_events(tenant, id, page.after, page.limit + 1)
            .await?;
        Ok(Page::from_overfetch(events, page.limit, |event| {
            event.id.to_string()
        }))
    }

    /// Runs a lifecycle action. Spawn and restart pass through `initializing`; a local agent then
    /// settles on `idle` by itself.
    #[tracing::instrument(skip_all, fields(tenant.id = %principal.tenant_id, agent.id = %id, action = %action))]
    pub async fn act(
        &self,
        principal: &Principal,
        id: AgentId,
        action: LifecycleAction,
    ) -> Result<Agent, Error> {
        self.move_agent(principal, id, action.as_str(), |current| {
            if action.allowed_from().contains(&current) {
                Ok(action.target())
            } else {
                Err(Error::action_not_allowed(
                    action.as_str(),
                    current,
                    action.allowed_from(),
                ))
            }
        })
        .await
    }

    /// Sets a status directly (`PUT /agents/{id}/status`), as the state machine allows.
    pub async fn set_status(
        &self,
        principal: &Principal,
        id: AgentId,
        target: AgentStatus,
    ) -> Result<Agent, Error> {
        self.move_agent(principal, id, "set status", |current| {
            if current.allowed_targets().contains(&target) {
                Ok(target)
            } else {
                Err(Error::status_not_allowed(target, current))
            }
        })
        .await
    }

    /// Terminates an agent, keeping its history; terminating a terminated agent changes nothing.
    pub async fn terminate(&self, principal: &Principal, id: AgentId) -> Result<Agent, Error> {
        let current = self.get(principal.tenant_id, id).await?;
        if current.status == AgentStatus::Terminated {
            return Ok(current);
        }
        self.act(principal, id, LifecycleAction::Terminate).await
    }

    /// Refuses a run on an agent whose status does not accept runs.
    pub fn ensure_runnable(agent: &Agent) -> Result<(), Error> {
        if agent.status.accepts_runs() {
            Ok(())
        } else {
            Err(Error::action_not_allowed(
                "run",
                agent.status,
                &[
                    AgentStatus::Initializing,
                    AgentStatus::Idle,
                    AgentStatus::Busy,
                ],
            ))
        }
    }

    async fn move_agent(
        &self,
        principal: &Principal,
        id: AgentId,
        action: &str,
        target_of: impl Fn(AgentStatus) -> Result<AgentStatus, Error>,
    ) -> Result<Agent, Error> {
        for _ in 0..RACE_RETRIES {
            let current = self.get(principal.tenant_id, id).await?;
            let target = target_of(current.status)?;
            let actor = principal.actor();
            let mut events =
                vec![
                    AgentEvent::new(&current, AgentEventKind::StatusChanged, action, &actor)
                        .transition(current.status, target),
                ];
            let mut settled = target;
            if target == AgentStatus::Initializing && current.spec.kind == AgentKind::Local {
                events.push(
                    AgentEvent::new(&current, AgentEventKind::StatusChanged, "ready", "system")
                        .transition(AgentStatus::Initializing, AgentStatus::Idle),
                );
                settled = AgentStatus::Idle;
            }
            match self
                .store
                .transition_agent(principal.tenant_id, id, current.status, settled, &events)
                .await?
            {
                Update::Applied => {
                    tracing::info!(from = %current.status, to = %settled, "agent status changed");
                    return self.get(principal.tenant_id, id).await;
                }
                Update::Missing => return Err(Error::NotFound("agent")),
                Update::Stale(_) => continue,
            }
        }
        Err(Error::Conflict(
            "the agent changed concurrently; retry".to_owned(),
        ))
    }
}
