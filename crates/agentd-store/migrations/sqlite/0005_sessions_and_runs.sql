-- Sessions, their runs and each run's event log. A run's metrics are columns (stats add them up);
-- its transcript, tools and limits are JSON text. Sessions, runs and events are deleted together by
-- the store (a session's deletion takes its runs), and an event cannot outlive its run.
CREATE TABLE sessions (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    component_id  TEXT    NOT NULL,
    user_id       TEXT,
    name          TEXT,
    state         TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    summary       TEXT,
    policy        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Session lists go newest first, resuming after a (created_at, id) cursor.
CREATE INDEX sessions_by_creation ON sessions (tenant_id, created_at, id);

CREATE TABLE runs (
    tenant_id            TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   TEXT    NOT NULL,
    agent_id             TEXT    NOT NULL,
    agent_version        INTEGER NOT NULL,
    session_id           TEXT    NOT NULL,
    user_id              TEXT,
    parent_run_id        TEXT,
    status               TEXT    NOT NULL,
    node                 TEXT    NOT NULL,
    last_seq             INTEGER NOT NULL,
    input                TEXT    NOT NULL,
    content              TEXT,
    model                TEXT    NOT NULL,
    error                TEXT,
    iterations           INTEGER NOT NULL,
    input_tokens         INTEGER NOT NULL,
    output_tokens        INTEGER NOT NULL,
    total_tokens         INTEGER NOT NULL,
    time_to_first_token  REAL,
    duration             REAL    NOT NULL,
    messages             TEXT    NOT NULL,
    pending_tools        TEXT    NOT NULL,
    request_tools        TEXT    NOT NULL,
    limits               TEXT    NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX runs_by_session ON runs (tenant_id, session_id, id);
CREATE INDEX runs_by_agent ON runs (tenant_id, agent_id, id);
-- What a restarting node must end: only unfinished runs are indexed.
CREATE INDEX runs_unfinished_by_node ON runs (node, status) WHERE status IN ('pending', 'running');

CREATE TABLE run_events (
    tenant_id   TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, run_id, seq),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);
