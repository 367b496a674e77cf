// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// User memories. A memory's topics are JSON text on its row (what reads return, in the order given)
// and rows of `memory_topics` (what topic filters and the topic list use), written together.

use agentd_core::memory::Memory;
use agentd_core::MemoryId;

use crate::{MemoryFilter, MemorySort, MemorySortField, MemoryStart, MemoryStore, UserMemoryStats};

const MEMORY_COLUMNS: &str = "tenant_id, id, user_id, agent_id, team_id, memory, topics, input, \
     feedback, created_at, updated_at";

/// How many memory ids one statement names, far below either backend's limit on parameters.
const IDS_PER_STATEMENT: usize = 500;

fn memory_from_row(row: &DbRow) -> Result<Memory, StoreError> {
    const TABLE: &str = "memories";
    Ok(Memory {
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        user_id: row.try_get("user_id")?,
        agent_id: row.try_get("agent_id")?,
        team_id: row.try_get("team_id")?,
        memory: row.try_get("memory")?,
        topics: json_column(TABLE, "topics", &row.try_get::<String, _>("topics")?)?,
        input: row.try_get("input")?,
        feedback: row.try_get("feedback")?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        updated_at: time_from_millis(TABLE, row.try_get("updated_at")?)?,
    })
}

/// The conditions `filter` adds after `tenant_id = $1`, and the text values they bind, as `$2`, `$3`…
fn filter_conditions(filter: &MemoryFilter) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values: Vec<String> = Vec::new();
    let mut condition = |template: &str, value: String| {
        values.push(value);
        sql.push_str(&template.replace("$?", &format!("${}", values.len() + 1)));
    };
    if let Some(user) = &filter.user_id {
        condition(" AND user_id = $?", user.clone());
    }
    if let Some(agent) = &filter.agent_id {
        condition(" AND agent_id = $?", agent.clone());
    }
    if let Some(team) = &filter.team_id {
        condition(" AND team_id = $?", team.clone());
    }
    for topic in &filter.topics {
        condition(
            " AND EXISTS (SELECT 1 FROM memory_topics t WHERE t.tenant_id = memories.tenant_id \
             AND t.memory_id = memories.id AND t.topic = $?)",
            topic.clone(),
        );
    }
    if let Some(text) = &filter.text_contains {
        condition(
            " AND LOWER(memory) LIKE $? ESCAPE '\\'",
            like_pattern_containing(text),
        );
    }
    (sql, values)
}

/// The column a sort orders by.
fn sort_column(sort: MemorySort) -> &'static str {
    match sort.by {
        MemorySortField::CreatedAt => "created_at",
        MemorySortField::UpdatedAt => "updated_at",
    }
}

/// Inserts the topic rows of `memory`.
async fn insert_topics(tx: &mut WriteTx, memory: &Memory) -> Result<(), StoreError> {
    if memory.topics.is_empty() {
        return Ok(());
    }
    let rows = (3..memory.topics.len() + 3)
        .map(|n| format!("($1, $2, ${n})"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("INSERT INTO memory_topics (tenant_id, memory_id, topic) VALUES {rows}");
    let mut query = sqlx::query(&sql)
        .bind(memory.tenant_id.to_string())
        .bind(memory.id.to_string());
    for topic in &memory.topics {
        query = query.bind(topic.as_str());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

#[async_trait]
impl MemoryStore for SqlStore {
    async fn insert_memory(&self, memory: &Memory) -> Result<(), StoreError> {
        let mut tx = begin_write(self).await?;
        sqlx::query(
            "INSERT INTO memories (tenant_id, id, user_id, agent_id, team_id, memory, topics, input, \
             feedback, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(memory.tenant_id.to_string())
        .bind(memory.id.to_string())
        .bind(&memory.user_id)
        .bind(memory.agent_id.as_deref())
        .bind(memory.team_id.as_deref())
        .bind(&memory.memory)
        .bind(to_json_text(&memory.topics))
        .bind(memory.input.as_deref())
        .bind(memory.feedback.as_deref())
        .bind(memory.created_at.timestamp_millis())
        .bind(memory.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        insert_topics(&mut tx, memory).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_memory(
        &self,
        tenant: TenantId,
        id: MemoryId,
    ) -> Result<Option<Memory>, StoreError> {
        let sql = format!("SELECT {MEMORY_COLUMNS} FROM memories WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(memory_from_row).transpose()
    }

    async fn list_memories(
        &self,
        tenant: TenantId,
        filter: &MemoryFilter,
        sort: MemorySort,
        start: &MemoryStart,
        limit: u32,
    ) -> Result<(Vec<Memory>, u64), StoreError> {
        let (conditions, values) = filter_conditions(filter);

        let count_sql = format!("SELECT COUNT(*) FROM memories WHERE tenant_id = $1{conditions}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(tenant.to_string());
        for value in &values {
            count = count.bind(value.as_str());
        }
        let total = integer_column("memories", "COUNT(*)", count.fetch_one(&self.pool).await?)?;

        let column = sort_column(sort);
        let (direction, beyond) = if sort.descending {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        let mut sql =
            format!("SELECT {MEMORY_COLUMNS} FROM memories WHERE tenant_id = $1{conditions}");
        if let MemoryStart::After { .. } = start {
            let next = values.len() + 2;
            sql.push_str(&format!(
                " AND ({column}, id) {beyond} (${next}, ${})",
                next + 1
            ));
        }
        sql.push_str(&format!(
            " ORDER BY {column} {direction}, id {direction} LIMIT {limit}"
        ));
        if let MemoryStart::Offset(offset) = start {
            sql.push_str(&format!(" OFFSET {}", db_integer(*offset)));
        }
        let mut query = sqlx::query(&sql).bind(tenant.to_string());
        for value in &values {
            query = query.bind(value.as_str());
        }
        if let MemoryStart::After { at, id } = start {
            query = query.bind(at.timestamp_millis()).bind(id.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let memories = rows.iter().map(memory_from_row).collect::<Result<_, _>>()?;
        Ok((memories, total))
    }

    async fn update_memory(&self, memory: &Memory) -> Result<bool, StoreError> {
        let mut tx = begin_write(self).await?;
        let updated = sqlx::query(
            "UPDATE memories SET memory = $3, topics = $4, agent_id = $5, team_id = $6, input = $7, \
             feedback = $8, updated_at = $9 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(memory.tenant_id.to_string())
        .bind(memory.id.to_string())
        .bind(&memory.memory)
        .bind(to_json_text(&memory.topics))
        .bind(memory.agent_id.as_deref())
        .bind(memory.team_id.as_deref())
        .bind(memory.input.as_deref())
        .bind(memory.feedback.as_deref())
        .bind(memory.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM memory_topics WHERE tenant_id = $1 AND memory_id = $2")
            .bind(memory.tenant_id.to_string())
            .bind(memory.id.to_string())
            .execute(&mut *tx)
            .await?;
        insert_topics(&mut tx, memory).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_memories(
        &self,
        tenant: TenantId,
        ids: &[MemoryId],
        user: Option<&str>,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        // `$1` is the tenant, `$2` the user when given, then the ids.
        let first_id = if user.is_some() { 3 } else { 2 };
        let of_user = if user.is_some() {
            " AND user_id = $2"
        } else {
            ""
        };
        let mut tx = begin_write(self).await?;
        let mut deleted = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let list = (first_id..chunk.len() + first_id)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let chosen = format!("tenant_id = $1{of_user} AND id IN ({list})");
            // Topics first, then memories: nothing is left pointing at a deleted row.
            let statements = [
                format!(
                    "DELETE FROM memory_topics WHERE tenant_id = $1 AND memory_id IN \
                     (SELECT id FROM memories WHERE {chosen})"
                ),
                format!("DELETE FROM memories WHERE {chosen}"),
            ];
            for (n, sql) in statements.iter().enumerate() {
                let mut query = sqlx::query(sql).bind(tenant.to_string());
                if let Some(user) = user {
                    query = query.bind(user);
                }
                for id in chunk {
                    query = query.bind(id.to_string());
                }
                let affected = query.execute(&mut *tx).await?.rows_affected();
                if n == 1 {
                    deleted += affected;
                }
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn memory_topics(
        &self,
        tenant: TenantId,
        user: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let sql = match user {
            None => "SELECT DISTINCT topic FROM memory_topics WHERE tenant_id = $1 ORDER BY topic",
            Some(_) => {
                "SELECT DISTINCT t.topic FROM memory_topics t JOIN memories m \
                 ON m.tenant_id = t.tenant_id AND m.id = t.memory_id \
                 WHERE t.tenant_id = $1 AND m.user_id = $2 ORDER BY t.topic"
            }
        };
        let mut query = sqlx::query_scalar::<_, String>(sql).bind(tenant.to_string());
        if let Some(user) = user {
            query = query.bind(user);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    async fn user_memory_stats(
        &self,
        tenant: TenantId,
        user: Option<&str>,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<UserMemoryStats>, u64), StoreError> {
        const TABLE: &str = "memories";
        let of_user = if user.is_some() {
            " AND user_id = $2"
        } else {
            ""
        };
        let count_sql =
            format!("SELECT COUNT(DISTINCT user_id) FROM memories WHERE tenant_id = $1{of_user}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(tenant.to_string());
        if let Some(user) = user {
            count = count.bind(user);
        }
        let total = integer_column(
            TABLE,
            "COUNT(DISTINCT user_id)",
            count.fetch_one(&self.pool).await?,
        )?;

        let sql = format!(
            "SELECT user_id, COUNT(*) AS total_memories, MAX(updated_at) AS last_updated \
             FROM memories WHERE tenant_id = $1{of_user} GROUP BY user_id \
             ORDER BY last_updated DESC, user_id ASC LIMIT {limit} OFFSET {}",
            db_integer(offset)
        );
        let mut query = sqlx::query(&sql).bind(tenant.to_string());
        if let Some(user) = user {
            query = query.bind(user);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let stats = rows
            .iter()
            .map(|row| {
                Ok(UserMemoryStats {
                    user_id: row.try_get("user_id")?,
                    total_memories: integer_column(
                        TABLE,
                        "total_memories",
                        row.try_get::<i64, _>("total_memories")?,
                    )?,
                    last_memory_updated_at: time_from_millis(TABLE, row.try_get("last_updated")?)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((stats, total))
    }
}
