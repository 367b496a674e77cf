//! Agents' resources: limits (cpu, memory, storage, network, API quota), the usage agents report or
//! consume, and enforcement. Consuming past the API quota is `QuotaExceeded` (429, until a reset);
//! past a hard limit such as storage it is `LimitExceeded` (403). Both name the limit.

use std::sync::Arc;

use agentd_core::agent::{
    Agent, AgentEvent, AgentEventKind, AgentResources, ResourceLimits, ResourceUsage,
};
use agentd_core::{AgentId, TenantId};
use agentd_store::{Store, Update};

use crate::registry::{load_agent, load_live_agent};
use crate::{Error, Principal};

/// Lost compare-and-set races are retried this often.
const RACE_RETRIES: usize = 5;

/// Changes to limits: absent keeps, `Some(None)` removes the limit.
#[derive(Clone, Debug, Default)]
pub struct LimitsPatch {
    pub cpu_millicores: Option<Option<u64>>,
    pub memory_mb: Option<Option<u64>>,
    pub storage_mb: Option<Option<u64>>,
    pub network_mbps: Option<Option<u64>>,
    pub api_quota: Option<Option<u64>>,
}

/// Gauges an agent reports with a heartbeat; absent ones keep their value.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub cpu_millicores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub storage_mb: Option<u64>,
    pub network_mbps: Option<u64>,
}

/// Consumption to charge against the limits.
#[derive(Clone, Debug, Default)]
pub struct Consumption {
    pub api_calls: u64,
    pub storage_mb: u64,
}

/// Resource limits, usage and enforcement.
pub struct ResourceService {
    store: Arc<dyn Store>,
}

impl ResourceService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The agent's resources (unlimited and unused until set).
    pub async fn get(&self, tenant: TenantId, agent: AgentId) -> Result<AgentResources, Error> {
        let owner = load_agent(self.store.as_ref(), tenant, agent).await?;
        self.load(&owner).await
    }

    async fn load(&self, agent: &Agent) -> Result<AgentResources, Error> {
        let stored = self.store.get_resources(agent.tenant_id, agent.id).await?;
        Ok(stored.unwrap_or_else(|| AgentResources {
            tenant_id: agent.tenant_id,
            agent_id: agent.id,
            limits: ResourceLimits::default(),
            usage: ResourceUsage::default(),
            reset_at: agent.created_at,
            updated_at: agent.created_at,
            version: 0,
        }))
    }

    /// Applies `change` to the agent's resources with compare-and-set, retrying lost races.
    async fn modify(
        &self,
        tenant: TenantId,
        agent: AgentId,
        action: &str,
        actor: &str,
        change: impl Fn(&mut AgentResources) -> Result<Option<serde_json::Value>, Error>,
    ) -> Result<AgentResources, Error> {
        let owner = load_live_agent(self.store.as_ref(), tenant, agent, action).await?;
        for _ in 0..RACE_RETRIES {
            let current = self.load(&owner).await?;
            let mut next = current.clone();
            let detail = change(&mut next)?;
            next.version = current.version + 1;
            next.updated_at = agentd_core::now();
            let events: Vec<AgentEvent> = detail
                .map(|detail| {
                    AgentEvent::new(&owner, AgentEventKind::ResourcesChanged, action, actor)
                        .with_detail(detail)
                })
                .into_iter()
                .collect();
            match self
                .store
                .save_resources(&next, current.version, &events)
                .await?
            {
                Update::Applied => return Ok(next),
                Update::Stale(_) => continue,
                Update::Missing => return Err(Error::NotFound("agent")),
            }
        }
        Err(Error::Conflict(
            "the agent's resources changed concurrently; retry".to_owned(),
        ))
    }

    /// Changes the agent's limits.
    pub async fn set_limits(
        &self,
        principal: &Principal,
        agent: AgentId,
        patch: LimitsPatch,
    ) -> Result<AgentResources, Error> {
        let actor = principal.actor();
        self.modify(principal.tenant_id, agent, "set resource limits", &actor, |resources| {
            let limits = &mut resources.limits;
            macro_rules! apply {
                ($($field:ident),*) => { $(if let Some(value) = patch.$field { limits.$field = value; })* };
            }
            apply!(cpu_millicores, memory_mb, storage_mb, network_mbps, api_quota);
            Ok(Some(serde_json::json!({"limits": limits})))
        })
        .await
    }

    /// Records the gauges an agent reported (with a heartbeat).
    pub async fn report(
        &self,
        principal: &Principal,
        agent: AgentId,
        gauges: Gauges,
    ) -> Result<AgentResources, Error> {
        let actor = principal.actor();
        self.modify(principal.tenant_id, agent, "report usage", &actor, |resources| {
            let usage = &mut resources.usage;
            macro_rules! apply {
                ($($field:ident),*) => { $(if let Some(value) = gauges.$field { usage.$field = value; })* };
            }
            apply!(cpu_millicores, memory_mb, storage_mb, network_mbps);
            Ok(None)
        })
        .await
    }

    /// Charges consumption against the limits, refusing (and charging nothing) past a limit.
    pub async fn consume(
        &self,
        principal: &Principal,
        agent: AgentId,
        consumption: Consumption,
    ) -> Result<AgentResources, Error> {
        let actor = principal.actor();
        self.modify(principal.tenant_id, agent, "consume", &actor, |resources| {
            let usage = &mut resources.usage;
            let limits = &resources.limits;
            let api_calls = usage.api_calls.saturating_add(consumption.api_calls);
            if let Some(limit) = limits.api_quota {
                if consumption.api_calls > 0 && api_calls > limit {
                    return Err(Error::QuotaExceeded {
                        resource: "api_quota",
                        used: usage.api_calls,
                        limit,
                    });
                }
            }
            let storage = usage.storage_mb.saturating_add(consumption.storage_mb);
            if let Some(limit) = limits.storage_mb {
                if consumption.storage_mb > 0 && storage > limit {
                    return Err(Error::LimitExceeded {
                        resource: "storage_mb",
                        wanted: storage,
                        limit,
                    });
                }
            }
            usage.api_calls = api_calls;
            usage.storage_mb = storage;
            Ok(None)
        })
        .await
    }

    /// Zeroes the usage counters and starts a new quota period.
    pub async fn reset(
        &self,
        principal: &Principal,
        agent: AgentId,
    ) -> Result<AgentResources, Error> {
        let actor = principal.actor();
        self.modify(
            principal.tenant_id,
            agent,
            "reset usage",
            &actor,
            |resources| {
                let before = resources.usage.clone();
                resources.usage = ResourceUsage::default();
                resources.reset_at = agentd_core::now();
                Ok(Some(serde_json::json!({"usage_before": before})))
            },
        )
        .await
    }
}
