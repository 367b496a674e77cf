// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Agents' Ed25519 identities: two columns of the agent row, the private key sealed by the runtime.

use crate::SealedIdentity;

#[async_trait]
impl IdentityStore for SqlStore {
    async fn get_agent_identity(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<Option<SealedIdentity>, StoreError> {
        let row = sqlx::query(
            "SELECT public_key, sealed_private_key FROM agents \
             WHERE tenant_id = $1 AND id = $2 AND public_key IS NOT NULL AND sealed_private_key IS NOT NULL",
        )
        .bind(tenant.to_string())
        .bind(agent.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SealedIdentity {
                public_key: row.try_get("public_key")?,
                sealed_private_key: row.try_get("sealed_private_key")?,
            })
        })
        .transpose()
    }

    async fn set_agent_identity(
        &self,
        tenant: TenantId,
        agent: AgentId,
        identity: &SealedIdentity,
    ) -> Result<bool, StoreError> {
        let _lane = write_lane(self).await;
        let updated = sqlx::query(
            "UPDATE agents SET public_key = $3, sealed_private_key = $4 \
             WHERE tenant_id = $1 AND id = $2 AND public_key IS NULL",
        )
        .bind(tenant.to_string())
        .bind(agent.to_string())
        .bind(&identity.public_key)
        .bind(&identity.sealed_private_key)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.agents.drop_agent(tenant, agent);
        Ok(updated == 1)
    }

    async fn find_agent_by_public_key(
        &self,
        tenant: TenantId,
        public_key: &str,
    ) -> Result<Option<AgentId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM agents WHERE tenant_id = $1 AND public_key = $2 ORDER BY id LIMIT 1",
        )
        .bind(tenant.to_string())
        .bind(public_key)
        .fetch_optional(&self.pool)
        .await?;
        id.map(|id| parse_column("agents", "id", &id)).transpose()
    }
}
