-- User memories and their topics. A memory's topics are kept twice: as JSON text on the memory, in the
-- order given (what reads return), and as rows of `memory_topics` (what topic filters and the topic
-- list use). Both are written in one transaction; a memory's topic rows go with it.
-- Ids, user ids and topics use the "C" collation, so they order by bytes as on SQLite; so does the
-- text, so LOWER() folds ASCII only in text search, as SQLite's does.
CREATE TABLE memories (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    agent_id    TEXT COLLATE "C",
    team_id     TEXT COLLATE "C",
    memory      TEXT COLLATE "C" NOT NULL,
    topics      TEXT    NOT NULL,
    input       TEXT,
    feedback    TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Lists go by update (AgentOS's default) or creation time, then id; a user's memories and their
-- stats by user.
CREATE INDEX memories_by_update ON memories (tenant_id, updated_at, id);
CREATE INDEX memories_by_creation ON memories (tenant_id, created_at, id);
CREATE INDEX memories_by_user ON memories (tenant_id, user_id, updated_at);

CREATE TABLE memory_topics (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    memory_id  TEXT COLLATE "C" NOT NULL,
    topic      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, memory_id, topic),
    FOREIGN KEY (tenant_id, memory_id) REFERENCES memories (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX memory_topics_by_topic ON memory_topics (tenant_id, topic, memory_id);
