// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// The audit log: one hash chain per tenant, `audit_log` rows plus each chain's head in
// `audit_chains`. The chain is computed here, inside the appending transaction, after the backend's
// `lock_audit_chain` has made this transaction the chain's only writer.

use agentd_core::audit::{AuditEntry, AuditOutcome, AuditRecord, GENESIS_HASH};
use agentd_core::AuditId;

use crate::{AuditFilter, AuditStore};

const AUDIT_COLUMNS: &str =
    "tenant_id, seq, id, actor, action, target, agent_id, status, outcome, \
     client_addr, request_id, created_at, prev_hash, hash";

/// Rows per multi-row INSERT (14 parameters each, well under both backends' limits).
const INSERT_CHUNK: usize = 200;

fn audit_from_row(row: &DbRow) -> Result<AuditEntry, StoreError> {
    const TABLE: &str = "audit_log";
    let id: String = row.try_get("id")?;
    let agent_id: Option<String> = row.try_get("agent_id")?;
    let outcome: String = row.try_get("outcome")?;
    let record = AuditRecord {
        id: parse_column::<AuditId>(TABLE, "id", &id)?,
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        agent_id: agent_id
            .map(|raw| parse_column(TABLE, "agent_id", &raw))
            .transpose()?,
        status: integer_column(TABLE, "status", row.try_get::<i64, _>("status")?)?,
        outcome: parse_column::<AuditOutcome>(TABLE, "outcome", &outcome)?,
        client_addr: row.try_get("client_addr")?,
        request_id: row.try_get("request_id")?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
    };
    Ok(AuditEntry {
        record,
        seq: integer_column(TABLE, "seq", row.try_get::<i64, _>("seq")?)?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// A value bound to a dynamically built statement.
enum AuditBind {
    Text(String),
    Integer(i64),
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, records: &[AuditRecord]) -> Result<Vec<AuditEntry>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // Chains are locked in tenant order, so two nodes appending to the same chains cannot deadlock.
        let mut tenants: Vec<TenantId> = records.iter().map(|record| record.tenant_id).collect();
        tenants.sort();
        tenants.dedup();
        let mut tx = begin_write(self).await?;
        let mut appended = Vec::with_capacity(records.len());
        for tenant in tenants {
            super::lock_audit_chain(&mut tx, tenant).await?;
            // The chain's head row; on SQLite this first write also takes the database's write lock
            // for the whole transaction.
            sqlx::query(
                "INSERT INTO audit_chains (tenant_id, last_seq, last_hash) VALUES ($1, 0, $2) \
                 ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(tenant.to_string())
            .bind(GENESIS_HASH)
            .execute(&mut *tx)
            .await?;
            let head =
                sqlx::query("SELECT last_seq, last_hash FROM audit_chains WHERE tenant_id = $1")
                    .bind(tenant.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
            let mut seq: u64 = integer_column(
                "audit_chains",
                "last_seq",
                head.try_get::<i64, _>("last_seq")?,
            )?;
            let mut prev_hash: String = head.try_get("last_hash")?;
            let mut chained = Vec::new();
            for record in records.iter().filter(|record| record.tenant_id == tenant) {
                seq += 1;
                let entry = AuditEntry::chain(record.clone(), seq, prev_hash);
                prev_hash = entry.hash.clone();
                chained.push(entry);
            }
            for chunk in chained.chunks(INSERT_CHUNK) {
                let mut insert = sqlx::QueryBuilder::<Db>::new(format!(
                    "INSERT INTO audit_log ({AUDIT_COLUMNS}) "
                ));
                insert.push_values(chunk, |mut row, entry| {
                    let record = &entry.record;
                    row.push_bind(record.tenant_id.to_string())
                        .push_bind(db_integer(entry.seq))
                        .push_bind(record.id.to_string())
                        .push_bind(record.actor.clone())
                        .push_bind(record.action.clone())
                        .push_bind(record.target.clone())
                        .push_bind(record.agent_id.map(|id| id.to_string()))
                        .push_bind(i64::from(record.status))
                        .push_bind(record.outcome.as_str())
                        .push_bind(record.client_addr.clone())
                        .push_bind(record.request_id.clone())
                        .push_bind(record.created_at.timestamp_millis())
                        .push_bind(entry.prev_hash.clone())
                        .push_bind(entry.hash.clone());
                });
                insert.build().execute(&mut *tx).await?;
            }
            sqlx::query(
                "UPDATE audit_chains SET last_seq = $2, last_hash = $3 WHERE tenant_id = $1",
            )
            .bind(tenant.to_string())
            .bind(db_integer(seq))
            .bind(&prev_hash)
            .execute(&mut *tx)
            .await?;
            appended.extend(chained);
        }
        tx.commit().await?;
        Ok(appended)
    }

    async fn list_audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tenant_id = $1");
        let mut binds: Vec<AuditBind> = Vec::new();
        let mut condition = |sql: &mut String, template: &str, value: AuditBind| {
            binds.push(value);
            sql.push_str(&template.replace("$?", &format!("${}", binds.len() + 1)));
        };
        if let Some(before) = before {
            condition(
                &mut sql,
                " AND seq < $?",
                AuditBind::Integer(db_integer(before)),
            );
        }
        if let Some(actor) = &filter.actor {
            condition(&mut sql, " AND actor = $?", AuditBind::Text(actor.clone()));
        }
        if let Some(action) = &filter.action {
            condition(
                &mut sql,
                " AND action = $?",
                AuditBind::Text(action.clone()),
            );
        }
        if let Some(prefix) = &filter.target_prefix {
            // Characters, not bytes: `substr` and `length` count characters on both backends.
            let length = prefix.chars().count();
            condition(
                &mut sql,
                &format!(" AND substr(target, 1, {length}) = $?"),
                AuditBind::Text(prefix.clone()),
            );
        }
        if let Some(agent) = filter.agent_id {
            condition(
                &mut sql,
                " AND agent_id = $?",
                AuditBind::Text(agent.to_string()),
            );
        }
        if let Some(outcome) = filter.outcome {
            condition(
                &mut sql,
                " AND outcome = $?",
                AuditBind::Text(outcome.as_str().to_owned()),
            );
        }
        if let Some(from) = filter.from {
            condition(
                &mut sql,
                " AND created_at >= $?",
                AuditBind::Integer(from.timestamp_millis()),
            );
        }
        if let Some(to) = filter.to {
            condition(
                &mut sql,
                " AND created_at < $?",
                AuditBind::Integer(to.timestamp_millis()),
            );
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
        let mut query = sqlx::query(&sql).bind(tenant.to_string());
        for value in binds {
            query = match value {
                AuditBind::Text(text) => query.bind(text),
                AuditBind::Integer(number) => query.bind(number),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_chain(
        &self,
        tenant: TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tenant_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(db_integer(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_chains(&self) -> Result<Vec<(TenantId, Option<(u64, String)>)>, StoreError> {
        const TABLE: &str = "audit_chains";
        // Chains with a head, and (should a head row have been deleted) chains with entries only.
        let rows = sqlx::query(
            "SELECT tenant_id, last_seq, last_hash FROM audit_chains \
             UNION ALL \
             SELECT DISTINCT tenant_id, CAST(NULL AS BIGINT), CAST(NULL AS TEXT) FROM audit_log \
             WHERE tenant_id NOT IN (SELECT tenant_id FROM audit_chains) \
             ORDER BY tenant_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let tenant =
                    parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?;
                let seq: Option<i64> = row.try_get("last_seq")?;
                let hash: Option<String> = row.try_get("last_hash")?;
                let head = match (seq, hash) {
                    (Some(seq), Some(hash)) => {
                        Some((integer_column(TABLE, "last_seq", seq)?, hash))
                    }
                    _ => None,
                };
                Ok((tenant, head))
            })
            .collect()
    }
}
