// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Metering: gateway model calls, and usage added up over runs and calls.

/// Runs and gateway calls of one tenant in a time range, as one relation of
/// `(key_id, agent_id, model, prompt_tokens, completion_tokens)`; `$1` tenant, `$2`..`$3` the range.
const METERED: &str = "SELECT key_id, agent_id, model, input_tokens AS prompt_tokens, \
     output_tokens AS completion_tokens FROM runs \
     WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 \
     UNION ALL \
     SELECT key_id, NULL AS agent_id, model, prompt_tokens, completion_tokens FROM model_calls \
     WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3";

#[async_trait]
impl UsageStore for SqlStore {
    async fn insert_model_call(&self, call: &ModelCall) -> Result<(), StoreError> {
        let _lane = write_lane(self).await;
        sqlx::query(
            "INSERT INTO model_calls (tenant_id, id, key_id, model, endpoint, prompt_tokens, \
             completion_tokens, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(call.tenant_id.to_string())
        .bind(call.id.to_string())
        .bind(call.key_id.map(|id| id.to_string()))
        .bind(call.model.as_str())
        .bind(call.endpoint.as_str())
        .bind(db_integer(call.prompt_tokens))
        .bind(db_integer(call.completion_tokens))
        .bind(call.created_at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn usage_rows(
        &self,
        tenant: TenantId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UsageRow>, StoreError> {
        const TABLE: &str = "runs and model_calls";
        // PostgreSQL sums BIGINTs as NUMERIC: the casts bring the sums back to BIGINT on both backends.
        let sql = format!(
            "SELECT key_id, agent_id, model, COUNT(*) AS requests, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens \
             FROM ({METERED}) AS metered \
             GROUP BY key_id, agent_id, model ORDER BY key_id, agent_id, model"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id = |column: &str| -> Result<Option<String>, StoreError> {
                    Ok(row.try_get::<Option<String>, _>(column)?)
                };
                Ok(UsageRow {
                    key_id: id("key_id")?
                        .map(|raw| parse_column(TABLE, "key_id", &raw))
                        .transpose()?,
                    agent_id: id("agent_id")?
                        .map(|raw| parse_column(TABLE, "agent_id", &raw))
                        .transpose()?,
                    model: row.try_get("model")?,
                    requests: integer_column(TABLE, "requests", row.try_get("requests")?)?,
                    prompt_tokens: integer_column(
                        TABLE,
                        "prompt_tokens",
                        row.try_get("prompt_tokens")?,
                    )?,
                    completion_tokens: integer_column(
                        TABLE,
                        "completion_tokens",
                        row.try_get("completion_tokens")?,
                    )?,
                })
            })
            .collect()
    }

    async fn tokens_since(&self, tenant: TenantId, from: Timestamp) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) \
             FROM ({METERED}) AS metered"
        );
        let total: i64 = sqlx::query_scalar(&sql)
            .bind(tenant.to_string())
            .bind(from.timestamp_millis())
            .bind(i64::MAX)
            .fetch_one(&self.pool)
            .await?;
        integer_column("runs and model_calls", "tokens", total)
    }
}
