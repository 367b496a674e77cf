-- Knowledge: contents (uploaded texts, files and pages), their metadata as rows (what search filters
-- compare, without JSON functions) and their chunks. A content's chunks are written in one
-- transaction with its move to `completed`; a content with the same hash that has not failed is
-- the same upload (one per tenant, enforced by the unique index).
-- Ids use the "C" collation, so they order by bytes (time order for UUIDv7) as on SQLite.
CREATE TABLE knowledge_contents (
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              TEXT COLLATE "C" NOT NULL,
    name            TEXT    NOT NULL,
    description     TEXT,
    metadata        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    origin          TEXT,
    size_bytes      BIGINT  NOT NULL,
    content_hash    TEXT COLLATE "C" NOT NULL,
    status          TEXT    NOT NULL,
    status_message  TEXT,
    chunk_count     BIGINT  NOT NULL,
    chunking        TEXT    NOT NULL,
    embedder        TEXT COLLATE "C",
    node_id         TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX knowledge_contents_by_hash ON knowledge_contents (tenant_id, content_hash);
-- A restarting node finds what it left processing.
CREATE INDEX knowledge_contents_by_status ON knowledge_contents (status, node_id);

CREATE TABLE knowledge_metadata (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    content_id  TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    value       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, content_id, key),
    FOREIGN KEY (tenant_id, content_id) REFERENCES knowledge_contents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_metadata_by_value ON knowledge_metadata (tenant_id, key, value, content_id);

-- Keyword search: `tsv` is the chunk's text as an English `tsvector` (stemmed, stop words dropped),
-- kept by PostgreSQL itself, with a GIN index. Vector search reads `embedding` (little-endian f32s);
-- pgvector's HNSW index is for later, where the extension is installed.
CREATE TABLE knowledge_chunks (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    content_id  TEXT COLLATE "C" NOT NULL,
    seq         BIGINT  NOT NULL,
    text        TEXT    NOT NULL,
    embedding   BYTEA,
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, content_id) REFERENCES knowledge_contents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_chunks_by_content ON knowledge_chunks (tenant_id, content_id, seq);
CREATE INDEX knowledge_chunks_fts ON knowledge_chunks USING GIN (tsv);
