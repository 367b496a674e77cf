// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Resource limits and usage.

use super::agents::insert_events;

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
        let mut tx = begin_write(self).await?;
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
