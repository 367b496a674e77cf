-- Every change to an agent or to its run totals is announced on the channel `agentd_agents` as
-- `<tenant id>/<agent id>`, delivered when the transaction commits, so each node drops the agent from
-- its in-memory cache whichever node made the change.
CREATE FUNCTION agentd_announce_agent_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentd_agents', OLD.tenant_id || '/' || OLD.id);
    RETURN NULL;
END
$$;

CREATE FUNCTION agentd_announce_agent_totals_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentd_agents', NEW.tenant_id || '/' || NEW.agent_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER agents_announce_change AFTER UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION agentd_announce_agent_change();

CREATE TRIGGER agent_run_totals_announce_change AFTER INSERT OR UPDATE ON agent_run_totals
    FOR EACH ROW EXECUTE FUNCTION agentd_announce_agent_totals_change();
