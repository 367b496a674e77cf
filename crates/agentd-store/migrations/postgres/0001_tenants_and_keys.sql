-- Tenants own everything; API keys are stored by the SHA-256 of their secret, never the secret.
-- Ids are UUIDv7 text in the "C" collation so that ordering by id is ordering by creation time.
CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    slug        TEXT   NOT NULL UNIQUE,
    name        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT   NOT NULL,
    prefix        TEXT   NOT NULL,
    hash          TEXT   NOT NULL UNIQUE,
    scopes        TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT
);

CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);
