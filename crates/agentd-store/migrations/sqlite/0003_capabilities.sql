-- Capabilities of agents (proficiency 0–1, experience count) and endorsements, one per endorser.
CREATE TABLE agent_capabilities (
    tenant_id    TEXT    NOT NULL,
    agent_id     TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    description  TEXT,
    proficiency  REAL    NOT NULL,
    experience   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, name)
);

CREATE TABLE agent_endorsements (
    tenant_id   TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,
    capability  TEXT    NOT NULL,
    endorser    TEXT    NOT NULL,
    comment     TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, capability, endorser),
    FOREIGN KEY (tenant_id, agent_id, capability)
        REFERENCES agent_capabilities (tenant_id, agent_id, name) ON DELETE CASCADE
);
