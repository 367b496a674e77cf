//! The `agentd` command: `serve` runs the server; `migrate`, `config`, `keys`, `tenants` and `audit`
//! administer it.
//! This is the only crate that uses `anyhow`: errors here are for an operator to read, not to match on.

mod client;
mod knowledge_cli;
mod logging;

use std::path::PathBuf;
use std::time::Duration;

use agentd_core::{KeyName, NewApiKey, Scope, ScopeSet, TenantSlug};
use agentd_runtime::config::Overrides;
use agentd_runtime::{Config, Runtime};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// agentd: a self-hosted Agent OS.
#[derive(Parser)]
#[command(name = "agentd", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes; they override `agentd.toml` and `AGENTD_*` variables.
#[derive(Args)]
struct GlobalArgs {
    /// Configuration file (default: ./agentd.toml when it exists).
    #[arg(long, global = true, env = "AGENTD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:7777.
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Data directory (SQLite database and other local state).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite:<path> or postgres://…
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Manage API keys directly in the database (works while the server runs, or without it).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage tenants directly in the database.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Check the audit log straight in the database.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage agents on a running server (`--server`/`AGENTD_URL`, `--key`/`AGENTD_KEY`).
    Agents {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: client::AgentsCommand,
    },
    /// Add files to a running server's knowledge base (`--server`/`AGENTD_URL`, `--key`/`AGENTD_KEY`).
    Knowledge {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: knowledge_cli::KnowledgeCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret once.
    Create {
        /// Comma-separated scopes, e.g. `agents:read,agents:*:run` or `agent_os:admin`.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// A name for the key.
        #[arg(long, default_value = "cli")]
        name: String,
        /// The tenant's slug.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Days until the key expires; never, if absent.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk every tenant's hash chain (and the platform chain) and report the first entry that was
    /// altered, deleted or reordered; exits non-zero if there is one.
    Verify {
        /// Check only this tenant's chain (its slug).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Put a tenant on a plan from `[plans]` (its limits apply within 5 seconds).
    Plan {
        /// The tenant's slug.
        tenant: String,
        /// The plan's name; leave it out with `--default` to put the tenant back on `default_plan`.
        #[arg(required_unless_present = "default")]
        plan: Option<String>,
        /// Put the tenant back on the default plan.
        #[arg(long, conflicts_with = "plan")]
        default: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.global.listen,
        data_dir: cli.global.data_dir,
        database_url: cli.global.database_url,
    };
    let config = Config::load(cli.global.config.as_deref(), &overrides)?;
    if let Command::Config = cli.command {
        print!("{}", toml::to_string_pretty(&config.redacted())?);
        return Ok(());
    }
    logging::init(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::Keys { command } => keys(config, command).await,
            Command::Tenants { command } => tenants(config, command).await,
            Command::Audit { command } => audit(config, command).await,
            Command::Agents { server, command } => client::run(server, command).await,
            Command::Knowledge { server, command } => knowledge_cli::run(server, command).await,
            Command::Config => Ok(()),
        }
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let started = Runtime::start(config)
        .await
        .context("starting the runtime")?;
    if let Some(key) = &started.first_admin_key {
        print_first_admin_key(key.reveal());
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let jobs = started.runtime.start_background_jobs()?;
    let state = agentd_server::AppState::new(started.runtime.clone());
    tracing::info!(%addr, backend = started.runtime.backend(), "agentd listening");
    agentd_server::serve(
        listener,
        agentd_server::router(state),
        shutdown_signal(),
        grace,
    )
    .await?;
    for job in jobs {
        job.abort();
    }
    started.runtime.runs.shutdown().await;
    started.runtime.audit.flush().await;
    started.runtime.store.close().await;
    tracing::info!("agentd stopped");
    Ok(())
}

/// The one time a secret is printed: on the console, outside the log, on the very first start.
#[allow(clippy::print_stdout)]
fn print_first_admin_key(key: &str) {
    println!();
    println!("  agentd created the default tenant and an admin API key.");
    println!("  It is shown only this once. Keep it somewhere safe:");
    println!();
    println!("      {key}");
    println!();
    println!("  Use it as `Authorization: Bearer <key>`; make more with `agentd keys create`.");
    println!();
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let started = Runtime::start(config).await.context("migrating")?;
    if let Some(key) = &started.first_admin_key {
        print_first_admin_key(key.reveal());
    }
    tracing::info!(backend = started.runtime.backend(), "schema is up to date");
    started.runtime.store.close().await;
    Ok(())
}

async fn keys(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Create {
        scopes,
        name,
        tenant,
        expires_in_days,
    } = command;
    let scopes = scopes
        .iter()
        .map(|raw| Scope::parse(raw.trim()).with_context(|| format!("scope `{raw}`")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tenant = TenantSlug::parse(&tenant).context("--tenant")?;
    let new = NewApiKey {
        name: KeyName::parse(&name).context("--name")?,
        scopes: ScopeSet::new(scopes),
        expires_at: expires_in_days
            .map(|days| agentd_core::now() + chrono::Duration::days(i64::from(days))),
    };
    let started = Runtime::start(config)
        .await
        .context("opening the database")?;
    if let Some(key) = &started.first_admin_key {
        print_first_admin_key(key.reveal());
    }
    let (key, plain) = started
        .runtime
        .access
        .create_key_as_operator(&tenant, new)
        .await?;
    started.runtime.store.close().await;
    print_created_key(&key.id.to_string(), plain.reveal());
    Ok(())
}

async fn tenants(config: Config, command: TenantsCommand) -> anyhow::Result<()> {
    let TenantsCommand::Plan { tenant, plan, .. } = command;
    let slug = TenantSlug::parse(&tenant).context("tenant")?;
    let started = Runtime::start(config)
        .await
        .context("opening the database")?;
    if let Some(key) = &started.first_admin_key {
        print_first_admin_key(key.reveal());
    }
    let runtime = started.runtime;
    let result = async {
        let found = runtime
            .store
            .get_tenant_by_slug(&slug)
            .await?
            .with_context(|| format!("no tenant `{tenant}`"))?;
        runtime.usage.set_plan(found.id, plan.as_deref()).await?;
        anyhow::Ok(())
    }
    .await;
    runtime.store.close().await;
    result?;
    tracing::info!(tenant = %tenant, plan = plan.as_deref().unwrap_or("(default)"), "plan set");
    Ok(())
}

async fn audit(config: Config, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { tenant } = command;
    let slug = tenant
        .as_deref()
        .map(TenantSlug::parse)
        .transpose()
        .context("--tenant")?;
    let started = Runtime::start(config)
        .await
        .context("opening the database")?;
    if let Some(key) = &started.first_admin_key {
        print_first_admin_key(key.reveal());
    }
    let runtime = started.runtime;
    let result = verify_audit(&runtime, slug.as_ref()).await;
    runtime.store.close().await;
    let (lines, broken) = result?;
    print_lines(&lines);
    match broken {
        Some(chain) => anyhow::bail!("the audit log of {chain} has been tampered with"),
        None => Ok(()),
    }
}

/// The report lines of `agentd audit verify`, and the first broken chain's name if any.
async fn verify_audit(
    runtime: &Runtime,
    slug: Option<&TenantSlug>,
) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let only = match slug {
        Some(slug) => Some(
            runtime
                .store
                .get_tenant_by_slug(slug)
                .await?
                .with_context(|| format!("no tenant `{}`", slug.as_str()))?
                .id,
        ),
        None => None,
    };
    let reports = runtime.audit.verify(only).await?;
    let mut lines = Vec::new();
    let mut first_broken = None;
    let mut entries = 0;
    for report in &reports {
        let name = if report.tenant_id == agentd_core::audit::platform_tenant() {
            format!("the platform chain ({})", report.tenant_id)
        } else {
            match runtime.store.get_tenant(report.tenant_id).await? {
                Some(tenant) => format!("tenant `{}` ({})", tenant.slug.as_str(), report.tenant_id),
                None => format!("deleted tenant {}", report.tenant_id),
            }
        };
        entries += report.entries;
        match &report.broken {
            None => lines.push(format!("ok      {name}: {}", count(report.entries))),
            Some(broken) => {
                lines.push(format!("BROKEN  {name}: {broken}"));
                first_broken.get_or_insert(name);
            }
        }
    }
    if first_broken.is_none() {
        let chains = reports.len();
        let plural = if chains == 1 { "" } else { "s" };
        lines.push(format!(
            "audit log verified: {} in {chains} chain{plural}",
            count(entries)
        ));
    }
    Ok((lines, first_broken))
}

/// `1 entry`, `5 entries`.
fn count(entries: u64) -> String {
    match entries {
        1 => "1 entry".to_owned(),
        n => format!("{n} entries"),
    }
}

#[allow(clippy::print_stdout)]
fn print_lines(lines: &[String]) {
    for line in lines {
        println!("{line}");
    }
}

#[allow(clippy::print_stdout)]
fn print_created_key(id: &str, secret: &str) {
    println!("key id: {id}");
    println!("key:    {secret}");
    println!("(the key is shown only this once)");
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
