//! The `registry` benchmark: creates agents, then measures get, list with a filter, and patch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::common::{start, BackendChoice, Measured, Server};

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
    /// The PostgreSQL server for the postgres run (each run uses a new tenant in it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
}

/// Sends `count` requests built by `request`, `concurrency` at a time; every answer must be `expected`.
async fn measure<F>(
    server: &Server,
    count: usize,
    concurrency: usize,
    expected: u16,
    request: F,
) -> anyhow::Result<(Measured, Vec<Value>)>
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Duration, Value)>> = stream::iter(0..count)
        .map(|n| {
            let request = request.clone();
            async move {
                let sent = Instant::now();
                let response = request(n).bearer_auth(&server.key).send().await?;
                let status = response.status().as_u16();
                let body = response.bytes().await?;
                let elapsed = sent.elapsed();
                if status != expected {
                    bail!(
                        "expected {expected}, got {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                let value = if body.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&body)?
                };
                Ok((elapsed, value))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let mut latencies = Vec::with_capacity(count);
    let mut bodies = Vec::with_capacity(count);
    for result in results {
        let (latency, body) = result?;
        latencies.push(latency);
        bodies.push(body);
    }
    Ok((Measured { latencies, wall }, bodies))
}

pub async fn registry(args: &RegistryArgs, backend: &str) -> anyhow::Result<()> {
    let server = start(backend, &args.database_url).await?;
    let agents_url = format!("{}/agents", server.base);
    let tags = [
        "red", "green", "blue", "cyan", "magenta", "yellow", "black", "white", "grey", "pink",
    ];

    let (created, bodies) = measure(&server, args.agents, args.concurrency, 201, |n| {
        server.client.post(&agents_url).json(&json!({
            "name": format!("agent-{n:06}"),
            "model": "openai/gpt-4o-mini",
            "instructions": "Benchmark agent.",
            "tags": [tags[n % tags.len()]],
            "skills": ["bench"],
        }))
    })
    .await?;
    created.report(
        "registry",
        backend,
        "create",
        json!({"agents": args.agents}),
    );
    let ids: Vec<String> = bodies
        .iter()
        .filter_map(|body| body["id"].as_str().map(str::to_owned))
        .collect();
    let pick = |n: usize| &ids[(n.wrapping_mul(2_654_435_761)) % ids.len()];

    let (got, _) = measure(&server, args.ops, args.concurrency, 200, |n| {
        server.client.get(format!("{agents_url}/{}", pick(n)))
    })
    .await?;
    got.report("registry", backend, "get", json!({"agents": ids.len()}));

    let (listed, pages) = measure(&server, args.ops, args.concurrency, 200, |n| {
        server.client.get(format!(
            "{agents_url}?tag={}&status=idle&limit=20",
            tags[n % tags.len()]
        ))
    })
    .await?;
    if pages
        .iter()
        .any(|page| page["data"].as_array().is_none_or(|data| data.is_empty()))
    {
        bail!("a filtered list came back empty");
    }
    listed.report(
        "registry",
        backend,
        "list_with_filter",
        json!({"agents": ids.len(), "page": 20}),
    );

    let (patched, _) = measure(&server, args.ops, args.concurrency, 200, |n| {
        server
            .client
            .patch(format!("{agents_url}/{}", pick(n)))
            .json(&json!({"description": format!("revision {n}")}))
    })
    .await?;
    patched.report("registry", backend, "patch", json!({"agents": ids.len()}));
    Ok(())
}
