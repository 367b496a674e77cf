// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Capabilities and endorsements.

use super::agents::insert_events;

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
        let mut tx = begin_write(self).await?;
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
        let mut tx = begin_write(self).await?;
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
        let mut tx = begin_write(self).await?;
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
