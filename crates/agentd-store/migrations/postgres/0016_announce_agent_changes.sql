-- Every change to an agent's row is announced on the channel `agentd_agents` as
-- `<tenant id>/<agent id>`, delivered when the transaction commits, so each node drops the agent from
-- its in-memory cache whichever node made the change. Run totals are not announced: a commit that
-- notifies takes a database-wide lock, and every finished run would take it; nodes re-read a cached
-- agent's totals after a second instead.
CREATE FUNCTION agentd_announce_agent_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentd_agents', OLD.tenant_id || '/' || OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER agents_announce_change AFTER UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION agentd_announce_agent_change();
