-- Knowledge: contents (uploaded texts, files and pages), their metadata as rows (what search filters
-- compare, without JSON functions) and their chunks. A content's chunks are written in one
-- transaction with its move to `completed`; a content with the same hash that has not failed is
-- the same upload (one per tenant, enforced by the unique index).
CREATE TABLE knowledge_contents (
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    description     TEXT,
    metadata        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    origin          TEXT,
    size_bytes      INTEGER NOT NULL,
    content_hash    TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    status_message  TEXT,
    chunk_count     INTEGER NOT NULL,
    chunking        TEXT    NOT NULL,
    embedder        TEXT,
    node_id         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX knowledge_contents_by_hash ON knowledge_contents (tenant_id, content_hash);
-- A restarting node finds what it left processing.
CREATE INDEX knowledge_contents_by_status ON knowledge_contents (status, node_id);

CREATE TABLE knowledge_metadata (
    tenant_id   TEXT NOT NULL,
    content_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, content_id, key),
    FOREIGN KEY (tenant_id, content_id) REFERENCES knowledge_contents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_metadata_by_value ON knowledge_metadata (tenant_id, key, value, content_id);

-- `fts_rowid` is SQLite's own: the stable rowid (an INTEGER PRIMARY KEY survives VACUUM) that the
-- full-text index points at.
CREATE TABLE knowledge_chunks (
    fts_rowid   INTEGER PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    content_id  TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    text        TEXT    NOT NULL,
    embedding   BLOB,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, content_id) REFERENCES knowledge_contents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_chunks_by_content ON knowledge_chunks (tenant_id, content_id, seq);

-- Keyword search: an FTS5 index over the chunks' text (external content: the text is not stored
-- twice), English stemming like PostgreSQL's `english` configuration. Triggers keep it in step.
CREATE VIRTUAL TABLE knowledge_chunks_fts USING fts5(
    text,
    content = 'knowledge_chunks',
    content_rowid = 'fts_rowid',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER knowledge_chunks_fts_insert AFTER INSERT ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (rowid, text) VALUES (new.fts_rowid, new.text);
END;
CREATE TRIGGER knowledge_chunks_fts_delete AFTER DELETE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts, rowid, text)
        VALUES ('delete', old.fts_rowid, old.text);
END;
CREATE TRIGGER knowledge_chunks_fts_update AFTER UPDATE OF text ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts, rowid, text)
        VALUES ('delete', old.fts_rowid, old.text);
    INSERT INTO knowledge_chunks_fts (rowid, text) VALUES (new.fts_rowid, new.text);
END;
