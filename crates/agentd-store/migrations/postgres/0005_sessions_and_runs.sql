-- Sessions, their runs and each run's event log. A run's metrics are columns (stats add them up);
-- its transcript, tools and limits are JSON text. Sessions, runs and events are deleted together by
-- the store (a session's deletion takes its runs), and an event cannot outlive its run.
-- Session ids are chosen by clients; like every id they use the "C" collation, so they order by bytes
-- as on SQLite. Names are "C" too, so LOWER() folds ASCII only, as SQLite's does.
CREATE TABLE sessions (
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            TEXT COLLATE "C" NOT NULL,
    kind          TEXT    NOT NULL,
    component_id  TEXT COLLATE "C" NOT NULL,
    user_id       TEXT COLLATE "C",
    name          TEXT COLLATE "C",
    state         TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    summary       TEXT,
    policy        TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Session lists go newest first, resuming after a (created_at, id) cursor.
CREATE INDEX sessions_by_creation ON sessions (tenant_id, created_at, id);

CREATE TABLE runs (
    tenant_id            TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   TEXT COLLATE "C" NOT NULL,
    agent_id             TEXT COLLATE "C" NOT NULL,
    agent_version        BIGINT  NOT NULL,
    session_id           TEXT COLLATE "C" NOT NULL,
    user_id              TEXT COLLATE "C",
    parent_run_id        TEXT COLLATE "C",
    status               TEXT    NOT NULL,
    node                 TEXT    NOT NULL,
    last_seq             BIGINT  NOT NULL,
    input                TEXT    NOT NULL,
    content              TEXT,
    model                TEXT    NOT NULL,
    error                TEXT,
    iterations           BIGINT  NOT NULL,
    input_tokens         BIGINT  NOT NULL,
    output_tokens        BIGINT  NOT NULL,
    total_tokens         BIGINT  NOT NULL,
    time_to_first_token  DOUBLE PRECISION,
    duration             DOUBLE PRECISION NOT NULL,
    messages             TEXT    NOT NULL,
    pending_tools        TEXT    NOT NULL,
    request_tools        TEXT    NOT NULL,
    limits               TEXT    NOT NULL,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX runs_by_session ON runs (tenant_id, session_id, id);
CREATE INDEX runs_by_agent ON runs (tenant_id, agent_id, id);
-- What a restarting node must end: only unfinished runs are indexed.
CREATE INDEX runs_unfinished_by_node ON runs (node, status) WHERE status IN ('pending', 'running');

CREATE TABLE run_events (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    run_id      TEXT COLLATE "C" NOT NULL,
    seq         BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, run_id, seq),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);
