// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Runs and their event logs.

type DbQuery<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;

/// What `save_run` rewrites, bound as `$1`…`$17` by [`bind_mutable`].
const MUTABLE_COLUMNS: &str = "status, node, last_seq, content, model, error, iterations, \
     input_tokens, output_tokens, total_tokens, time_to_first_token, duration, messages, \
     pending_tools, request_tools, limits, updated_at";
/// What a run keeps from its insertion on, bound as `$18`…`$27` after the mutable columns.
const FIXED_COLUMNS: &str = "tenant_id, id, agent_id, agent_version, session_id, user_id, \
     parent_run_id, input, created_at, key_id";

/// The statuses of a run that has ended; stats count only these.
const FINISHED: &str = "('completed', 'error', 'cancelled')";

fn run_from_row(row: &DbRow) -> Result<Run, StoreError> {
    const TABLE: &str = "runs";
    Ok(Run {
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        agent_id: parse_column(TABLE, "agent_id", &row.try_get::<String, _>("agent_id")?)?,
        agent_version: integer_column(TABLE, "agent_version", row.try_get("agent_version")?)?,
        session_id: parse_column(
            TABLE,
            "session_id",
            &row.try_get::<String, _>("session_id")?,
        )?,
        user_id: row.try_get("user_id")?,
        key_id: row
            .try_get::<Option<String>, _>("key_id")?
            .map(|raw| parse_column(TABLE, "key_id", &raw))
            .transpose()?,
        parent_run_id: row
            .try_get::<Option<String>, _>("parent_run_id")?
            .map(|raw| parse_column(TABLE, "parent_run_id", &raw))
            .transpose()?,
        status: parse_column(TABLE, "status", &row.try_get::<String, _>("status")?)?,
        input: row.try_get("input")?,
        content: row.try_get("content")?,
        model: row.try_get("model")?,
        metrics: agentd_core::run::RunMetrics {
            input_tokens: integer_column(TABLE, "input_tokens", row.try_get("input_tokens")?)?,
            output_tokens: integer_column(TABLE, "output_tokens", row.try_get("output_tokens")?)?,
            total_tokens: integer_column(TABLE, "total_tokens", row.try_get("total_tokens")?)?,
            time_to_first_token: row.try_get("time_to_first_token")?,
            duration: row.try_get("duration")?,
        },
        error: row.try_get("error")?,
        messages: json_column(TABLE, "messages", &row.try_get::<String, _>("messages")?)?,
        pending_tools: json_column(
            TABLE,
            "pending_tools",
            &row.try_get::<String, _>("pending_tools")?,
        )?,
        request_tools: json_column(
            TABLE,
            "request_tools",
            &row.try_get::<String, _>("request_tools")?,
        )?,
        limits: json_column(TABLE, "limits", &row.try_get::<String, _>("limits")?)?,
        iterations: integer_column(TABLE, "iterations", row.try_get("iterations")?)?,
        last_seq: integer_column(TABLE, "last_seq", row.try_get("last_seq")?)?,
        node: row.try_get("node")?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        updated_at: time_from_millis(TABLE, row.try_get("updated_at")?)?,
    })
}

fn event_from_row(row: &DbRow) -> Result<RunEvent, StoreError> {
    const TABLE: &str = "run_events";
    Ok(RunEvent {
        run_id: parse_column(TABLE, "run_id", &row.try_get::<String, _>("run_id")?)?,
        seq: integer_column(TABLE, "seq", row.try_get("seq")?)?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        data: json_column(TABLE, "data", &row.try_get::<String, _>("data")?)?,
    })
}

/// Binds the values of [`MUTABLE_COLUMNS`], in order.
fn bind_mutable<'q>(query: DbQuery<'q>, run: &'q Run) -> DbQuery<'q> {
    query
        .bind(run.status.as_str())
        .bind(run.node.as_str())
        .bind(db_integer(run.last_seq))
        .bind(run.content.as_deref())
        .bind(run.model.as_str())
        .bind(run.error.as_deref())
        .bind(i64::from(run.iterations))
        .bind(db_integer(run.metrics.input_tokens))
        .bind(db_integer(run.metrics.output_tokens))
        .bind(db_integer(run.metrics.total_tokens))
        .bind(run.metrics.time_to_first_token)
        .bind(run.metrics.duration)
        .bind(to_json_text(&run.messages))
        .bind(to_json_text(&run.pending_tools))
        .bind(to_json_text(&run.request_tools))
        .bind(to_json_text(&run.limits))
        .bind(run.updated_at.timestamp_millis())
}

/// Events written by one `INSERT` at most (6 parameters each, well under either backend's limit).
const EVENTS_PER_STATEMENT: usize = 200;

/// Appends `events` to the log of `run` (their `run_id` is the run's own), many rows per statement:
/// a run's events are stored in batches, and one round trip per event was most of a batch's cost.
async fn insert_run_events(
    tx: &mut WriteTx,
    run: &Run,
    events: &[RunEvent],
) -> Result<(), StoreError> {
    let (tenant, run_id) = (run.tenant_id.to_string(), run.id.to_string());
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        let mut insert = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO run_events (tenant_id, run_id, seq, kind, data, created_at) ",
        );
        insert.push_values(chunk, |mut row, event| {
            row.push_bind(tenant.as_str())
                .push_bind(run_id.as_str())
                .push_bind(db_integer(event.seq))
                .push_bind(event.data.name())
                .push_bind(to_json_text(&event.data))
                .push_bind(event.created_at.timestamp_millis());
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Keeps the agent's `idle ⇄ busy` in step with its runs, inside the transaction that wrote one of
/// them: `busy` while any of its runs is pending or running, `idle` once none is. Any other status
/// (`paused`, `stopped`, `initializing`…) is the operator's and is left alone. A change is appended to
/// the agent's events, caused by the run's key (or `system`).
///
/// One statement decides and applies: it only touches a row whose status is the wrong one of the two.
/// On PostgreSQL a run another transaction commits while this statement runs can be missed, leaving
/// the agent `idle` during that run until its next save; the agent never stays `busy` with no runs.
async fn settle_agent_status(tx: &mut WriteTx, run: &Run) -> Result<bool, StoreError> {
    let settled: Option<String> = sqlx::query_scalar(
        "UPDATE agents SET status = CASE status WHEN 'idle' THEN 'busy' ELSE 'idle' END \
         WHERE tenant_id = $1 AND id = $2 AND status = CASE WHEN EXISTS (\
             SELECT 1 FROM runs WHERE tenant_id = $1 AND agent_id = $2 \
             AND status IN ('pending', 'running')) THEN 'idle' ELSE 'busy' END \
         RETURNING status",
    )
    .bind(run.tenant_id.to_string())
    .bind(run.agent_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(settled) = settled else {
        return Ok(false);
    };
    let to: AgentStatus = parse_column("agents", "status", &settled)?;
    let (from, action) = match to {
        AgentStatus::Busy => (AgentStatus::Idle, "run started"),
        _ => (AgentStatus::Busy, "no run running"),
    };
    let event = AgentEvent {
        id: EventId::new(),
        tenant_id: run.tenant_id,
        agent_id: run.agent_id,
        kind: agentd_core::agent::AgentEventKind::StatusChanged,
        action: action.to_owned(),
        from_status: Some(from),
        to_status: Some(to),
        actor: run.key_id.map_or_else(
            || agentd_core::audit::SYSTEM.to_owned(),
            |key| format!("key:{key}"),
        ),
        detail: serde_json::json!({"run_id": run.id.to_string(), "run_status": run.status.as_str()}),
        created_at: run.updated_at,
    };
    super::agents::insert_events(tx, std::slice::from_ref(&event)).await?;
    Ok(true)
}

/// Adds a run that has just finished to its agent's totals (what `agent_run_stats` reads).
async fn count_finished_run(tx: &mut WriteTx, run: &Run) -> Result<(), StoreError> {
    let (completed, errored, cancelled) = match run.status {
        RunStatus::Completed => (1_i64, 0_i64, 0_i64),
        RunStatus::Error => (0, 1, 0),
        RunStatus::Cancelled => (0, 0, 1),
        _ => return Ok(()),
    };
    sqlx::query(
        "INSERT INTO agent_run_totals (tenant_id, agent_id, completed, errored, cancelled, \
         duration, input_tokens, output_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, agent_id) DO UPDATE SET \
         completed = agent_run_totals.completed + excluded.completed, \
         errored = agent_run_totals.errored + excluded.errored, \
         cancelled = agent_run_totals.cancelled + excluded.cancelled, \
         duration = agent_run_totals.duration + excluded.duration, \
         input_tokens = agent_run_totals.input_tokens + excluded.input_tokens, \
         output_tokens = agent_run_totals.output_tokens + excluded.output_tokens",
    )
    .bind(run.tenant_id.to_string())
    .bind(run.agent_id.to_string())
    .bind(completed)
    .bind(errored)
    .bind(cancelled)
    .bind(run.metrics.duration)
    .bind(db_integer(run.metrics.input_tokens))
    .bind(db_integer(run.metrics.output_tokens))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn select_runs() -> String {
    format!("SELECT {MUTABLE_COLUMNS}, {FIXED_COLUMNS} FROM runs")
}

#[async_trait]
impl RunStore for SqlStore {
    async fn insert_run(&self, run: &Run, events: &[RunEvent]) -> Result<(), StoreError> {
        let placeholders = (1..=27)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO runs ({MUTABLE_COLUMNS}, {FIXED_COLUMNS}) VALUES ({placeholders})"
        );
        let mut tx = begin_write(self).await?;
        bind_mutable(sqlx::query(&sql), run)
            .bind(run.tenant_id.to_string())
            .bind(run.id.to_string())
            .bind(run.agent_id.to_string())
            .bind(i64::from(run.agent_version))
            .bind(run.session_id.as_str())
            .bind(run.user_id.as_deref())
            .bind(run.parent_run_id.map(|id| id.to_string()))
            .bind(run.input.as_str())
            .bind(run.created_at.timestamp_millis())
            .bind(run.key_id.map(|id| id.to_string()))
            .execute(&mut *tx)
            .await?;
        insert_run_events(&mut tx, run, events).await?;
        let settled = settle_agent_status(&mut tx, run).await?;
        // Last before the commit: every run of the agent updates this one row.
        count_finished_run(&mut tx, run).await?;
        tx.commit().await?;
        if settled || run.status.is_terminal() {
            self.agents.drop_agent(run.tenant_id, run.agent_id);
        }
        Ok(())
    }

    async fn get_run(&self, tenant: TenantId, id: RunId) -> Result<Option<Run>, StoreError> {
        let sql = format!("{} WHERE tenant_id = $1 AND id = $2", select_runs());
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn save_run(
        &self,
        run: &Run,
        expected_last_seq: u64,
        events: &[RunEvent],
    ) -> Result<Update, StoreError> {
        let mut tx = begin_write(self).await?;
        // Whether this save finishes the run, so it is counted in the agent's totals once.
        let finishes = run.status.is_terminal()
            && sqlx::query_scalar::<_, String>(
                "SELECT status FROM runs WHERE tenant_id = $1 AND id = $2",
            )
            .bind(run.tenant_id.to_string())
            .bind(run.id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .is_some_and(|stored| {
                stored
                    .parse::<RunStatus>()
                    .is_ok_and(|stored| !stored.is_terminal())
            });
        let updated = bind_mutable(
            sqlx::query(
                "UPDATE runs SET status = $1, node = $2, last_seq = $3, content = $4, model = $5, \
                 error = $6, iterations = $7, input_tokens = $8, output_tokens = $9, \
                 total_tokens = $10, time_to_first_token = $11, duration = $12, messages = $13, \
                 pending_tools = $14, request_tools = $15, limits = $16, updated_at = $17 \
                 WHERE tenant_id = $18 AND id = $19 AND last_seq = $20",
            ),
            run,
        )
        .bind(run.tenant_id.to_string())
        .bind(run.id.to_string())
        .bind(db_integer(expected_last_seq))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM runs WHERE tenant_id = $1 AND id = $2")
                    .bind(run.tenant_id.to_string())
                    .bind(run.id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
            return Ok(match status {
                Some(status) => Update::Stale(status),
                None => Update::Missing,
            });
        }
        insert_run_events(&mut tx, run, events).await?;
        let settled = settle_agent_status(&mut tx, run).await?;
        if finishes {
            // Last before the commit: every run of the agent updates this one row.
            count_finished_run(&mut tx, run).await?;
        }
        tx.commit().await?;
        if settled || finishes {
            self.agents.drop_agent(run.tenant_id, run.agent_id);
        }
        Ok(Update::Applied)
    }

    async fn list_runs(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: u32,
    ) -> Result<Vec<Run>, StoreError> {
        let mut sql = format!("{} WHERE tenant_id = $1 AND id > $2", select_runs());
        let mut values: Vec<String> = Vec::new();
        let mut condition = |template: &str, value: String| {
            values.push(value);
            sql.push_str(&template.replace("$?", &format!("${}", values.len() + 2)));
        };
        if let Some(agent) = filter.agent_id {
            condition(" AND agent_id = $?", agent.to_string());
        }
        if let Some(session) = &filter.session_id {
            condition(" AND session_id = $?", session.as_str().to_owned());
        }
        if let Some(status) = filter.status {
            condition(" AND status = $?", status.as_str().to_owned());
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
        let mut query = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(after.map(|id| id.to_string()).unwrap_or_default());
        for value in &values {
            query = query.bind(value.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn session_history(
        &self,
        tenant: TenantId,
        session: &SessionId,
        limit: u32,
    ) -> Result<Vec<Run>, StoreError> {
        let sql = format!(
            "{} WHERE tenant_id = $1 AND session_id = $2 AND status = 'completed' \
             ORDER BY id DESC LIMIT {limit}",
            select_runs()
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(session.as_str())
            .fetch_all(&self.pool)
            .await?;
        // Read newest first to find the last `limit`; handed back oldest first.
        rows.iter().rev().map(run_from_row).collect()
    }

    async fn list_run_events(
        &self,
        tenant: TenantId,
        run: RunId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<RunEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, seq, data, created_at FROM run_events \
             WHERE tenant_id = $1 AND run_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(tenant.to_string())
        .bind(run.to_string())
        .bind(db_integer(after_seq))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn list_unfinished_runs(&self, node: &str) -> Result<Vec<(TenantId, RunId)>, StoreError> {
        // Across tenants on purpose: a restarting node ends its own runs wherever they are.
        let rows = sqlx::query(
            "SELECT tenant_id, id FROM runs WHERE node = $1 AND status IN ('pending', 'running') \
             ORDER BY tenant_id, id",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_column("runs", "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
                    parse_column("runs", "id", &row.try_get::<String, _>("id")?)?,
                ))
            })
            .collect()
    }

    async fn tenant_usage(&self, tenant: TenantId) -> Result<Vec<AgentUsage>, StoreError> {
        const TABLE: &str = "runs";
        let sql = format!(
            "SELECT agent_id, COUNT(*) AS runs, \
             CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(output_tokens) AS BIGINT) AS output_tokens \
             FROM runs WHERE tenant_id = $1 AND status IN {FINISHED} \
             GROUP BY agent_id ORDER BY agent_id"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AgentUsage {
                    agent_id: parse_column(
                        TABLE,
                        "agent_id",
                        &row.try_get::<String, _>("agent_id")?,
                    )?,
                    runs: integer_column(TABLE, "runs", row.try_get("runs")?)?,
                    input_tokens: integer_column(
                        TABLE,
                        "input_tokens",
                        row.try_get("input_tokens")?,
                    )?,
                    output_tokens: integer_column(
                        TABLE,
                        "output_tokens",
                        row.try_get("output_tokens")?,
                    )?,
                })
            })
            .collect()
    }

    async fn agent_run_stats(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<RunStats, StoreError> {
        const TABLE: &str = "agent_run_totals";
        let epoch = self.agents.epoch();
        if let Some(stats) = self.agents.stats(tenant, agent) {
            return Ok(stats);
        }
        let row = sqlx::query(
            "SELECT completed, errored, cancelled, duration, input_tokens, output_tokens \
             FROM agent_run_totals WHERE tenant_id = $1 AND agent_id = $2",
        )
        .bind(tenant.to_string())
        .bind(agent.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            self.agents
                .fill_stats(epoch, tenant, agent, &RunStats::default());
            return Ok(RunStats::default());
        };
        let count = |column: &str| -> Result<u64, StoreError> {
            integer_column(TABLE, column, row.try_get(column)?)
        };
        let mut stats = RunStats {
            completed: count("completed")?,
            errored: count("errored")?,
            cancelled: count("cancelled")?,
            input_tokens: count("input_tokens")?,
            output_tokens: count("output_tokens")?,
            ..RunStats::default()
        };
        stats.total = stats.completed + stats.errored + stats.cancelled;
        if stats.total > 0 {
            stats.average_duration = row.try_get::<f64, _>("duration")? / stats.total as f64;
        }
        self.agents.fill_stats(epoch, tenant, agent, &stats);
        Ok(stats)
    }
}
