-- Agents: current spec and instance state, every spec version, tags for filtering, and the event log.
-- Every id and tenant_id column uses the "C" collation, so joins between tables can use their indexes.
CREATE TABLE agents (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    tenant_id          TEXT COLLATE "C"   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version            BIGINT  NOT NULL,
    name               TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    health             TEXT    NOT NULL,
    owner              TEXT,
    team_id            TEXT,
    spec               TEXT    NOT NULL,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    last_heartbeat_at  BIGINT 
);
CREATE INDEX agents_by_tenant ON agents (tenant_id, id);
CREATE INDEX agents_by_tenant_status ON agents (tenant_id, status, id);
CREATE INDEX agents_by_tenant_name ON agents (tenant_id, name);

-- Tag filters probe the primary key from each candidate agent (no tag-first index): the plan stays
-- right even before the planner has statistics for a freshly loaded table.
CREATE TABLE agent_tags (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    agent_id   TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, tag)
);

CREATE TABLE agent_versions (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    agent_id    TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    version     BIGINT  NOT NULL,
    spec        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, version)
);

CREATE TABLE agent_events (
    id           TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    agent_id     TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    from_status  TEXT,
    to_status    TEXT,
    actor        TEXT    NOT NULL,
    detail       TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX agent_events_by_agent ON agent_events (tenant_id, agent_id, id);
