//! The agents this node has read, kept in memory so that `GET /agents/{id}` (the registry's hot read)
//! costs no database round trip: each agent's row and its run totals, by tenant and id.
//!
//! The database stays the truth. Every write this store makes to an agent or its totals drops the
//! entry once the write has committed, and on PostgreSQL a trigger announces every change to an agent
//! (`NOTIFY agentd_agents`, made by any node) to every node's listener, which drops it too. Run totals
//! change with every finished run, too often to announce (see migration 0016): another node's runs
//! show in them once the cached totals are [`STATS_TTL`] old. A read fills the
//! cache only if no entry was dropped while it read (the `epoch`), so a fill can never put back a row
//! that a concurrent write has already replaced. When the listener loses its connection the cache is
//! emptied and left unused until it listens again, since announcements may have been missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use agentd_core::agent::Agent;
use agentd_core::{AgentId, TenantId};

use crate::RunStats;

type Key = (TenantId, AgentId);

/// Agents kept at most (about a kilobyte each); past that the cache empties itself and refills.
pub(crate) const MAX_AGENTS: usize = 250_000;

/// How long cached run totals are trusted (runs finished on other nodes are not announced).
pub(crate) const STATS_TTL: Duration = Duration::from_secs(1);

#[derive(Clone, Default)]
struct Entry {
    agent: Option<Agent>,
    /// The totals and when they were read.
    stats: Option<(RunStats, Instant)>,
}

/// The cache; see the module's documentation.
pub(crate) struct AgentCache {
    entries: RwLock<HashMap<Key, Entry>>,
    /// Counts drops; a fill whose read began at another epoch is discarded.
    epoch: AtomicU64,
    /// Whether entries may be served (false while the change feed is not known to be complete).
    trusted: AtomicBool,
    /// Entries held at most; the cache is emptied when it would grow past this.
    max: usize,
}

impl AgentCache {
    /// A cache holding at most `max` agents, trusted from the start (`trusted`) or only once
    /// [`AgentCache::listening`] says the change feed runs.
    pub(crate) fn new(max: usize, trusted: bool) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            trusted: AtomicBool::new(trusted),
            max,
        }
    }

    /// The epoch to pass to a fill made from a read that starts now.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn agent(&self, tenant: TenantId, id: AgentId) -> Option<Agent> {
        self.read(tenant, id, |entry| entry.agent.clone())
    }

    pub(crate) fn stats(&self, tenant: TenantId, id: AgentId) -> Option<RunStats> {
        self.read(tenant, id, |entry| {
            entry
                .stats
                .filter(|(_, read)| read.elapsed() < STATS_TTL)
                .map(|(stats, _)| stats)
        })
    }

    pub(crate) fn fill_agent(&self, epoch: u64, agent: &Agent) {
        self.fill(epoch, (agent.tenant_id, agent.id), |entry| {
            entry.agent = Some(agent.clone());
        });
    }

    pub(crate) fn fill_stats(&self, epoch: u64, tenant: TenantId, id: AgentId, stats: &RunStats) {
        self.fill(epoch, (tenant, id), |entry| {
            entry.stats = Some((*stats, Instant::now()));
        });
    }

    /// Forgets the agent (after a write to it has committed, or when another node announces one).
    pub(crate) fn drop_agent(&self, tenant: TenantId, id: AgentId) {
        let mut entries = self.write_entries();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.remove(&(tenant, id));
    }

    /// Forgets every agent; with `trusted` false, serves none until [`AgentCache::listening`].
    pub(crate) fn clear(&self, trusted: bool) {
        let mut entries = self.write_entries();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.trusted.store(trusted, Ordering::Release);
        entries.clear();
    }

    /// The change feed runs (again): entries may be kept and served.
    pub(crate) fn listening(&self) {
        self.clear(true);
    }

    fn read<T>(
        &self,
        tenant: TenantId,
        id: AgentId,
        pick: impl Fn(&Entry) -> Option<T>,
    ) -> Option<T> {
        if !self.trusted.load(Ordering::Acquire) {
            return None;
        }
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&(tenant, id)).and_then(pick)
    }

    fn fill(&self, epoch: u64, key: Key, set: impl FnOnce(&mut Entry)) {
        let mut entries = self.write_entries();
        // Checked under the lock that drops take, so no drop can slip between check and insert.
        if !self.trusted.load(Ordering::Acquire) || self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if entries.len() >= self.max && !entries.contains_key(&key) {
            entries.clear();
        }
        set(entries.entry(key).or_default());
    }

    fn write_entries(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Parses a change announcement's payload, `<tenant id>/<agent id>`.
pub(crate) fn parse_change(payload: &str) -> Option<(TenantId, AgentId)> {
    let (tenant, agent) = payload.split_once('/')?;
    Some((tenant.parse().ok()?, agent.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(total: u64) -> RunStats {
        RunStats {
            total,
            ..RunStats::default()
        }
    }

    #[test]
    fn a_fill_that_raced_a_drop_is_discarded() {
        let cache = AgentCache::new(10, true);
        let (tenant, id) = (TenantId::new(), AgentId::new());
        let before = cache.epoch();
        cache.drop_agent(tenant, AgentId::new());
        cache.fill_stats(before, tenant, id, &stats(1));
        assert_eq!(
            cache.stats(tenant, id),
            None,
            "read before a drop, so maybe stale"
        );
        cache.fill_stats(cache.epoch(), tenant, id, &stats(2));
        assert_eq!(cache.stats(tenant, id), Some(stats(2)));
        cache.drop_agent(tenant, id);
        assert_eq!(cache.stats(tenant, id), None);
    }

    #[test]
    fn an_untrusted_cache_serves_and_keeps_nothing() {
        let cache = AgentCache::new(10, false);
        let (tenant, id) = (TenantId::new(), AgentId::new());
        cache.fill_stats(cache.epoch(), tenant, id, &stats(1));
        assert_eq!(cache.stats(tenant, id), None);
        cache.listening();
        cache.fill_stats(cache.epoch(), tenant, id, &stats(1));
        assert_eq!(cache.stats(tenant, id), Some(stats(1)));
        cache.clear(false);
        cache.fill_stats(cache.epoch(), tenant, id, &stats(1));
        assert_eq!(cache.stats(tenant, id), None, "the feed is down");
    }

    #[test]
    fn it_empties_itself_rather_than_grow_past_its_size() {
        let cache = AgentCache::new(2, true);
        let tenant = TenantId::new();
        let ids = [AgentId::new(), AgentId::new(), AgentId::new()];
        for id in ids {
            cache.fill_stats(cache.epoch(), tenant, id, &stats(1));
        }
        assert_eq!(cache.stats(tenant, ids[0]), None);
        assert_eq!(cache.stats(tenant, ids[2]), Some(stats(1)));
    }

    #[test]
    fn announcements_name_a_tenant_and_an_agent() {
        let (tenant, id) = (TenantId::new(), AgentId::new());
        assert_eq!(parse_change(&format!("{tenant}/{id}")), Some((tenant, id)));
        assert_eq!(parse_change("nonsense"), None);
    }
}
