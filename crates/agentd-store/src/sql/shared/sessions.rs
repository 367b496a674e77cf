// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Sessions; deleting one deletes its runs and their events.

const SESSION_COLUMNS: &str = "tenant_id, id, kind, component_id, user_id, name, state, metadata, \
     summary, policy, created_at, updated_at";

/// How many session ids one statement names, far below either backend's limit on parameters.
const IDS_PER_STATEMENT: usize = 500;

fn session_from_row(row: &DbRow) -> Result<Session, StoreError> {
    const TABLE: &str = "sessions";
    Ok(Session {
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        kind: parse_column(TABLE, "kind", &row.try_get::<String, _>("kind")?)?,
        component_id: row.try_get("component_id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        state: json_column(TABLE, "state", &row.try_get::<String, _>("state")?)?,
        metadata: json_column(TABLE, "metadata", &row.try_get::<String, _>("metadata")?)?,
        summary: row.try_get("summary")?,
        policy: parse_column(TABLE, "policy", &row.try_get::<String, _>("policy")?)?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        updated_at: time_from_millis(TABLE, row.try_get("updated_at")?)?,
    })
}

/// The conditions `filter` adds after `tenant_id = $1`, and the text values they bind, as `$2`, `$3`…
fn filter_conditions(filter: &SessionFilter) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values: Vec<String> = Vec::new();
    let mut condition = |template: &str, value: String| {
        values.push(value);
        sql.push_str(&template.replace("$?", &format!("${}", values.len() + 1)));
    };
    if let Some(kind) = filter.kind {
        condition(" AND kind = $?", kind.as_str().to_owned());
    }
    if let Some(component) = &filter.component_id {
        condition(" AND component_id = $?", component.clone());
    }
    if let Some(user) = &filter.user_id {
        condition(" AND user_id = $?", user.clone());
    }
    if let Some(text) = &filter.name_contains {
        // `LOWER` folds ASCII only on both backends (PostgreSQL's `name` column is "C").
        condition(
            " AND LOWER(name) LIKE $? ESCAPE '\\'",
            like_pattern_containing(text),
        );
    }
    (sql, values)
}

/// Runs `sql`, which binds the tenant as `$1` and `ids` as `$2`, `$3`…; how many rows it changed.
async fn execute_for_sessions(
    tx: &mut WriteTx,
    sql: &str,
    tenant: TenantId,
    ids: &[SessionId],
) -> Result<u64, StoreError> {
    let mut query = sqlx::query(sql).bind(tenant.to_string());
    for id in ids {
        query = query.bind(id.as_str());
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, session: &Session) -> Result<bool, StoreError> {
        let _lane = write_lane(self).await;
        let inserted = sqlx::query(
            "INSERT INTO sessions (tenant_id, id, kind, component_id, user_id, name, state, metadata, \
             summary, policy, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant_id, id) DO NOTHING",
        )
        .bind(session.tenant_id.to_string())
        .bind(session.id.as_str())
        .bind(session.kind.as_str())
        .bind(&session.component_id)
        .bind(session.user_id.as_deref())
        .bind(session.name.as_deref())
        .bind(to_json_text(&session.state))
        .bind(to_json_text(&session.metadata))
        .bind(session.summary.as_deref())
        .bind(session.policy.as_str())
        .bind(session.created_at.timestamp_millis())
        .bind(session.updated_at.timestamp_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }

    async fn get_session(
        &self,
        tenant: TenantId,
        id: &SessionId,
    ) -> Result<Option<Session>, StoreError> {
        let sql =
            format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions(
        &self,
        tenant: TenantId,
        filter: &SessionFilter,
        after: Option<&SessionCursor>,
        limit: u32,
    ) -> Result<(Vec<Session>, u64), StoreError> {
        let (conditions, values) = filter_conditions(filter);

        let count_sql = format!("SELECT COUNT(*) FROM sessions WHERE tenant_id = $1{conditions}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(tenant.to_string());
        for value in &values {
            count = count.bind(value.as_str());
        }
        let total = integer_column("sessions", "COUNT(*)", count.fetch_one(&self.pool).await?)?;

        let mut sql =
            format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1{conditions}");
        if after.is_some() {
            let next = values.len() + 2;
            sql.push_str(&format!(" AND (created_at, id) < (${next}, ${})", next + 1));
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {limit}"));
        let mut query = sqlx::query(&sql).bind(tenant.to_string());
        for value in &values {
            query = query.bind(value.as_str());
        }
        if let Some(cursor) = after {
            query = query
                .bind(cursor.created_at.timestamp_millis())
                .bind(cursor.id.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<_, _>>()?;
        Ok((sessions, total))
    }

    async fn update_session(&self, session: &Session) -> Result<bool, StoreError> {
        let _lane = write_lane(self).await;
        let updated = sqlx::query(
            "UPDATE sessions SET name = $3, state = $4, metadata = $5, summary = $6, policy = $7, \
             updated_at = $8 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(session.tenant_id.to_string())
        .bind(session.id.as_str())
        .bind(session.name.as_deref())
        .bind(to_json_text(&session.state))
        .bind(to_json_text(&session.metadata))
        .bind(session.summary.as_deref())
        .bind(session.policy.as_str())
        .bind(session.updated_at.timestamp_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn delete_sessions(
        &self,
        tenant: TenantId,
        ids: &[SessionId],
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut tx = begin_write(self).await?;
        let mut deleted = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let list = (2..chunk.len() + 2)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            // Events first, then runs, then sessions: nothing is left pointing at a deleted row.
            let events = format!(
                "DELETE FROM run_events WHERE tenant_id = $1 AND run_id IN \
                 (SELECT id FROM runs WHERE tenant_id = $1 AND session_id IN ({list}))"
            );
            execute_for_sessions(&mut tx, &events, tenant, chunk).await?;
            let runs = format!("DELETE FROM runs WHERE tenant_id = $1 AND session_id IN ({list})");
            execute_for_sessions(&mut tx, &runs, tenant, chunk).await?;
            let sessions = format!("DELETE FROM sessions WHERE tenant_id = $1 AND id IN ({list})");
            deleted += execute_for_sessions(&mut tx, &sessions, tenant, chunk).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}
