// The query code shared by both SQL backends. This file is not a module: `sqlite.rs` and
// `postgres.rs` each `include!` it after defining `Db` (their sqlx database type) and `SqlStore`
// (their store struct with a `pool: sqlx::Pool<Db>` field), so the same statements compile against
// each driver with concrete types.

use agentd_core::agent::{
    Agent, AgentEvent, AgentHealth, AgentResources, AgentStatus, AgentVersion, Capability,
    Endorsement,
};
use agentd_core::{
    AgentId, ApiKey, EventId, KeyId, KeyName, Tenant, TenantId, TenantSlug, Timestamp,
};
use async_trait::async_trait;
use sqlx::Row;

use crate::sql::{
    json_column, parse_column, scopes_from_json, scopes_to_json, time_from_millis, to_json_text,
};
use crate::{
    AgentFilter, AgentStore, CapabilityStore, KeyStore, ResourceStore, StoreError, TenantStore,
    Update,
};

type DbRow = <Db as sqlx::Database>::Row;

const TENANT_COLUMNS: &str = "id, slug, name, created_at";
const KEY_COLUMNS: &str =
    "id, tenant_id, name, prefix, hash, scopes, created_at, expires_at, last_used_at";

fn tenant_from_row(row: &DbRow) -> Result<Tenant, StoreError> {
    const TABLE: &str = "tenants";
    let slug: String = row.try_get("slug")?;
    Ok(Tenant {
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        slug: TenantSlug::parse(&slug).map_err(|e| StoreError::Corrupt {
            table: TABLE,
            reason: format!("slug `{slug}`: {e}"),
        })?,
        name: row.try_get("name")?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
    })
}

fn key_from_row(row: &DbRow) -> Result<ApiKey, StoreError> {
    const TABLE: &str = "api_keys";
    let name: String = row.try_get("name")?;
    let optional_time = |column: &str| -> Result<Option<Timestamp>, StoreError> {
        row.try_get::<Option<i64>, _>(column)?
            .map(|millis| time_from_millis(TABLE, millis))
            .transpose()
    };
    Ok(ApiKey {
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        name: KeyName::parse(&name).map_err(|e| StoreError::Corrupt {
            table: TABLE,
            reason: format!("name: {e}"),
        })?,
        prefix: row.try_get("prefix")?,
        hash: row.try_get("hash")?,
        scopes: scopes_from_json(&row.try_get::<String, _>("scopes")?)?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        expires_at: optional_time("expires_at")?,
        last_used_at: optional_time("last_used_at")?,
    })
}

async fn insert_key_with<'e, E>(executor: E, key: &ApiKey) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, hash, scopes, created_at, expires_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(key.id.to_string())
    .bind(key.tenant_id.to_string())
    .bind(key.name.as_str())
    .bind(&key.prefix)
    .bind(&key.hash)
    .bind(scopes_to_json(&key.scopes))
    .bind(key.created_at.timestamp_millis())
    .bind(key.expires_at.map(|t| t.timestamp_millis()))
    .bind(key.last_used_at.map(|t| t.timestamp_millis()))
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait]
impl TenantStore for SqlStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.id.to_string())
            .bind(tenant.slug.as_str())
            .bind(&tenant.name)
            .bind(tenant.created_at.timestamp_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn get_tenant_by_slug(&self, slug: &TenantSlug) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1");
        let row = sqlx::query(&sql)
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn create_tenant_with_key(
        &self,
        tenant: &Tenant,
        key: &ApiKey,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (slug) DO NOTHING",
        )
        .bind(tenant.id.to_string())
        .bind(tenant.slug.as_str())
        .bind(&tenant.name)
        .bind(tenant.created_at.timestamp_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_key_with(&mut *tx, key).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_tenant_ids(&self) -> Result<Vec<TenantId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        ids.iter()
            .map(|id| parse_column("tenants", "id", id))
            .collect()
    }
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        insert_key_with(&self.pool, key).await
    }

    async fn get_key(&self, tenant: TenantId, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(
        &self,
        tenant: TenantId,
        after: Option<KeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(after.map(|id| id.to_string()).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn delete_key(&self, tenant: TenantId, id: KeyId) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn find_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1");
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn touch_key(
        &self,
        tenant: TenantId,
        id: KeyId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .bind(at.timestamp_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

const AGENT_COLUMNS: &str =
    "id, tenant_id, version, status, health, spec, created_at, updated_at, last_heartbeat_at";
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

async fn insert_events(
    tx: &mut sqlx::Transaction<'_, Db>,
    events: &[AgentEvent],
) -> Result<(), StoreError> {
    for event in events {
        sqlx::query(
            "INSERT INTO agent_events (id, tenant_id, agent_id, kind, action, from_status, to_status, actor, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(event.id.to_string())
        .bind(event.tenant_id.to_string())
        .bind(event.agent_id.to_string())
        .bind(event.kind.as_str())
        .bind(&event.action)
        .bind(event.from_status.map(AgentStatus::as_str))
        .bind(event.to_status.map(AgentStatus::as_str))
        .bind(&event.actor)
        .bind(to_json_text(&event.detail))
        .bind(event.created_at.timestamp_millis())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Stores the agent's spec version and replaces its tags.
async fn write_version_and_tags(
    tx: &mut sqlx::Transaction<'_, Db>,
    agent: &Agent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_versions (tenant_id, agent_id, version, spec, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(agent.tenant_id.to_string())
    .bind(agent.id.to_string())
    .bind(i64::from(agent.version))
    .bind(to_json_text(&agent.spec))
    .bind(agent.updated_at.timestamp_millis())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM agent_tags WHERE tenant_id = $1 AND agent_id = $2")
        .bind(agent.tenant_id.to_string())
        .bind(agent.id.to_string())
        .execute(&mut **tx)
        .await?;
    for skill in &agent.spec.skills {
        sqlx::query(
            "INSERT INTO agent_capabilities (tenant_id, agent_id, name, description, proficiency, experience, created_at, updated_at) \
             VALUES ($1, $2, $3, NULL, 0, 0, $4, $4) ON CONFLICT (tenant_id, agent_id, name) DO NOTHING",
        )
        .bind(agent.tenant_id.to_string())
        .bind(agent.id.to_string())
        .bind(skill)
        .bind(agent.updated_at.timestamp_millis())
        .execute(&mut **tx)
        .await?;
    }
    let mut tags: Vec<&String> = agent.spec.tags.iter().collect();
    tags.sort();
    tags.dedup();
    for tag in tags {
        sqlx::query("INSERT INTO agent_tags (tenant_id, agent_id, tag) VALUES ($1, $2, $3)")
            .bind(agent.tenant_id.to_string())
            .bind(agent.id.to_string())
            .bind(tag)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn create_agent(&self, agent: &Agent, events: &[AgentEvent]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agents (id, tenant_id, version, name, kind, status, health, owner, team_id, spec, created_at, updated_at, last_heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        .execute(&mut *tx)
        .await?;
        write_version_and_tags(&mut tx, agent).await?;
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_agent(&self, tenant: TenantId, id: AgentId) -> Result<Option<Agent>, StoreError> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
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
        if let Some(tag) = &filter.tag {
            condition(
                &mut sql,
                " AND EXISTS (SELECT 1 FROM agent_tags t WHERE t.tenant_id = agents.tenant_id \
                 AND t.agent_id = agents.id AND t.tag = $?)",
                tag.clone(),
            );
        }
        if let Some(capability) = &filter.capability {
            condition(
                &mut sql,
                " AND EXISTS (SELECT 1 FROM agent_capabilities c WHERE c.tenant_id = agents.tenant_id \
                 AND c.agent_id = agents.id AND c.name = $?)",
                capability.clone(),
            );
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
        let mut tx = self.pool.begin().await?;
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
            return Ok(match self.get_agent(agent.tenant_id, agent.id).await? {
                Some(current) => Update::Stale(current.version.to_string()),
                None => Update::Missing,
            });
        }
        write_version_and_tags(&mut tx, agent).await?;
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
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
        let mut tx = self.pool.begin().await?;
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
            return Ok(match self.get_agent(tenant, id).await? {
                Some(current) => Update::Stale(current.status.as_str().to_owned()),
                None => Update::Missing,
            });
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
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
        let mut tx = self.pool.begin().await?;
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

const CAPABILITY_SELECT: &str = "SELECT c.tenant_id, c.agent_id, c.name, c.description, c.proficiency, c.experience, \
     c.created_at, c.updated_at, (SELECT COUNT(*) FROM agent_endorsements e WHERE e.tenant_id = c.tenant_id \
     AND e.agent_id = c.agent_id AND e.capability = c.name) AS endorsements FROM agent_capabilities c";

fn capability_from_row(row: &DbRow) -> Result<Capability, StoreError> {
    const TABLE: &str = "agent_capabilities";
    let count = |column: &str| -> Result<i64, StoreError> { Ok(row.try_get::<i64, _>(column)?) };
    Ok(Capability {
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        agent_id: parse_column(TABLE, "agent_id", &row.try_get::<String, _>("agent_id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        proficiency: row.try_get("proficiency")?,
        experience: u64::try_from(count("experience")?).unwrap_or_default(),
        endorsements: u32::try_from(count("endorsements")?).unwrap_or(u32::MAX),
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        updated_at: time_from_millis(TABLE, row.try_get("updated_at")?)?,
    })
}

#[async_trait]
impl CapabilityStore for SqlStore {
    async fn list_capabilities(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<Vec<Capability>, StoreError> {
        let sql = format!(
            "{CAPABILITY_SELECT} WHERE c.tenant_id = $1 AND c.agent_id = $2 ORDER BY c.name"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(agent.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(capability_from_row).collect()
    }

    async fn get_capability(
        &self,
        tenant: TenantId,
        agent: AgentId,
        name: &str,
    ) -> Result<Option<Capability>, StoreError> {
        let sql = format!(
            "{CAPABILITY_SELECT} WHERE c.tenant_id = $1 AND c.agent_id = $2 AND c.name = $3"
        );
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(agent.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(capability_from_row).transpose()
    }

    async fn add_capability(
        &self,
        capability: &Capability,
        event: &AgentEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agent_capabilities (tenant_id, agent_id, name, description, proficiency, experience, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(capability.tenant_id.to_string())
        .bind(capability.agent_id.to_string())
        .bind(&capability.name)
        .bind(capability.description.as_deref())
        .bind(capability.proficiency)
        .bind(i64::try_from(capability.experience).unwrap_or(i64::MAX))
        .bind(capability.created_at.timestamp_millis())
        .bind(capability.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_capability(
        &self,
        capability: &Capability,
        event: &AgentEvent,
    ) -> Result<Update, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE agent_capabilities SET description = $4, proficiency = $5, experience = $6, updated_at = $7 \
             WHERE tenant_id = $1 AND agent_id = $2 AND name = $3",
        )
        .bind(capability.tenant_id.to_string())
        .bind(capability.agent_id.to_string())
        .bind(&capability.name)
        .bind(capability.description.as_deref())
        .bind(capability.proficiency)
        .bind(i64::try_from(capability.experience).unwrap_or(i64::MAX))
        .bind(capability.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(Update::Missing);
        }
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(Update::Applied)
    }

    async fn add_endorsement(
        &self,
        endorsement: &Endorsement,
        event: &AgentEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agent_endorsements (tenant_id, agent_id, capability, endorser, comment, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(endorsement.tenant_id.to_string())
        .bind(endorsement.agent_id.to_string())
        .bind(&endorsement.capability)
        .bind(&endorsement.endorser)
        .bind(endorsement.comment.as_deref())
        .bind(endorsement.created_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl ResourceStore for SqlStore {
    async fn get_resources(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<Option<AgentResources>, StoreError> {
        const TABLE: &str = "agent_resources";
        let row = sqlx::query(
            "SELECT limits, usage, reset_at, updated_at, version FROM agent_resources \
             WHERE tenant_id = $1 AND agent_id = $2",
        )
        .bind(tenant.to_string())
        .bind(agent.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(AgentResources {
            tenant_id: tenant,
            agent_id: agent,
            limits: json_column(TABLE, "limits", &row.try_get::<String, _>("limits")?)?,
            usage: json_column(TABLE, "usage", &row.try_get::<String, _>("usage")?)?,
            reset_at: time_from_millis(TABLE, row.try_get("reset_at")?)?,
            updated_at: time_from_millis(TABLE, row.try_get("updated_at")?)?,
            version: u64::try_from(row.try_get::<i64, _>("version")?).unwrap_or_default(),
        }))
    }

    async fn save_resources(
        &self,
        resources: &AgentResources,
        expected_version: u64,
        events: &[AgentEvent],
    ) -> Result<Update, StoreError> {
        let mut tx = self.pool.begin().await?;
        let version = i64::try_from(resources.version).unwrap_or(i64::MAX);
        let written = if expected_version == 0 {
            sqlx::query(
                "INSERT INTO agent_resources (tenant_id, agent_id, limits, usage, reset_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, agent_id) DO NOTHING",
            )
            .bind(resources.tenant_id.to_string())
            .bind(resources.agent_id.to_string())
            .bind(to_json_text(&resources.limits))
            .bind(to_json_text(&resources.usage))
            .bind(resources.reset_at.timestamp_millis())
            .bind(resources.updated_at.timestamp_millis())
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query(
                "UPDATE agent_resources SET limits = $3, usage = $4, reset_at = $5, updated_at = $6, version = $7 \
                 WHERE tenant_id = $1 AND agent_id = $2 AND version = $8",
            )
            .bind(resources.tenant_id.to_string())
            .bind(resources.agent_id.to_string())
            .bind(to_json_text(&resources.limits))
            .bind(to_json_text(&resources.usage))
            .bind(resources.reset_at.timestamp_millis())
            .bind(resources.updated_at.timestamp_millis())
            .bind(version)
            .bind(i64::try_from(expected_version).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        if written == 0 {
            tx.rollback().await?;
            return Ok(Update::Stale(expected_version.to_string()));
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(Update::Applied)
    }
}
