-- Capabilities of agents (proficiency 0–1, experience count) and endorsements, one per endorser.
CREATE TABLE agent_capabilities (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    agent_id     TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    name         TEXT COLLATE "C" NOT NULL,
    description  TEXT,
    proficiency  DOUBLE PRECISION NOT NULL,
    experience   BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, name)
);

CREATE TABLE agent_endorsements (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    agent_id    TEXT COLLATE "C" NOT NULL,
    capability  TEXT COLLATE "C" NOT NULL,
    endorser    TEXT COLLATE "C" NOT NULL,
    comment     TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, capability, endorser),
    FOREIGN KEY (tenant_id, agent_id, capability)
        REFERENCES agent_capabilities (tenant_id, agent_id, name) ON DELETE CASCADE
);
