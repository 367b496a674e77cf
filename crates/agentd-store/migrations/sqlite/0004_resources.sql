-- Resource limits and usage per agent, as JSON; `version` makes every update compare-and-set.
CREATE TABLE agent_resources (
    tenant_id   TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    limits      TEXT    NOT NULL,
    usage       TEXT    NOT NULL,
    reset_at    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
