// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Agents, their versions, tags and events.

const AGENT_COLUMNS: &str =
    "id, tenant_id, version, status, health, spec, created_at, updated_at, \
     last_heartbeat_at, public_key";
const EVENT_COLUMNS: &str =
    "id, tenant_id, agent_id, kind, action, from_status, to_status, actor, detail, created_at";

fn agent_from_row(row: &DbRow) -> Result<Agent, StoreError> {
    const TABLE: &str = "agents";
    Ok(Agent {
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        version: version_from(TABLE, row.try_get("version")?)?,
        status: parse_column(TABLE, "status", &row.try_get::<String, _>("status")?)?,
        health: parse_column(TABLE, "health", &row.try_get::<String, _>("health")?)?,
        spec: json_column(TABLE, "spec", &row.try_get::<String, _>("spec")?)?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        updated_at: time_from_millis(TABLE, row.try_get("updated_at")?)?,
        last_heartbeat_at: row
            .try_get::<Option<i64>, _>("last_heartbeat_at")?
            .map(|millis| time_from_millis(TABLE, millis))
            .transpose()?,
        public_key: row.try_get("public_key")?,
    })
}

fn version_from(table: &'static str, raw: i64) -> Result<u32, StoreError> {
    u32::try_from(raw).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("version {raw} out of range"),
    })
}

fn event_from_row(row: &DbRow) -> Result<AgentEvent, StoreError> {
    const TABLE: &str = "agent_events";
    let status = |column: &str| -> Result<Option<AgentStatus>, StoreError> {
        row.try_get::<Option<String>, _>(column)?
            .map(|raw| parse_column(TABLE, column, &raw))
            .transpose()
    };
    Ok(AgentEvent {
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        agent_id: parse_column(TABLE, "agent_id", &row.try_get::<String, _>("agent_id")?)?,
        kind: parse_column(TABLE, "kind", &row.try_get::<String, _>("kind")?)?,
        action: row.try_get("action")?,
        from_status: status("from_status")?,
        to_status: status("to_status")?,
        actor: row.try_get("actor")?,
        detail: json_column(TABLE, "detail", &row.try_get::<String, _>("detail")?)?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
    })
}

pub(super) async fn insert_events(
    tx: &mut WriteTx,
    events: &[AgentEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    // One statement for them all: inside the write lane every statement is a round trip others wait on.
    let mut insert = sqlx::QueryBuilder::<Db>::new(
        "INSERT INTO agent_events (id, tenant_id, agent_id, kind, action, from_status, to_status, actor, detail, created_at) ",
    );
    insert.push_values(events, |mut row, event| {
        row.push_bind(event.id.to_string())
            .push_bind(event.tenant_id.to_string())
            .push_bind(event.agent_id.to_string())
            .push_bind(event.kind.as_str())
            .push_bind(event.action.clone())
            .push_bind(event.from_status.map(AgentStatus::as_str))
            .push_bind(event.to_status.map(AgentStatus::as_str))
            .push_bind(event.actor.clone())
            .push_bind(to_json_text(&event.detail))
            .push_bind(event.created_at.timestamp_millis());
    });
    insert.build().execute(&mut **tx).await?;
    Ok(())
}

/// Stores the agent's spec version, its declared skills as capabilities (kept when already there) and
/// its tags (replacing those of an earlier version), each list in one statement.
async fn write_version_and_tags(tx: &mut WriteTx, agent: &Agent) -> Result<(), StoreError> {
    let (tenant, id) = (agent.tenant_id.to_string(), agent.id.to_string());
    sqlx::query(
        "INSERT INTO agent_versions (tenant_id, agent_id, version, spec, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&tenant)
    .bind(&id)
    .bind(i64::from(agent.version))
    .bind(to_json_text(&agent.spec))
    .bind(agent.updated_at.timestamp_millis())
    .execute(&mut **tx)
    .await?;
    if agent.version > 1 {
        sqlx::query("DELETE FROM agent_tags WHERE tenant_id = $1 AND agent_id = $2")
            .bind(&tenant)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
    }
    let mut skills: Vec<&String> = agent.spec.skills.iter().collect();
    skills.sort();
    skills.dedup();
    if !skills.is_empty() {
        let at = agent.updated_at.timestamp_millis();
        let mut insert = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO agent_capabilities (tenant_id, agent_id, name, description, proficiency, experience, created_at, updated_at) ",
        );
        insert.push_values(skills, |mut row, skill| {
            row.push_bind(tenant.as_str())
                .push_bind(id.as_str())
                .push_bind(skill.as_str())
                .push("NULL, 0, 0")
                .push_bind(at)
                .push_bind(at);
        });
        insert.push(" ON CONFLICT (tenant_id, agent_id, name) DO NOTHING");
        insert.build().execute(&mut **tx).await?;
    }
    let mut tags: Vec<&String> = agent.spec.tags.iter().collect();
    tags.sort();
    tags.dedup();
    if !tags.is_empty() {
        let mut insert =
            sqlx::QueryBuilder::<Db>::new("INSERT INTO agent_tags (tenant_id, agent_id, tag) ");
        insert.push_values(tags, |mut row, tag| {
            row.push_bind(tenant.as_str())
                .push_bind(id.as_str())
                .push_bind(tag.as_str());
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The agent's row as the database has it now, past the cache (what a lost compare-and-set reports).
async fn read_agent(
    store: &SqlStore,
    tenant: TenantId,
    id: AgentId,
) -> Result<Option<Agent>, StoreError> {
    let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND id = $2");
    let row = sqlx::query(&sql)
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(agent_from_row).transpose()
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn create_agent(
        &self,
        agent: &Agent,
        sealed_private_key: Option<&str>,
        events: &[AgentEvent],
    ) -> Result<(), StoreError> {
        let mut tx = begin_write(self).await?;
        sqlx::query(
            "INSERT INTO agents (id, tenant_id, version, name, kind, status, health, owner, team_id, spec, created_at, updated_at, last_heartbeat_at, public_key, sealed_private_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(agent.id.to_string())
        .bind(agent.tenant_id.to_string())
        .bind(i64::from(agent.version))
        .bind(&agent.spec.name)
        .bind(agent.spec.kind.as_str())
        .bind(agent.status.as_str())
        .bind(agent.health.as_str())
        .bind(agent.spec.owner.as_deref())
        .bind(agent.spec.team_id.as_deref())
        .bind(to_json_text(&agent.spec))
        .bind(agent.created_at.timestamp_millis())
        .bind(agent.updated_at.timestamp_millis())
        .bind(agent.last_heartbeat_at.map(|t| t.timestamp_millis()))
        .bind(agent.public_key.as_deref())
        .bind(sealed_private_key)
        .execute(&mut *tx)
        .await?;
        write_version_and_tags(&mut tx, agent).await?;
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_agent(&self, tenant: TenantId, id: AgentId) -> Result<Option<Agent>, StoreError> {
        let epoch = self.agents.epoch();
        if let Some(agent) = self.agents.agent(tenant, id) {
            return Ok(Some(agent));
        }
        let agent = read_agent(self, tenant, id).await?;
        if let Some(agent) = &agent {
            self.agents.fill_agent(epoch, agent);
        }
        Ok(agent)
    }

    async fn list_agents(
        &self,
        tenant: TenantId,
        filter: &AgentFilter,
        after: Option<AgentId>,
        limit: u32,
    ) -> Result<Vec<Agent>, StoreError> {
        let mut sql =
            format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND id > $2");
        let mut values: Vec<String> = Vec::new();
        let mut condition = |sql: &mut String, template: &str, value: String| {
            values.push(value);
            sql.push_str(&template.replace("$?", &format!("${}", values.len() + 2)));
        };
        match filter.status {
            Some(status) => condition(&mut sql, " AND status = $?", status.as_str().to_owned()),
            None => sql.push_str(" AND status <> 'terminated'"),
        }
        if let Some(health) = filter.health {
            condition(&mut sql, " AND health = $?", health.as_str().to_owned());
        }
        if let Some(team) = &filter.team_id {
            condition(&mut sql, " AND team_id = $?", team.clone());
        }
        if let Some(owner) = &filter.owner {
            condition(&mut sql, " AND owner = $?", owner.clone());
        }
        if let Some(prefix) = &filter.name_prefix {
            let length = prefix.chars().count();
            condition(
                &mut sql,
                &format!(" AND substr(name, 1, {length}) = $?"),
                prefix.clone(),
            );
        }
        // Tags and capabilities are checked by one primary-key probe per candidate agent, walked
        // in id order. Written as a scalar subquery (at most one row: the key includes the tag or
        // name) rather than `EXISTS`, which PostgreSQL turns into a semi-join: before the planner
        // has statistics for freshly filled tables it then scanned every tag of the tenant for each
        // agent (400 ms a page at 3,000 agents).
        if let Some(tag) = &filter.tag {
            condition(
                &mut sql,
                " AND (SELECT 1 FROM agent_tags t WHERE t.tenant_id = agents.tenant_id \
                 AND t.agent_id = agents.id AND t.tag = $?) = 1",
                tag.clone(),
            );
        }
        if let Some(capability) = &filter.capability {
            condition(
                &mut sql,
                " AND (SELECT 1 FROM agent_capabilities c WHERE c.tenant_id = agents.tenant_id \
                 AND c.agent_id = agents.id AND c.name = $?) = 1",
                capability.clone(),
            );
        }
        if let Some(ids) = &filter.ids {
            if ids.is_empty() {
                sql.push_str(" AND 1 = 0");
            }
            let mut placeholders = Vec::new();
            for id in ids {
                values.push(id.to_string());
                placeholders.push(format!("${}", values.len() + 2));
            }
            if !placeholders.is_empty() {
                sql.push_str(&format!(" AND id IN ({})", placeholders.join(", ")));
            }
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
        let mut query = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(after.map(|id| id.to_string()).unwrap_or_default());
        for value in &values {
            query = query.bind(value.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn update_agent_spec(
        &self,
        agent: &Agent,
        expected_version: u32,
        event: &AgentEvent,
    ) -> Result<Update, StoreError> {
        let mut tx = begin_write(self).await?;
        let updated = sqlx::query(
            "UPDATE agents SET version = $3, name = $4, kind = $5, owner = $6, team_id = $7, spec = $8, updated_at = $9 \
             WHERE tenant_id = $1 AND id = $2 AND version = $10",
        )
        .bind(agent.tenant_id.to_string())
        .bind(agent.id.to_string())
        .bind(i64::from(agent.version))
        .bind(&agent.spec.name)
        .bind(agent.spec.kind.as_str())
        .bind(agent.spec.owner.as_deref())
        .bind(agent.spec.team_id.as_deref())
        .bind(to_json_text(&agent.spec))
        .bind(agent.updated_at.timestamp_millis())
        .bind(i64::from(expected_version))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(match read_agent(self, agent.tenant_id, agent.id).await? {
                Some(current) => Update::Stale(current.version.to_string()),
                None => Update::Missing,
            });
        }
        write_version_and_tags(&mut tx, agent).await?;
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        self.agents.drop_agent(agent.tenant_id, agent.id);
        Ok(Update::Applied)
    }

    async fn transition_agent(
        &self,
        tenant: TenantId,
        id: AgentId,
        from: AgentStatus,
        to: AgentStatus,
        events: &[AgentEvent],
    ) -> Result<Update, StoreError> {
        let mut tx = begin_write(self).await?;
        let updated = sqlx::query(
            "UPDATE agents SET status = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 AND status = $5",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(agentd_core::now().timestamp_millis())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(match read_agent(self, tenant, id).await? {
                Some(current) => Update::Stale(current.status.as_str().to_owned()),
                None => Update::Missing,
            });
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.agents.drop_agent(tenant, id);
        Ok(Update::Applied)
    }

    async fn record_agent_health(
        &self,
        tenant: TenantId,
        id: AgentId,
        health: AgentHealth,
        heard_at: Option<Timestamp>,
        events: &[AgentEvent],
    ) -> Result<Update, StoreError> {
        let mut tx = begin_write(self).await?;
        let updated = sqlx::query(
            "UPDATE agents SET health = $3, last_heartbeat_at = COALESCE($4, last_heartbeat_at) \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(health.as_str())
        .bind(heard_at.map(|t| t.timestamp_millis()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(Update::Missing);
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.agents.drop_agent(tenant, id);
        Ok(Update::Applied)
    }

    async fn list_monitored_agents(
        &self,
        tenant: TenantId,
        after: Option<AgentId>,
        limit: u32,
    ) -> Result<Vec<Agent>, StoreError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND id > $2 \
             AND status NOT IN ('stopped', 'terminated') \
             AND (kind = 'remote' OR last_heartbeat_at IS NOT NULL) ORDER BY id LIMIT {limit}"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(after.map(|id| id.to_string()).unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn list_agent_versions(
        &self,
        tenant: TenantId,
        id: AgentId,
    ) -> Result<Vec<AgentVersion>, StoreError> {
        const TABLE: &str = "agent_versions";
        let rows = sqlx::query(
            "SELECT agent_id, version, spec, created_at FROM agent_versions \
             WHERE tenant_id = $1 AND agent_id = $2 ORDER BY version",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AgentVersion {
                    agent_id: parse_column(
                        TABLE,
                        "agent_id",
                        &row.try_get::<String, _>("agent_id")?,
                    )?,
                    version: version_from(TABLE, row.try_get("version")?)?,
                    spec: json_column(TABLE, "spec", &row.try_get::<String, _>("spec")?)?,
                    created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
                })
            })
            .collect()
    }

    async fn list_agent_events(
        &self,
        tenant: TenantId,
        id: AgentId,
        after: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<AgentEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM agent_events WHERE tenant_id = $1 AND agent_id = $2 AND id > $3 \
             ORDER BY id LIMIT {limit}"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .bind(after.map(|id| id.to_string()).unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}
