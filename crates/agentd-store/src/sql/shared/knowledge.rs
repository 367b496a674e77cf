// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Knowledge contents, their metadata rows and their chunks. What differs between the backends is the
// keyword search (SQLite FTS5, PostgreSQL `tsvector`): `keyword_query_text` and `keyword_search_sql`
// come from the backend module, and so does `begin_write`, which every transaction here starts with
// (SQLite's full-text triggers need the write lock taken up front).

use agentd_core::knowledge::{
    Chunk, ChunkStrategy, Chunking, Content, ContentKind, ContentSource, ContentStatus,
};
use agentd_core::{ChunkId, ContentId};
use futures::TryStreamExt;

use crate::{
    metadata_value_text, ChunkFilter, ChunkHit, ContentInsert, ContentStart, KnowledgeStore,
    ScoredChunk,
};

const CONTENT_COLUMNS: &str = "tenant_id, id, name, description, metadata, kind, source, origin, \
     size_bytes, content_hash, status, status_message, chunk_count, chunking, embedder, node_id, \
     created_at, updated_at";

/// Chunks written by one statement: 6 parameters each, far below either backend's limit.
const CHUNKS_PER_STATEMENT: usize = 100;
/// Chunk ids named by one statement.
const IDS_PER_STATEMENT: usize = 500;

/// Chunking as stored: `{"strategy": …, "chunk_size": …, "overlap": …}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredChunking {
    strategy: String,
    chunk_size: u32,
    overlap: u32,
}

fn content_from_row(row: &DbRow) -> Result<Content, StoreError> {
    const TABLE: &str = "knowledge_contents";
    let corrupt = |reason: String| StoreError::Corrupt {
        table: TABLE,
        reason,
    };
    let kind: String = row.try_get("kind")?;
    let source: String = row.try_get("source")?;
    let status: String = row.try_get("status")?;
    let chunking: StoredChunking =
        json_column(TABLE, "chunking", &row.try_get::<String, _>("chunking")?)?;
    Ok(Content {
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        metadata: json_column(TABLE, "metadata", &row.try_get::<String, _>("metadata")?)?,
        kind: ContentKind::parse(&kind).ok_or_else(|| corrupt(format!("kind `{kind}`")))?,
        source: ContentSource::from_parts(&source, row.try_get("origin")?)
            .ok_or_else(|| corrupt(format!("source `{source}` without its origin")))?,
        size_bytes: integer_column(TABLE, "size_bytes", row.try_get("size_bytes")?)?,
        content_hash: row.try_get("content_hash")?,
        status: ContentStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("status `{status}`")))?,
        status_message: row.try_get("status_message")?,
        chunk_count: integer_column(TABLE, "chunk_count", row.try_get("chunk_count")?)?,
        chunking: Chunking {
            strategy: ChunkStrategy::parse(&chunking.strategy)
                .ok_or_else(|| corrupt(format!("chunking strategy `{}`", chunking.strategy)))?,
            chunk_size: chunking.chunk_size,
            overlap: chunking.overlap,
        },
        embedder: row.try_get("embedder")?,
        node_id: row.try_get("node_id")?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        updated_at: time_from_millis(TABLE, row.try_get("updated_at")?)?,
    })
}

fn chunk_from_row(row: &DbRow) -> Result<Chunk, StoreError> {
    const TABLE: &str = "knowledge_chunks";
    let embedding: Option<Vec<u8>> = row.try_get("embedding")?;
    Ok(Chunk {
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        content_id: parse_column(
            TABLE,
            "content_id",
            &row.try_get::<String, _>("content_id")?,
        )?,
        seq: integer_column(TABLE, "seq", row.try_get("seq")?)?,
        text: row.try_get("text")?,
        embedding: embedding
            .map(|bytes| embedding_from_bytes(&bytes))
            .transpose()
            .map_err(|reason| StoreError::Corrupt {
                table: TABLE,
                reason,
            })?,
    })
}

/// An embedding as little-endian f32s.
fn embedding_to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn embedding_from_bytes(bytes: &[u8]) -> Result<Vec<f32>, String> {
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "embedding of {} bytes is not a list of f32s",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Cosine similarity of `query` (with its norm) and a stored embedding; `None` when the dimensions
/// differ or the embedding is all zeros.
fn cosine(query: &[f32], query_norm: f32, bytes: &[u8]) -> Option<f64> {
    if bytes.len() != query.len() * 4 || query_norm == 0.0 {
        return None;
    }
    let (mut dot, mut norm) = (0.0f32, 0.0f32);
    for (q, b) in query.iter().zip(bytes.chunks_exact(4)) {
        let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        dot += q * x;
        norm += x * x;
    }
    if norm == 0.0 {
        return None;
    }
    Some(f64::from(dot / (query_norm * norm.sqrt())))
}

/// The conditions `filter` adds on the chunks aliased `c` (after `$1` = tenant and `$2`), and the
/// values they bind, as `$3`, `$4`…
fn chunk_filter_conditions(filter: &ChunkFilter) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (key, value) in &filter.metadata {
        let key_param = values.len() + 3;
        sql.push_str(&format!(
            " AND c.content_id IN (SELECT m.content_id FROM knowledge_metadata m \
             WHERE m.tenant_id = $1 AND m.key = ${key_param} AND m.value = ${})",
            key_param + 1
        ));
        values.push(key.clone());
        values.push(metadata_value_text(value));
    }
    (sql, values)
}

fn scored_from_row(row: &DbRow) -> Result<ScoredChunk, StoreError> {
    Ok(ScoredChunk {
        chunk_id: parse_column("knowledge_chunks", "id", &row.try_get::<String, _>("id")?)?,
        score: row.try_get("score")?,
    })
}

async fn insert_metadata(tx: &mut WriteTx, content: &Content) -> Result<(), StoreError> {
    if content.metadata.is_empty() {
        return Ok(());
    }
    let rows = (0..content.metadata.len())
        .map(|n| format!("($1, $2, ${}, ${})", 2 * n + 3, 2 * n + 4))
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("INSERT INTO knowledge_metadata (tenant_id, content_id, key, value) VALUES {rows}");
    let mut query = sqlx::query(&sql)
        .bind(content.tenant_id.to_string())
        .bind(content.id.to_string());
    for (key, value) in &content.metadata {
        query = query.bind(key.as_str()).bind(metadata_value_text(value));
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn insert_chunks(tx: &mut WriteTx, chunks: &[Chunk]) -> Result<(), StoreError> {
    for batch in chunks.chunks(CHUNKS_PER_STATEMENT) {
        let rows = (0..batch.len())
            .map(|n| {
                let first = n * 6 + 1;
                format!(
                    "(${first}, ${}, ${}, ${}, ${}, ${})",
                    first + 1,
                    first + 2,
                    first + 3,
                    first + 4,
                    first + 5
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO knowledge_chunks (tenant_id, id, content_id, seq, text, embedding) \
             VALUES {rows}"
        );
        let mut query = sqlx::query(&sql);
        for chunk in batch {
            query = query
                .bind(chunk.tenant_id.to_string())
                .bind(chunk.id.to_string())
                .bind(chunk.content_id.to_string())
                .bind(i64::from(chunk.seq))
                .bind(chunk.text.as_str())
                .bind(chunk.embedding.as_deref().map(embedding_to_bytes));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn content_by_hash(
    pool: &sqlx::Pool<Db>,
    tenant: TenantId,
    hash: &str,
) -> Result<Option<Content>, StoreError> {
    let sql = format!(
        "SELECT {CONTENT_COLUMNS} FROM knowledge_contents WHERE tenant_id = $1 AND content_hash = $2"
    );
    let row = sqlx::query(&sql)
        .bind(tenant.to_string())
        .bind(hash)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(content_from_row).transpose()
}

/// The id and embedding of every chunk of tenant `$1` embedded by `$2`; conditions may follow.
const EMBEDDINGS_SQL: &str = "SELECT c.id AS id, c.embedding AS embedding FROM knowledge_chunks c \
     JOIN knowledge_contents k ON k.tenant_id = c.tenant_id AND k.id = c.content_id \
     WHERE c.tenant_id = $1 AND k.embedder = $2 AND c.embedding IS NOT NULL";

/// Bumps the tenant's knowledge version (see [`KnowledgeStore::knowledge_version`]) inside a
/// transaction that changes its chunks.
async fn bump_knowledge_version(tx: &mut WriteTx, tenant: TenantId) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO knowledge_versions (tenant_id, version) VALUES ($1, 1) \
         ON CONFLICT (tenant_id) DO UPDATE SET version = knowledge_versions.version + 1",
    )
    .bind(tenant.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes the content `id` of the tenant (every content of the tenant when `None`) with its chunks
/// (first, so SQLite's keyword index triggers see each row go) and metadata; how many contents went.
async fn delete_contents_where(
    tx: &mut WriteTx,
    tenant: TenantId,
    id: Option<ContentId>,
) -> Result<u64, StoreError> {
    let chosen = match id {
        Some(_) => "tenant_id = $1 AND id = $2",
        None => "tenant_id = $1",
    };
    let of_content = match id {
        Some(_) => "tenant_id = $1 AND content_id = $2",
        None => "tenant_id = $1",
    };
    let statements = [
        format!("DELETE FROM knowledge_chunks WHERE {of_content}"),
        format!("DELETE FROM knowledge_metadata WHERE {of_content}"),
        format!("DELETE FROM knowledge_contents WHERE {chosen}"),
    ];
    let mut deleted = 0;
    for (n, sql) in statements.iter().enumerate() {
        let mut query = sqlx::query(sql).bind(tenant.to_string());
        if let Some(id) = id {
            query = query.bind(id.to_string());
        }
        let affected = query.execute(&mut **tx).await?.rows_affected();
        if n == 2 {
            deleted = affected;
        }
    }
    Ok(deleted)
}

#[async_trait]
impl KnowledgeStore for SqlStore {
    async fn insert_content(&self, content: &Content) -> Result<ContentInsert, StoreError> {
        let stored_chunking = StoredChunking {
            strategy: content.chunking.strategy.as_str().to_owned(),
            chunk_size: content.chunking.chunk_size,
            overlap: content.chunking.overlap,
        };
        let mut tx = begin_write(self).await?;
        // A failed upload of the same bytes makes way for this one (it has no chunks).
        for sql in [
            "DELETE FROM knowledge_metadata WHERE tenant_id = $1 AND content_id IN \
             (SELECT id FROM knowledge_contents WHERE tenant_id = $1 AND content_hash = $2 \
             AND status = 'failed')",
            "DELETE FROM knowledge_contents WHERE tenant_id = $1 AND content_hash = $2 \
             AND status = 'failed'",
        ] {
            sqlx::query(sql)
                .bind(content.tenant_id.to_string())
                .bind(&content.content_hash)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO knowledge_contents (tenant_id, id, name, description, metadata, kind, \
             source, origin, size_bytes, content_hash, status, status_message, chunk_count, \
             chunking, embedder, node_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(content.tenant_id.to_string())
        .bind(content.id.to_string())
        .bind(&content.name)
        .bind(content.description.as_deref())
        .bind(to_json_text(&content.metadata))
        .bind(content.kind.as_str())
        .bind(content.source.as_str())
        .bind(content.source.origin())
        .bind(db_integer(content.size_bytes))
        .bind(&content.content_hash)
        .bind(content.status.as_str())
        .bind(content.status_message.as_deref())
        .bind(db_integer(content.chunk_count))
        .bind(to_json_text(&stored_chunking))
        .bind(content.embedder.as_deref())
        .bind(&content.node_id)
        .bind(content.created_at.timestamp_millis())
        .bind(content.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from);
        match inserted {
            Ok(_) => {}
            Err(StoreError::Conflict(message)) => {
                // Another upload of the same bytes is there (or won a race): that is the content.
                tx.rollback().await?;
                return match content_by_hash(&self.pool, content.tenant_id, &content.content_hash)
                    .await?
                {
                    Some(existing) => Ok(ContentInsert::Duplicate(Box::new(existing))),
                    None => Err(StoreError::Conflict(message)),
                };
            }
            Err(error) => return Err(error),
        }
        insert_metadata(&mut tx, content).await?;
        tx.commit().await?;
        Ok(ContentInsert::Inserted)
    }

    async fn get_content(
        &self,
        tenant: TenantId,
        id: ContentId,
    ) -> Result<Option<Content>, StoreError> {
        let sql = format!(
            "SELECT {CONTENT_COLUMNS} FROM knowledge_contents WHERE tenant_id = $1 AND id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(content_from_row).transpose()
    }

    async fn list_contents(
        &self,
        tenant: TenantId,
        start: ContentStart,
        limit: u32,
    ) -> Result<(Vec<Content>, u64), StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM knowledge_contents WHERE tenant_id = $1")
                .bind(tenant.to_string())
                .fetch_one(&self.pool)
                .await?;
        let total = integer_column("knowledge_contents", "COUNT(*)", total)?;
        let sql = match start {
            ContentStart::Offset(offset) => format!(
                "SELECT {CONTENT_COLUMNS} FROM knowledge_contents WHERE tenant_id = $1 \
                 ORDER BY id DESC LIMIT {limit} OFFSET {}",
                db_integer(offset)
            ),
            ContentStart::After(_) => format!(
                "SELECT {CONTENT_COLUMNS} FROM knowledge_contents WHERE tenant_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT {limit}"
            ),
        };
        let mut query = sqlx::query(&sql).bind(tenant.to_string());
        if let ContentStart::After(id) = start {
            query = query.bind(id.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let contents = rows
            .iter()
            .map(content_from_row)
            .collect::<Result<_, _>>()?;
        Ok((contents, total))
    }

    async fn update_content_details(&self, content: &Content) -> Result<bool, StoreError> {
        let mut tx = begin_write(self).await?;
        let updated = sqlx::query(
            "UPDATE knowledge_contents SET name = $3, description = $4, metadata = $5, \
             updated_at = $6 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(content.tenant_id.to_string())
        .bind(content.id.to_string())
        .bind(&content.name)
        .bind(content.description.as_deref())
        .bind(to_json_text(&content.metadata))
        .bind(content.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM knowledge_metadata WHERE tenant_id = $1 AND content_id = $2")
            .bind(content.tenant_id.to_string())
            .bind(content.id.to_string())
            .execute(&mut *tx)
            .await?;
        insert_metadata(&mut tx, content).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn complete_content(
        &self,
        tenant: TenantId,
        id: ContentId,
        chunks: &[Chunk],
        embedder: Option<&str>,
        message: Option<&str>,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = begin_write(self).await?;
        let updated = sqlx::query(
            "UPDATE knowledge_contents SET status = 'completed', chunk_count = $3, embedder = $4, \
             status_message = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'processing'",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(db_integer(chunks.len() as u64))
        .bind(embedder)
        .bind(message)
        .bind(at.timestamp_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        insert_chunks(&mut tx, chunks).await?;
        bump_knowledge_version(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail_content(
        &self,
        tenant: TenantId,
        id: ContentId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let _lane = write_lane(self).await;
        let updated = sqlx::query(
            "UPDATE knowledge_contents SET status = 'failed', status_message = $3, updated_at = $4 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'processing'",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(reason)
        .bind(at.timestamp_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn delete_content(&self, tenant: TenantId, id: ContentId) -> Result<bool, StoreError> {
        let mut tx = begin_write(self).await?;
        let deleted = delete_contents_where(&mut tx, tenant, Some(id)).await?;
        if deleted > 0 {
            bump_knowledge_version(&mut tx, tenant).await?;
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn delete_all_contents(&self, tenant: TenantId) -> Result<u64, StoreError> {
        let mut tx = begin_write(self).await?;
        let deleted = delete_contents_where(&mut tx, tenant, None).await?;
        if deleted > 0 {
            bump_knowledge_version(&mut tx, tenant).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn fail_interrupted_contents(
        &self,
        node: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let _lane = write_lane(self).await;
        let updated = sqlx::query(
            "UPDATE knowledge_contents SET status = 'failed', status_message = $2, updated_at = $3 \
             WHERE status = 'processing' AND node_id = $1",
        )
        .bind(node)
        .bind(reason)
        .bind(at.timestamp_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated)
    }

    async fn list_chunks(
        &self,
        tenant: TenantId,
        content: ContentId,
    ) -> Result<Vec<Chunk>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, id, content_id, seq, text, embedding FROM knowledge_chunks \
             WHERE tenant_id = $1 AND content_id = $2 ORDER BY seq",
        )
        .bind(tenant.to_string())
        .bind(content.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chunk_from_row).collect()
    }

    async fn keyword_search(
        &self,
        tenant: TenantId,
        words: &[String],
        filter: &ChunkFilter,
        limit: u32,
    ) -> Result<Vec<ScoredChunk>, StoreError> {
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let (conditions, values) = chunk_filter_conditions(filter);
        let sql = keyword_search_sql(&conditions, limit);
        let mut query = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(keyword_query_text(words));
        for value in &values {
            query = query.bind(value.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(scored_from_row).collect()
    }

    async fn nearest_chunks(
        &self,
        tenant: TenantId,
        embedder: &str,
        vector: &[f32],
        filter: &ChunkFilter,
        limit: u32,
    ) -> Result<Vec<ScoredChunk>, StoreError> {
        let limit = limit as usize;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query_norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        let (conditions, values) = chunk_filter_conditions(filter);
        let sql = format!("{EMBEDDINGS_SQL}{conditions}");
        let mut query = sqlx::query(&sql).bind(tenant.to_string()).bind(embedder);
        for value in &values {
            query = query.bind(value.as_str());
        }
        // The best `limit` so far, best first; rows stream by and only these stay in memory.
        let mut best: Vec<(f64, String)> = Vec::with_capacity(limit + 1);
        let mut rows = query.fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            let bytes: Vec<u8> = row.try_get("embedding")?;
            // Unrelated chunks (cosine 0 or below) are no results.
            let Some(score) = cosine(vector, query_norm, &bytes).filter(|score| *score > 0.0)
            else {
                continue;
            };
            if best.len() == limit && best.last().is_some_and(|(worst, _)| score <= *worst) {
                continue;
            }
            let at = best.partition_point(|(better, _)| *better >= score);
            best.insert(at, (score, row.try_get("id")?));
            best.truncate(limit);
        }
        best.into_iter()
            .map(|(score, id)| {
                Ok(ScoredChunk {
                    chunk_id: parse_column("knowledge_chunks", "id", &id)?,
                    score,
                })
            })
            .collect()
    }

    async fn knowledge_version(&self, tenant: TenantId) -> Result<i64, StoreError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM knowledge_versions WHERE tenant_id = $1")
                .bind(tenant.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(version.unwrap_or(0))
    }

    async fn chunk_embeddings(
        &self,
        tenant: TenantId,
        embedder: &str,
    ) -> Result<Vec<(ChunkId, Vec<f32>)>, StoreError> {
        let mut rows = sqlx::query(EMBEDDINGS_SQL)
            .bind(tenant.to_string())
            .bind(embedder)
            .fetch(&self.pool);
        let mut embeddings = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let id: String = row.try_get("id")?;
            let bytes: Vec<u8> = row.try_get("embedding")?;
            let vector = embedding_from_bytes(&bytes).map_err(|reason| StoreError::Corrupt {
                table: "knowledge_chunks",
                reason,
            })?;
            embeddings.push((parse_column("knowledge_chunks", "id", &id)?, vector));
        }
        Ok(embeddings)
    }

    async fn get_chunk_hits(
        &self,
        tenant: TenantId,
        ids: &[ChunkId],
    ) -> Result<Vec<ChunkHit>, StoreError> {
        const TABLE: &str = "knowledge_chunks";
        let mut hits = Vec::with_capacity(ids.len());
        for batch in ids.chunks(IDS_PER_STATEMENT) {
            let list = (2..batch.len() + 2)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT c.id AS id, c.content_id AS content_id, c.seq AS seq, c.text AS text, \
                 k.name AS name, k.metadata AS metadata FROM knowledge_chunks c \
                 JOIN knowledge_contents k ON k.tenant_id = c.tenant_id AND k.id = c.content_id \
                 WHERE c.tenant_id = $1 AND c.id IN ({list})"
            );
            let mut query = sqlx::query(&sql).bind(tenant.to_string());
            for id in batch {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(&self.pool).await? {
                hits.push(ChunkHit {
                    chunk_id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
                    content_id: parse_column(
                        TABLE,
                        "content_id",
                        &row.try_get::<String, _>("content_id")?,
                    )?,
                    seq: integer_column(TABLE, "seq", row.try_get("seq")?)?,
                    text: row.try_get("text")?,
                    content_name: row.try_get("name")?,
                    metadata: json_column(
                        "knowledge_contents",
                        "metadata",
                        &row.try_get::<String, _>("metadata")?,
                    )?,
                });
            }
        }
        Ok(hits)
    }

    async fn knowledge_metadata_keys(&self, tenant: TenantId) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT key FROM knowledge_metadata WHERE tenant_id = $1 ORDER BY key",
        )
        .bind(tenant.to_string())
        .fetch_all(&self.pool)
        .await?)
    }
}
