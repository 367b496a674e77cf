//! `agentd-bench`: load tests against a real agentd server started in this process on a fresh SQLite
//! file or on PostgreSQL, over HTTP on loopback. Each measured operation prints one JSON line
//! (`{"bench":"registry","backend":…,"op":…,"count":…,"rps":…,"p50_ms":…,"p99_ms":…}`), so a script can
//! read the figures; the human summary goes to standard error.
//!
//! ```sh
//! cargo run --release -p agentd-bench -- registry --agents 100000
//! cargo run --release -p agentd-bench -- registry --backend postgres --database-url postgres://postgres@127.0.0.1:5432/test
//! cargo run --release -p agentd-bench -- runs --concurrency 1,64 --streams 10000
//! cargo run --release -p agentd-bench -- knowledge --chunks 100000
//! ```

mod common;
mod knowledge;
mod registry;
mod replay;
mod runs;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "agentd-bench", about = "Benchmarks for agentd")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The registry: create, get, list with a filter, and patch agents.
    Registry(registry::RegistryArgs),
    /// Runs over a scripted model: throughput and added latency (JSON and SSE), and open SSE runs
    /// held at once against a slow model.
    Runs(runs::RunsArgs),
    /// The knowledge base: indexes a synthetic corpus, then measures keyword, vector and hybrid
    /// search latency.
    Knowledge(knowledge::KnowledgeArgs),
    /// (internal) The agentd server of the `runs` stream test, in a process of its own.
    #[command(hide = true)]
    ServeAgentd(runs::ServeAgentdArgs),
    /// (internal) The slow scripted model of the `runs` stream test, in a process of its own.
    #[command(hide = true)]
    ServeModel(runs::ServeModelArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.bench {
        Bench::Registry(args) => {
            for backend in args.backend.backends() {
                registry::registry(&args, backend)
                    .await
                    .with_context(|| format!("registry benchmark on {backend}"))?;
            }
            Ok(())
        }
        Bench::Runs(args) => runs::runs(&args).await,
        Bench::Knowledge(args) => {
            for backend in args.backend.backends() {
                knowledge::knowledge(&args, backend)
                    .await
                    .with_context(|| format!("knowledge benchmark on {backend}"))?;
            }
            Ok(())
        }
        Bench::ServeAgentd(args) => runs::serve_agentd(args).await,
        Bench::ServeModel(args) => runs::serve_model(args).await,
    }
}
