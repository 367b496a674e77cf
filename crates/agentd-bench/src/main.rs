//! `agentd-bench`: load tests against a real agentd server started in this process on a fresh SQLite
//! file or on PostgreSQL, over HTTP on loopback. Each measured operation prints one JSON line
//! (`{"bench":"registry","backend":…,"op":…,"count":…,"rps":…,"p50_ms":…,"p99_ms":…}`), so a script can
//! read the figures; the human summary goes to standard error.
//!
//! ```sh
//! cargo run --release -p agentd-bench -- registry --agents 100000
//! cargo run --release -p agentd-bench -- registry --backend postgres --database-url postgres://postgres@127.0.0.1:5432/test
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentd_core::{KeyName, NewApiKey, Scope, ScopeSet, Tenant, TenantSlug};
use agentd_runtime::{Config, Runtime};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use futures::stream::{self, StreamExt};
use rand::Rng;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "agentd-bench", about = "Benchmarks for agentd")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The registry: create, get, list with a filter, and patch agents.
    Registry(RegistryArgs),
}

#[derive(clap::Args)]
struct RegistryArgs {
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
    backend: BackendChoice,
    /// The PostgreSQL server for the postgres run (each run uses a new tenant in it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Bench::Registry(args) = cli.bench;
    let mut backends = Vec::new();
    if args.backend != BackendChoice::Postgres {
        backends.push("sqlite");
    }
    if args.backend != BackendChoice::Sqlite {
        backends.push("postgres");
    }
    for backend in backends {
        registry(&args, backend)
            .await
            .with_context(|| format!("registry benchmark on {backend}"))?;
    }
    Ok(())
}

/// A server running in this process, with the admin key of a tenant made for this run.
struct Server {
    base: String,
    key: String,
    client: reqwest::Client,
    _data: tempfile::TempDir,
}

async fn start(backend: &str, database_url: &str) -> anyhow::Result<Server> {
    let data = tempfile::tempdir()?;
    let database_url = match backend {
        "sqlite" => format!("sqlite://{}", data.path().join("agentd.db").display()),
        _ => database_url.to_owned(),
    };
    let config = Config {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: data.path().to_path_buf(),
        database_url: Some(database_url),
        ..Config::default()
    };
    let started = Runtime::start(config).await?;
    let runtime = started.runtime;

    // A tenant of its own, so earlier runs on the same PostgreSQL database do not skew the figures.
    let slug = format!("bench-{}", rand::thread_rng().gen::<u32>());
    let tenant = Tenant::new(TenantSlug::parse(&slug)?, slug.clone());
    let (key, plain) = NewApiKey {
        name: KeyName::parse("bench")?,
        scopes: ScopeSet::new([Scope::admin()]),
        expires_at: None,
    }
    .issue(tenant.id);
    if !runtime.store.create_tenant_with_key(&tenant, &key).await? {
        bail!("tenant {slug} exists");
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = agentd_server::router(agentd_server::AppState::new(runtime));
    tokio::spawn(agentd_server::serve(
        listener,
        app,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    Ok(Server {
        base: format!("http://{address}"),
        key: plain.reveal().to_owned(),
        client,
        _data: data,
    })
}

/// Latencies of one operation, and the wall time they took together.
struct Measured {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Measured {
    fn report(mut self, backend: &str, op: &str, extra: Value) {
        self.latencies.sort();
        let count = self.latencies.len();
        let percentile = |p: f64| {
            let index = ((count as f64 * p).ceil() as usize).clamp(1, count) - 1;
            self.latencies[index].as_secs_f64() * 1000.0
        };
        let rps = count as f64 / self.wall.as_secs_f64();
        let mut line = json!({
            "bench": "registry",
            "backend": backend,
            "op": op,
            "count": count,
            "seconds": (self.wall.as_secs_f64() * 1000.0).round() / 1000.0,
            "rps": rps.round(),
            "p50_ms": (percentile(0.50) * 1000.0).round() / 1000.0,
            "p99_ms": (percentile(0.99) * 1000.0).round() / 1000.0,
        });
        if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
            line.extend(extra.clone());
        }
        println!("{line}");
        eprintln!(
            "{backend:>8} {op:<18} {count:>7} req  {rps:>8.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
            percentile(0.50),
            percentile(0.99)
        );
    }
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

async fn registry(args: &RegistryArgs, backend: &str) -> anyhow::Result<()> {
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
    created.report(backend, "create", json!({"agents": args.agents}));
    let ids: Vec<String> = bodies
        .iter()
        .filter_map(|body| body["id"].as_str().map(str::to_owned))
        .collect();
    let pick = |n: usize| &ids[(n.wrapping_mul(2_654_435_761)) % ids.len()];

    let (got, _) = measure(&server, args.ops, args.concurrency, 200, |n| {
        server.client.get(format!("{agents_url}/{}", pick(n)))
    })
    .await?;
    got.report(backend, "get", json!({"agents": ids.len()}));

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
    patched.report(backend, "patch", json!({"agents": ids.len()}));
    Ok(())
}
