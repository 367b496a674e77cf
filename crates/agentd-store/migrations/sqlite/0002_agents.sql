-- Agents: current spec and instance state, every spec version, tags for filtering, and the event log.
CREATE TABLE agents (
    id                 TEXT    PRIMARY KEY NOT NULL,
    tenant_id          TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version            INTEGER NOT NULL,
    name               TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    health             TEXT    NOT NULL,
    owner              TEXT,
    team_id            TEXT,
    spec               TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    last_heartbeat_at  INTEGER
);
CREATE INDEX agents_by_tenant ON agents (tenant_id, id);
CREATE INDEX agents_by_tenant_status ON agents (tenant_id, status, id);
CREATE INDEX agents_by_tenant_name ON agents (tenant_id, name);

-- Tag filters probe the primary key from each candidate agent (no tag-first index): the plan stays
-- right even before the planner has statistics for a freshly loaded table.
CREATE TABLE agent_tags (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, tag)
);

CREATE TABLE agent_versions (
    tenant_id   TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    spec        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, version)
);

CREATE TABLE agent_events (
    id           TEXT    PRIMARY KEY NOT NULL,
    tenant_id    TEXT    NOT NULL,
    agent_id     TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    from_status  TEXT,
    to_status    TEXT,
    actor        TEXT    NOT NULL,
    detail       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX agent_events_by_agent ON agent_events (tenant_id, agent_id, id);
