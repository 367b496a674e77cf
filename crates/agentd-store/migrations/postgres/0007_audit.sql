-- The audit log: one hash chain per tenant (the platform chain, for events that belong to no tenant,
-- has the nil UUID as its tenant id, hence no foreign key to tenants; an audit trail also outlives
-- what it records). `seq` numbers a chain from 1 without gaps; `hash` is the SHA-256 of the entry's
-- canonical encoding and `prev_hash` (see agentd_core::audit). `audit_chains` holds each chain's head,
-- so that deleting the last entries is found, and is what appenders lock and advance.
CREATE TABLE audit_log (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    seq          BIGINT NOT NULL,
    id           TEXT COLLATE "C" NOT NULL UNIQUE,
    actor        TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    target       TEXT   NOT NULL,
    agent_id     TEXT COLLATE "C",
    status       BIGINT NOT NULL,
    outcome      TEXT   NOT NULL,
    client_addr  TEXT,
    request_id   TEXT,
    created_at   BIGINT NOT NULL,
    prev_hash    TEXT   NOT NULL,
    hash         TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_log_by_agent ON audit_log (tenant_id, agent_id, seq);
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, created_at);

CREATE TABLE audit_chains (
    tenant_id  TEXT COLLATE "C" PRIMARY KEY,
    last_seq   BIGINT NOT NULL,
    last_hash  TEXT   NOT NULL
);
