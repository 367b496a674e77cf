-- A counter per tenant that every change to its knowledge chunks bumps in the same transaction, so
-- a node holding the tenant's embeddings in memory can tell with one cheap read whether they are
-- still current (its own writes and every other node's alike).
CREATE TABLE knowledge_versions (
    tenant_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
