//! The `registry` benchmark: creates agents, then measures get, list with a filter, and patch.

use anyhow::bail;
use serde_json::{json, Value};

use crate::common::{measure, no_body, start, BackendChoice, Database};

#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Agents to create first.
    #[arg(long, default_value_t = 100_000)]
    agents: usize,
    /// Measured get, list and patch requests each.
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Which database(s) to run on.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    pub backend: BackendChoice,
    /// The PostgreSQL server for the postgres run (each run uses a new schema in it, dropped after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
}

/// Runs the benchmark on one backend (on PostgreSQL in a schema of its own, dropped after).
pub async fn registry(args: &RegistryArgs, backend: &str) -> anyhow::Result<()> {
    let database = Database::create(backend, &args.database_url).await?;
    let result = run(args, backend, &database.url).await;
    database.drop_schema().await;
    result
}

async fn run(args: &RegistryArgs, backend: &str, database_url: &str) -> anyhow::Result<()> {
    let server = start(backend, database_url).await?;
    let agents_url = format!("{}/agents", server.base);
    let tags = [
        "red", "green", "blue", "cyan", "magenta", "yellow", "black", "white", "grey", "pink",
    ];

    let (created, ids) = measure(
        &server,
        args.agents,
        args.concurrency,
        201,
        |n| {
            server.client.post(&agents_url).json(&json!({
                "name": format!("agent-{n:06}"),
                "model": "openai/gpt-4o-mini",
                "instructions": "Benchmark agent.",
                "tags": [tags[n % tags.len()]],
                "skills": ["bench"],
            }))
        },
        |body| {
            let agent: Value = serde_json::from_slice(body)?;
            agent["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("a created agent has no id: {agent}"))
        },
    )
    .await?;
    created.report(
        "registry",
        backend,
        "create",
        json!({"agents": args.agents}),
    );
    let pick = |n: usize| &ids[(n.wrapping_mul(2_654_435_761)) % ids.len()];

    let (got, _) = measure(
        &server,
        args.ops,
        args.concurrency,
        200,
        |n| server.client.get(format!("{agents_url}/{}", pick(n))),
        no_body,
    )
    .await?;
    got.report("registry", backend, "get", json!({"agents": ids.len()}));

    let (listed, _) = measure(
        &server,
        args.ops,
        args.concurrency,
        200,
        |n| {
            server.client.get(format!(
                "{agents_url}?tag={}&status=idle&limit=20",
                tags[n % tags.len()]
            ))
        },
        // An empty page has `"data":[]`; anything else has agents.
        |body| match body.windows(9).any(|window| window == b"\"data\":[]") {
            true => bail!("a filtered list came back empty"),
            false => Ok(()),
        },
    )
    .await?;
    listed.report(
        "registry",
        backend,
        "list_with_filter",
        json!({"agents": ids.len(), "page": 20}),
    );

    let (patched, _) = measure(
        &server,
        args.ops,
        args.concurrency,
        200,
        |n| {
            server
                .client
                .patch(format!("{agents_url}/{}", pick(n)))
                .json(&json!({"description": format!("revision {n}")}))
        },
        no_body,
    )
    .await?;
    patched.report("registry", backend, "patch", json!({"agents": ids.len()}));
    Ok(())
}
