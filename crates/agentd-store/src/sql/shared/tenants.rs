// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Tenants and API keys.

const TENANT_COLUMNS: &str = "id, slug, name, plan, created_at";
const KEY_COLUMNS: &str =
    "id, tenant_id, name, prefix, hash, scopes, agent_id, created_at, expires_at, last_used_at";

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
        plan: row.try_get("plan")?,
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
        agent_id: row
            .try_get::<Option<String>, _>("agent_id")?
            .map(|raw| parse_column(TABLE, "agent_id", &raw))
            .transpose()?,
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
        "INSERT INTO api_keys (id, tenant_id, name, prefix, hash, scopes, created_at, expires_at, last_used_at, agent_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .bind(key.agent_id.map(|id| id.to_string()))
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait]
impl TenantStore for SqlStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let _lane = write_lane(self).await;
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, plan, created_at) VALUES ($1, $2, $3, $5, $4)",
        )
        .bind(tenant.id.to_string())
        .bind(tenant.slug.as_str())
        .bind(&tenant.name)
        .bind(tenant.created_at.timestamp_millis())
        .bind(tenant.plan.as_deref())
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

    async fn create_tenant_with_owner(
        &self,
        tenant: &Tenant,
        key: &ApiKey,
        owner: Option<&agentd_core::user::User>,
    ) -> Result<bool, StoreError> {
        let mut tx = begin_write(self).await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, slug, name, plan, created_at) VALUES ($1, $2, $3, $5, $4) \
             ON CONFLICT (slug) DO NOTHING",
        )
        .bind(tenant.id.to_string())
        .bind(tenant.slug.as_str())
        .bind(&tenant.name)
        .bind(tenant.created_at.timestamp_millis())
        .bind(tenant.plan.as_deref())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_key_with(&mut *tx, key).await?;
        if let Some(owner) = owner {
            super::users::insert_user_with(&mut *tx, owner).await?;
        }
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

    async fn set_tenant_plan(&self, id: TenantId, plan: Option<&str>) -> Result<bool, StoreError> {
        let _lane = write_lane(self).await;
        let updated = sqlx::query("UPDATE tenants SET plan = $1 WHERE id = $2")
            .bind(plan)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated == 1)
    }
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let _lane = write_lane(self).await;
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
        let _lane = write_lane(self).await;
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
        let _lane = write_lane(self).await;
        sqlx::query("UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .bind(at.timestamp_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_agent_keys(
        &self,
        tenant: TenantId,
        agent: AgentId,
        after: Option<KeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND agent_id = $2 AND id > $3 \
             ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(agent.to_string())
            .bind(after.map(|id| id.to_string()).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn replace_key_secret(&self, key: &ApiKey, old_hash: &str) -> Result<bool, StoreError> {
        let _lane = write_lane(self).await;
        let updated = sqlx::query(
            "UPDATE api_keys SET prefix = $3, hash = $4, last_used_at = NULL \
             WHERE tenant_id = $1 AND id = $2 AND hash = $5",
        )
        .bind(key.tenant_id.to_string())
        .bind(key.id.to_string())
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(old_hash)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }
}
