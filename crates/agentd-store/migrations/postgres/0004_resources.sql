-- Resource limits and usage per agent, as JSON; `version` makes every update compare-and-set.
CREATE TABLE agent_resources (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    agent_id    TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    limits      TEXT    NOT NULL,
    usage       TEXT    NOT NULL,
    reset_at    BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    version     BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
