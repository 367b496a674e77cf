-- The audit log: one hash chain per tenant (the platform chain, for events that belong to no tenant,
-- has the nil UUID as its tenant id, hence no foreign key to tenants; an audit trail also outlives
-- what it records). `seq` numbers a chain from 1 without gaps; `hash` is the SHA-256 of the entry's
-- canonical encoding and `prev_hash` (see agentd_core::audit). `audit_chains` holds each chain's head,
-- so that deleting the last entries is found, and is what appenders lock and advance.
CREATE TABLE audit_log (
    tenant_id    TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL UNIQUE,
    actor        TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    target       TEXT   NOT NULL,
    agent_id     TEXT,
    status       INTEGER NOT NULL,
    outcome      TEXT   NOT NULL,
    client_addr  TEXT,
    request_id   TEXT,
    created_at   INTEGER NOT NULL,
    prev_hash    TEXT   NOT NULL,
    hash         TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_log_by_agent ON audit_log (tenant_id, agent_id, seq);
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, created_at);

CREATE TABLE audit_chains (
    tenant_id  TEXT PRIMARY KEY NOT NULL,
    last_seq   INTEGER NOT NULL,
    last_hash  TEXT   NOT NULL
);
