//! What the benchmarks share: the choice of backend, a server started in this process, and the report
//! of one measured operation as a JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentd_core::{KeyName, NewApiKey, Scope, ScopeSet, Tenant, TenantSlug};
use agentd_runtime::{Config, Runtime};
use anyhow::bail;
use axum::serve::ListenerExt;
use clap::ValueEnum;
use futures::stream::{self, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use sqlx::{Connection, Executor};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

impl BackendChoice {
    /// The backends to run on, SQLite first.
    pub fn backends(self) -> Vec<&'static str> {
        let mut backends = Vec::new();
        if self != BackendChoice::Postgres {
            backends.push("sqlite");
        }
        if self != BackendChoice::Sqlite {
            backends.push("postgres");
        }
        backends
    }
}

/// Where a backend's server keeps its data: for PostgreSQL a new schema, so each run starts with
/// empty tables and never migrates the database's `public` schema; SQLite gets a fresh file from
/// `start_with` (`url` is unused).
pub struct Database {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl Database {
    pub async fn create(backend: &str, database_url: &str) -> anyhow::Result<Database> {
        if backend != "postgres" {
            return Ok(Database {
                url: String::new(),
                postgres: None,
            });
        }
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let schema = format!(
            "agentd_bench_{seconds}_{:08x}",
            rand::thread_rng().gen::<u32>()
        );
        let mut connection = sqlx::PgConnection::connect(database_url).await?;
        connection
            .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
            .await?;
        let _ = connection.close().await;
        let separator = if database_url.contains('?') { '&' } else { '?' };
        Ok(Database {
            url: format!("{database_url}{separator}options=-c%20search_path%3D{schema}"),
            postgres: Some((database_url.to_owned(), schema)),
        })
    }

    pub async fn drop_schema(self) {
        let Some((database_url, schema)) = self.postgres else {
            return;
        };
        let dropped = async {
            let mut connection = sqlx::PgConnection::connect(&database_url).await?;
            connection
                .execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
                .await?;
            connection.close().await
        }
        .await;
        if let Err(error) = dropped {
            eprintln!("note: could not drop schema {schema}: {error}");
        }
    }
}

/// A server running in this process, with the admin key of a tenant made for this run.
pub struct Server {
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
    pub runtime: Runtime,
    _data: tempfile::TempDir,
}

/// Starts a server with the default configuration.
pub async fn start(backend: &str, database_url: &str) -> anyhow::Result<Server> {
    start_with(backend, database_url, Config::default(), false).await
}

/// Starts a server on a fresh SQLite file (in a temporary directory) or on `database_url`, with `base`
/// for everything but the listen address, data directory and database URL. The server is
/// `agentd_server::serve`, or with `nodelay` axum's own `serve` with `TCP_NODELAY` set on every
/// accepted connection (which `agentd_server::serve` does not do), to see what that changes.
pub async fn start_with(
    backend: &str,
    database_url: &str,
    base: Config,
    nodelay: bool,
) -> anyhow::Result<Server> {
    let data = tempfile::tempdir()?;
    let database_url = match backend {
        "sqlite" => format!("sqlite://{}", data.path().join("agentd.db").display()),
        _ => database_url.to_owned(),
    };
    let config = Config {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: data.path().to_path_buf(),
        database_url: Some(database_url),
        ..base
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
    let app = agentd_server::router(agentd_server::AppState::new(runtime.clone()));
    if nodelay {
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
    } else {
        tokio::spawn(agentd_server::serve(
            listener,
            app,
            std::future::pending(),
            Duration::from_secs(1),
        ));
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    Ok(Server {
        base: format!("http://{address}"),
        key: plain.reveal().to_owned(),
        client,
        runtime,
        _data: data,
    })
}

/// Latencies of one operation, and the wall time they took together.
pub struct Measured {
    pub latencies: Vec<Duration>,
    pub wall: Duration,
}

/// Milliseconds rounded to microseconds, for the JSON lines.
pub fn ms(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

impl Measured {
    /// The `p` quantile (0 to 1) of the latencies, in milliseconds. Sorts them first.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        let count = self.latencies.len();
        if count == 0 {
            return 0.0;
        }
        let index = ((count as f64 * p).ceil() as usize).clamp(1, count) - 1;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    /// Prints the JSON line (`"bench": bench`, with `extra`'s fields added) and the human summary.
    pub fn report(mut self, bench: &str, backend: &str, op: &str, extra: Value) {
        let count = self.latencies.len();
        let p50 = self.percentile_ms(0.50);
        let p99 = self.percentile_ms(0.99);
        let rps = count as f64 / self.wall.as_secs_f64();
        let mut line = json!({
            "bench": bench,
            "backend": backend,
            "op": op,
            "count": count,
            "seconds": ms(self.wall.as_secs_f64()),
            "rps": rps.round(),
            "p50_ms": ms(p50),
            "p99_ms": ms(p99),
        });
        if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
            line.extend(extra.clone());
        }
        println!("{line}");
        eprintln!(
            "{backend:>8} {op:<18} {count:>7} req  {rps:>8.0} req/s  p50 {p50:>7.3} ms  p99 {p99:>7.3} ms",
        );
    }
}

/// Sends `count` requests built by `request`, `concurrency` at a time; every answer must be
/// `expected`. `keep` turns each answer's body into what the caller needs of it (or fails the
/// measurement), so bodies nobody reads are neither parsed nor held while the server is measured.
pub async fn measure<F, K, T>(
    server: &Server,
    count: usize,
    concurrency: usize,
    expected: u16,
    request: F,
    keep: K,
) -> anyhow::Result<(Measured, Vec<T>)>
where
    F: Fn(usize) -> reqwest::RequestBuilder,
    K: Fn(&[u8]) -> anyhow::Result<T>,
{
    let request = Arc::new(request);
    let keep = &keep;
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Duration, T)>> = stream::iter(0..count)
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
                Ok((elapsed, keep(&body)?))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let mut latencies = Vec::with_capacity(count);
    let mut kept = Vec::with_capacity(count);
    for result in results {
        let (latency, value) = result?;
        latencies.push(latency);
        kept.push(value);
    }
    Ok((Measured { latencies, wall }, kept))
}

/// A body as JSON, for [`measure`]'s `keep`.
pub fn json_body(body: &[u8]) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(body)?)
}

/// Nothing of the body, for [`measure`]'s `keep`.
pub fn no_body(_: &[u8]) -> anyhow::Result<()> {
    Ok(())
}

/// Runs `ANALYZE` on `tables` of a PostgreSQL benchmark schema (nothing on SQLite). Until the
/// planner's statistics describe the freshly filled tables, it keeps the plans it made while they
/// were empty: the foreign-key checks of every insert (which PostgreSQL plans once per connection
/// and keeps) scan the referenced table row by row, so each write costs more the more rows there are.
/// Autovacuum analyzes a growing table within a minute or so; the benchmarks measure the state after
/// that, not the first minute of a new database.
pub async fn analyze(backend: &str, database_url: &str, tables: &str) -> anyhow::Result<()> {
    if backend != "postgres" {
        return Ok(());
    }
    let mut connection = sqlx::PgConnection::connect(database_url).await?;
    connection
        .execute(format!("ANALYZE {tables}").as_str())
        .await?;
    let _ = connection.close().await;
    Ok(())
}
