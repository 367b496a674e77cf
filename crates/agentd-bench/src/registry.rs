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
    /// Agents `get_hot` reads over and over (the few an application keeps asking for).
    #[arg(long, default_value_t = 1_000)]
    hot: usize,
    /// Agents created one at a time while the last phase lists every agent page by page.
    #[arg(long, default_value_t = 2_000)]
    late: usize,
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

    let hot = args.hot.clamp(1, ids.len());
    let (got_hot, _) = measure(
        &server,
        args.ops,
        args.concurrency,
        200,
        |n| server.client.get(format!("{agents_url}/{}", ids[n % hot])),
        no_body,
    )
    .await?;
    got_hot.report(
        "registry",
        backend,
        "get_hot",
        json!({"agents": ids.len(), "hot": hot}),
    );

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
        // An empty page is `[]`; anything else has agents.
        |body| match body == b"[]" {
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

    page_through(&server, &agents_url, &ids, args.late, backend).await
}

/// Lists every agent page by page (500 a page) while `late` more are created alongside, and checks
/// that each agent that existed before is visited exactly once and no agent twice; the figures are
/// one more JSON line (`op: page_through`), and a miss or a repeat fails the benchmark.
async fn page_through(
    server: &crate::common::Server,
    agents_url: &str,
    ids: &[String],
    late: usize,
    backend: &str,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (client, url, key) = (
            server.client.clone(),
            agents_url.to_owned(),
            server.key.clone(),
        );
        let written = written.clone();
        tokio::spawn(async move {
            for n in 0..late {
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"name": format!("late-{n:06}")}))
                    .send()
                    .await?;
                if response.status() != 201 {
                    bail!("creating a late agent answered {}", response.status());
                }
                written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };
    let mut seen = std::collections::HashMap::<String, u32>::with_capacity(ids.len() + late);
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{agents_url}?limit=500");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let response = server
            .client
            .get(&url)
            .bearer_auth(&server.key)
            .send()
            .await?
            .error_for_status()?;
        let next = response
            .headers()
            .get("x-next-cursor")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let page: Value = response.json().await?;
        pages += 1;
        for agent in page.as_array().into_iter().flatten() {
            let id = agent["id"].as_str().unwrap_or_default().to_owned();
            *seen.entry(id).or_default() += 1;
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let created_while_paging = written.load(std::sync::atomic::Ordering::Relaxed);
    writer.await??;
    let repeated = seen.values().filter(|&&count| count > 1).count();
    let missing = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    let line = json!({
        "bench": "registry",
        "backend": backend,
        "op": "page_through",
        "agents": ids.len(),
        "late_agents": late,
        "late_visited": seen.len().saturating_sub(ids.len() - missing),
        "late_created_while_paging": created_while_paging,
        "pages": pages,
        "visited": seen.len(),
        "repeated": repeated,
        "missing": missing,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    });
    println!("{line}");
    eprintln!(
        "registry {backend} page_through: {} agents in {pages} pages ({created_while_paging} created meanwhile), {repeated} repeated, {missing} missing, {seconds:.2} s",
        seen.len()
    );
    if repeated > 0 || missing > 0 {
        bail!("paging visited {repeated} agents twice and missed {missing}");
    }
    Ok(())
}
