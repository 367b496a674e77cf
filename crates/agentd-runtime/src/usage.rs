//! Plans, rate limits and metering. A tenant is on a plan (`[plans.<name>]` in the config; the
//! default plan unless it was put on another); the plan limits requests per minute per API key and
//! model tokens per calendar month per tenant. Usage is metered from two sources: runs (their own
//! rows, with the key that started them) and the gateway's direct model calls ([`ModelCall`]s).
//!
//! Rate windows live in this node's memory: behind a load balancer each node counts its own
//! requests, so a key may get up to `nodes × limit` per minute.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentd_core::{AgentId, EventId, KeyId, TenantId, Timestamp};
use agentd_store::{ModelCall, Store, UsageRow};
use chrono::{Datelike, TimeZone, Utc};

use crate::cache::TtlCache;
use crate::config::PlanConfig;
use crate::{Error, Principal, Subject};

/// How long a tenant's plan is trusted from memory.
const PLAN_CACHE_TTL: Duration = Duration::from_secs(5);
/// The rate window.
const WINDOW: Duration = Duration::from_secs(60);
/// Rate windows held at most; expired ones are dropped when the map would grow past this.
const MAX_WINDOWS: usize = 100_000;

/// Where a principal stands in its rate window, for `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window starts over.
    pub reset_secs: u64,
}

/// Prompt and completion tokens of some requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl UsageTotals {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    fn add(&mut self, row: &UsageRow) {
        self.requests += row.requests;
        self.prompt_tokens += row.prompt_tokens;
        self.completion_tokens += row.completion_tokens;
    }
}

/// A tenant's usage over a period, added up per key, agent and model.
#[derive(Clone, Debug)]
pub struct AccountUsage {
    pub plan: String,
    pub limits: PlanConfig,
    pub from: Timestamp,
    pub to: Timestamp,
    pub totals: UsageTotals,
    /// `None`: runs started before keys were recorded.
    pub by_key: Vec<(Option<KeyId>, UsageTotals)>,
    pub by_agent: Vec<(AgentId, UsageTotals)>,
    pub by_model: Vec<(String, UsageTotals)>,
}

struct Window {
    started: Instant,
    count: u32,
}

/// Plans, rate limits and metering.
pub struct UsageService {
    store: Arc<dyn Store>,
    plans: BTreeMap<String, PlanConfig>,
    default_plan: String,
    /// Whether any plan limits anything; when none does, no check reads anything.
    limited: bool,
    tenant_plans: TtlCache<TenantId, Option<String>>,
    windows: Mutex<HashMap<Subject, Window>>,
    /// Runs executing per principal, for the plans' `concurrent_runs`.
    running: Arc<Mutex<HashMap<Subject, u32>>>,
}

/// One run counted against its principal's `concurrent_runs`; dropping it (when the run ends or
/// pauses) frees the place.
pub struct RunSlot {
    running: Arc<Mutex<HashMap<Subject, u32>>>,
    subject: Subject,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = running.get_mut(&self.subject) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.subject);
            }
        }
    }
}

impl UsageService {
    pub fn new(
        store: Arc<dyn Store>,
        plans: BTreeMap<String, PlanConfig>,
        default_plan: String,
    ) -> Self {
        let limited = plans.values().any(|plan| {
            plan.requests_per_minute.is_some()
                || plan.monthly_tokens.is_some()
                || plan.concurrent_runs.is_some()
        });
        Self {
            store,
            plans,
            default_plan,
            limited,
            tenant_plans: TtlCache::new(PLAN_CACHE_TTL, MAX_WINDOWS),
            windows: Mutex::new(HashMap::new()),
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes a place for one more executing run of `principal`, or refuses with `TooManyRuns` when
    /// the plan's `concurrent_runs` are all taken. `None` when the plan sets no such limit.
    pub async fn acquire_run(&self, principal: &Principal) -> Result<Option<RunSlot>, Error> {
        if !self.limited {
            return Ok(None);
        }
        let (_, limits) = self.plan(principal.tenant_id).await?;
        let Some(limit) = limits.concurrent_runs else {
            return Ok(None);
        };
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let count = running.entry(principal.subject.clone()).or_insert(0);
        if *count >= limit {
            return Err(Error::TooManyRuns { limit });
        }
        *count += 1;
        Ok(Some(RunSlot {
            running: self.running.clone(),
            subject: principal.subject.clone(),
        }))
    }

    /// The tenant's plan name and limits (a plan the config does not list has none).
    pub async fn plan(&self, tenant: TenantId) -> Result<(String, PlanConfig), Error> {
        let chosen = match self.tenant_plans.get(&tenant) {
            Some(plan) => plan,
            None => {
                let plan = self
                    .store
                    .get_tenant(tenant)
                    .await?
                    .and_then(|tenant| tenant.plan);
                self.tenant_plans.insert(tenant, plan.clone());
                plan
            }
        };
        let name = chosen.unwrap_or_else(|| self.default_plan.clone());
        let limits = self.plans.get(&name).cloned().unwrap_or_default();
        Ok((name, limits))
    }

    /// Puts a tenant on a plan (`None`: the default plan). The plan must be configured.
    pub async fn set_plan(&self, tenant: TenantId, plan: Option<&str>) -> Result<(), Error> {
        if let Some(name) = plan {
            if !self.plans.contains_key(name) {
                let known = self.plans.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(Error::invalid(
                    "plan",
                    format!("no plan `{name}` is configured (configured: {known})"),
                ));
            }
        }
        if !self.store.set_tenant_plan(tenant, plan).await? {
            return Err(Error::NotFound("tenant"));
        }
        self.tenant_plans.remove(&tenant);
        Ok(())
    }

    /// Counts one request of `principal` against its plan's rate; `RateLimited` when the window is
    /// full. `None` when the plan has no rate limit.
    pub async fn admit(&self, principal: &Principal) -> Result<Option<RateStatus>, Error> {
        if !self.limited {
            return Ok(None);
        }
        let (_, limits) = self.plan(principal.tenant_id).await?;
        let Some(limit) = limits.requests_per_minute else {
            return Ok(None);
        };
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= MAX_WINDOWS {
            windows.retain(|_, window| now.duration_since(window.started) < WINDOW);
        }
        let window = windows.entry(principal.subject.clone()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        let left = WINDOW.saturating_sub(now.duration_since(window.started));
        // Whole seconds, rounded up: a client that waits `Retry-After` finds the new window.
        let reset_secs = left.as_millis().div_ceil(1000) as u64;
        if window.count >= limit {
            return Err(Error::RateLimited {
                limit,
                retry_after_secs: reset_secs.max(1),
            });
        }
        window.count += 1;
        Ok(Some(RateStatus {
            limit,
            remaining: limit - window.count,
            reset_secs,
        }))
    }

    /// Refuses (with `PlanLimit`) when the tenant has used its plan's monthly tokens.
    pub async fn check_tokens(&self, tenant: TenantId) -> Result<(), Error> {
        if !self.limited {
            return Ok(());
        }
        let (_, limits) = self.plan(tenant).await?;
        let Some(allowed) = limits.monthly_tokens else {
            return Ok(());
        };
        let (month, next) = month_of(agentd_core::now());
        let used = self.store.tokens_since(tenant, month).await?;
        if used >= allowed {
            return Err(Error::PlanLimit {
                limit: "monthly_tokens",
                used,
                allowed,
                renews_at: next.to_rfc3339(),
            });
        }
        Ok(())
    }

    /// Meters a gateway model call.
    pub async fn record_call(
        &self,
        principal: &Principal,
        model: &str,
        endpoint: &str,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Result<(), Error> {
        let call = ModelCall {
            id: EventId::new(),
            tenant_id: principal.tenant_id,
            key_id: principal.key_id(),
            model: model.to_owned(),
            endpoint: endpoint.to_owned(),
            prompt_tokens,
            completion_tokens,
            created_at: agentd_core::now(),
        };
        self.store.insert_model_call(&call).await?;
        Ok(())
    }

    /// The tenant's usage in `[from, to)`; both default to the current calendar month (UTC).
    pub async fn account(
        &self,
        tenant: TenantId,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<AccountUsage, Error> {
        let (month, next) = month_of(agentd_core::now());
        let (from, to) = (from.unwrap_or(month), to.unwrap_or(next));
        if from >= to {
            return Err(Error::invalid("start", "must be before `end`"));
        }
        let rows = self.store.usage_rows(tenant, from, to).await?;
        let (plan, limits) = self.plan(tenant).await?;
        let mut totals = UsageTotals::default();
        let mut by_key: BTreeMap<Option<KeyId>, UsageTotals> = BTreeMap::new();
        let mut by_agent: BTreeMap<AgentId, UsageTotals> = BTreeMap::new();
        let mut by_model: BTreeMap<String, UsageTotals> = BTreeMap::new();
        for row in &rows {
            totals.add(row);
            by_key.entry(row.key_id).or_default().add(row);
            if let Some(agent) = row.agent_id {
                by_agent.entry(agent).or_default().add(row);
            }
            by_model.entry(row.model.clone()).or_default().add(row);
        }
        Ok(AccountUsage {
            plan,
            limits,
            from,
            to,
            totals,
            by_key: by_key.into_iter().collect(),
            by_agent: by_agent.into_iter().collect(),
            by_model: by_model.into_iter().collect(),
        })
    }
}

/// The start of `at`'s calendar month (UTC) and of the next one.
fn month_of(at: Timestamp) -> (Timestamp, Timestamp) {
    let start = |year: i32, month: u32| {
        Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
            .single()
            .expect("the first of a month exists")
    };
    let (year, month) = (at.year(), at.month());
    let next = if month == 12 {
        start(year + 1, 1)
    } else {
        start(year, month + 1)
    };
    (start(year, month), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_on_the_first_and_roll_over_the_year() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let (start, next) = month_of(at);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(next, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    }
}
