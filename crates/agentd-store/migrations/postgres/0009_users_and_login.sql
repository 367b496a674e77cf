-- Users of a tenant, their one-time login tokens (magic links, refresh tokens), OAuth logins in
-- flight, and the server's own signing keys (sealed with the master key).
CREATE TABLE users (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email          TEXT   NOT NULL,
    name           TEXT,
    role           TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    last_login_at  BIGINT,
    UNIQUE (tenant_id, email)
);

CREATE INDEX users_by_tenant ON users (tenant_id, id);

CREATE TABLE auth_tokens (
    hash        TEXT   PRIMARY KEY,
    kind        TEXT   NOT NULL,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE INDEX auth_tokens_by_user ON auth_tokens (user_id);

CREATE TABLE oauth_states (
    hash           TEXT   PRIMARY KEY,
    provider       TEXT   NOT NULL,
    tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    code_verifier  TEXT   NOT NULL,
    redirect_to    TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    purpose         TEXT   PRIMARY KEY,
    kid             TEXT   NOT NULL,
    public_key      TEXT   NOT NULL,
    private_sealed  TEXT   NOT NULL,
    created_at      BIGINT NOT NULL
);
