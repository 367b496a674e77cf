-- Metering: who started each run (the API key), model calls made straight through the OpenAI-compatible
-- gateway, and the plan a tenant is on. `/account/usage` and the monthly token limit add up runs and
-- model calls over a time range, hence the time indexes.
ALTER TABLE tenants ADD COLUMN plan TEXT;
ALTER TABLE runs ADD COLUMN key_id TEXT;
CREATE INDEX runs_by_time ON runs (tenant_id, created_at);

CREATE TABLE model_calls (
    tenant_id          TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                 TEXT    NOT NULL,
    key_id             TEXT,
    model              TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    prompt_tokens      BIGINT  NOT NULL,
    completion_tokens  BIGINT  NOT NULL,
    created_at         BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX model_calls_by_time ON model_calls (tenant_id, created_at);
