//! Agent health: derived from how long an agent has been silent (no heartbeat, no successful probe)
//! measured in missed heartbeat intervals. A background sweeper re-derives it for every watched agent
//! of every tenant, probing remote agents' health endpoints on the way.

use std::sync::Arc;
use std::time::Duration;

use agentd_core::agent::{Agent, AgentEvent, AgentEventKind, AgentHealth, AgentKind, AgentStatus};
use agentd_core::audit::{AuditRecord, SYSTEM};
use agentd_core::Timestamp;
use agentd_store::{Store, Update};

use crate::config::HealthConfig;
use crate::{AuditService, Error};

/// Agents read per store round trip while sweeping.
const SWEEP_PAGE: u32 = 200;

/// The thresholds health is derived with.
#[derive(Clone, Debug)]
pub struct HealthPolicy {
    pub interval: Duration,
    pub degraded_after: u32,
    pub unhealthy_after: u32,
    pub critical_after: u32,
    pub probe_timeout: Duration,
}

impl From<&HealthConfig> for HealthPolicy {
    fn from(config: &HealthConfig) -> Self {
        Self {
            interval: Duration::from_millis(config.heartbeat_interval_ms),
            degraded_after: config.degraded_after_missed,
            unhealthy_after: config.unhealthy_after_missed,
            critical_after: config.critical_after_missed,
            probe_timeout: Duration::from_millis(config.probe_timeout_ms),
        }
    }
}

/// A health verdict and why.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub health: AgentHealth,
    /// Time since the agent was last heard from (or created, if never).
    pub silence: Option<Duration>,
    /// Whole heartbeat intervals missed.
    pub missed: u32,
    pub reason: String,
}

impl HealthPolicy {
    /// Silence after which each level starts.
    pub fn threshold(&self, missed: u32) -> Duration {
        self.interval * missed
    }

    /// Derives health for `agent` at `now`. Agents that are not watched (local agents that never sent a
    /// heartbeat) are `unknown`.
    pub fn judge(&self, agent: &Agent, now: Timestamp) -> Verdict {
        let watched = agent.spec.kind == AgentKind::Remote || agent.last_heartbeat_at.is_some();
        if !watched {
            return Verdict {
                health: AgentHealth::Unknown,
                silence: None,
                missed: 0,
                reason: "no heartbeat has been received; agentd runs this local agent itself"
                    .to_owned(),
            };
        }
        let since = agent.last_heartbeat_at.unwrap_or(agent.created_at);
        let silence = (now - since).to_std().unwrap_or_default();
        let missed = (silence.as_millis() / self.interval.as_millis().max(1)) as u32;
        let health = if missed >= self.critical_after {
            AgentHealth::Critical
        } else if missed >= self.unhealthy_after {
            AgentHealth::Unhealthy
        } else if missed >= self.degraded_after {
            AgentHealth::Degraded
        } else {
            AgentHealth::Healthy
        };
        let heard = match agent.last_heartbeat_at {
            Some(_) => "last heard from",
            None => "never heard from; created",
        };
        let reason = format!(
            "{heard} {:.1} s ago, {missed} heartbeat interval(s) of {:.1} s missed; degraded after {}, unhealthy after {}, critical after {}",
            silence.as_secs_f64(),
            self.interval.as_secs_f64(),
            self.degraded_after,
            self.unhealthy_after,
            self.critical_after,
        );
        Verdict {
            health,
            silence: Some(silence),
            missed,
            reason,
        }
    }
}

/// Re-derives health for every watched agent, probing remote agents first. The events it makes
/// go to the agent's event log and, with the sweeper as their actor, to the tenant's audit log.
pub struct HealthSweeper {
    store: Arc<dyn Store>,
    audit: Arc<AuditService>,
    policy: HealthPolicy,
    http: reqwest::Client,
}

impl HealthSweeper {
    pub fn new(
        store: Arc<dyn Store>,
        audit: Arc<AuditService>,
        policy: HealthPolicy,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(policy.probe_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("health probe client: {e}")))?;
        Ok(Self {
            store,
            audit,
            policy,
            http,
        })
    }

    /// The URL probed for a remote agent.
    pub fn probe_url(agent: &Agent) -> Option<String> {
        let base = agent.spec.agent_url.as_deref()?;
        let path = agent.spec.health_path.as_deref().unwrap_or("/health");
        Some(format!("{}{path}", base.trim_end_matches('/')))
    }

    /// One pass over every tenant's watched agents. Returns how many agents changed health.
    pub async fn sweep_once(&self) -> Result<usize, Error> {
        let mut changed = 0;
        for tenant in self.store.list_tenant_ids().await? {
            let mut after = None;
            loop {
                let agents = self
                    .store
                    .list_monitored_agents(tenant, after, SWEEP_PAGE)
                    .await?;
                after = agents.last().map(|agent| agent.id);
                for agent in &agents {
                    if self.sweep_agent(agent).await? {
                        changed += 1;
                    }
                }
                if agents.len() < SWEEP_PAGE as usize {
                    break;
                }
            }
        }
        Ok(changed)
    }

    async fn sweep_agent(&self, agent: &Agent) -> Result<bool, Error> {
        let now = agentd_core::now();
        let mut agent = agent.clone();
        let mut heard_at = None;
        if agent.spec.kind == AgentKind::Remote {
            if let Some(url) = Self::probe_url(&agent) {
                let answered = match self.http.get(&url).send().await {
                    Ok(response) => response.status().is_success(),
                    Err(_) => false,
                };
                if answered {
                    heard_at = Some(now);
                    agent.last_heartbeat_at = Some(now);
                }
            }
        }
        let verdict = self.policy.judge(&agent, now);
        if heard_at.is_some() && agent.status == AgentStatus::Initializing {
            if let Some(ready) =
                mark_ready(self.store.as_ref(), &agent, "health probe answered").await?
            {
                self.audit(&ready).await;
            }
        }
        if verdict.health == agent.health && heard_at.is_none() {
            return Ok(false);
        }
        let events = health_events(&agent, verdict.health, &verdict.reason, "system");
        self.store
            .record_agent_health(agent.tenant_id, agent.id, verdict.health, heard_at, &events)
            .await?;
        for event in &events {
            self.audit(event).await;
        }
        if verdict.health != agent.health {
            tracing::info!(agent.id = %agent.id, from = %agent.health, to = %verdict.health, "agent health changed");
        }
        Ok(verdict.health != agent.health)
    }

    async fn audit(&self, event: &AgentEvent) {
        self.audit
            .record(AuditRecord::of_agent_event(event, SYSTEM.to_owned()))
            .await;
    }

    /// Sweeps every `every` until the task is aborted.
    pub async fn run(self, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = self.sweep_once().await {
                tracing::warn!(error = %error, "health sweep failed");
            }
        }
    }
}

/// The `health_changed` event for a change from the agent's current health to `to`, if it changes.
pub(crate) fn health_events(
    agent: &Agent,
    to: AgentHealth,
    reason: &str,
    actor: &str,
) -> Vec<AgentEvent> {
    if agent.health == to {
        return Vec::new();
    }
    vec![
        AgentEvent::new(agent, AgentEventKind::HealthChanged, "health check", actor)
            .with_detail(serde_json::json!({"from": agent.health, "to": to, "reason": reason})),
    ]
}

/// Moves an `initializing` agent to `idle` once it has been heard from; the event, if this call
/// made the move.
pub(crate) async fn mark_ready(
    store: &dyn Store,
    agent: &Agent,
    why: &str,
) -> Result<Option<AgentEvent>, Error> {
    let event = AgentEvent::new(agent, AgentEventKind::StatusChanged, "ready", "system")
        .transition(AgentStatus::Initializing, AgentStatus::Idle)
        .with_detail(serde_json::json!({"reason": why}));
    match store
        .transition_agent(
            agent.tenant_id,
            agent.id,
            AgentStatus::Initializing,
            AgentStatus::Idle,
            std::slice::from_ref(&event),
        )
        .await?
    {
        Update::Applied => Ok(Some(event)),
        Update::Stale(_) => Ok(None),
        Update::Missing => Err(Error::NotFound("agent")),
    }
}
