-- Each agent's finished runs, counted once as each finishes, so an agent's performance figures are
-- one row to read rather than a sum over all its runs. Runs deleted later (with their session) stay
-- counted: the figures are the agent's history.
CREATE TABLE agent_run_totals (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id      TEXT    NOT NULL,
    completed     INTEGER NOT NULL DEFAULT 0,
    errored       INTEGER NOT NULL DEFAULT 0,
    cancelled     INTEGER NOT NULL DEFAULT 0,
    duration      REAL NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, agent_id)
);

INSERT INTO agent_run_totals (tenant_id, agent_id, completed, errored, cancelled, duration, input_tokens, output_tokens)
SELECT tenant_id, agent_id,
       SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END),
       SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END),
       SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END),
       SUM(duration),
       SUM(input_tokens),
       SUM(output_tokens)
FROM runs
WHERE status IN ('completed', 'error', 'cancelled')
GROUP BY tenant_id, agent_id;
