-- The agent's idle/busy follows whether it has a pending or running run; each run write asks.
CREATE INDEX runs_active_by_agent ON runs (tenant_id, agent_id) WHERE status IN ('pending', 'running');
