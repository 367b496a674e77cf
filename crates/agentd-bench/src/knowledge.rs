//! The `knowledge` benchmark: indexes a synthetic corpus (100,000 chunks by default) through
//! `POST /knowledge/content`, embedded by a [`ScriptedModel`] at a realistic 384 dimensions, then
//! measures `POST /knowledge/search` one request at a time for each search type.
//!
//! The corpus is lines of words drawn from a vocabulary of made-up words, one chunk per line (the
//! `rows` chunker with lines just under the chunk size); queries are three vocabulary words. Search
//! latency is end to end over HTTP and includes embedding the query (a loopback call to the scripted
//! model). The first vector search after indexing loads the tenant's embeddings into memory; it is
//! reported on its own (`cold_vector`) and left out of the figures of the steady state.

use std::time::{Duration, Instant};

use agentd_runtime::Config;
use agentd_testkit::ScriptedModel;
use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::{
    analyze, json_body, measure, start_with, BackendChoice, Database, Measured, Server,
};

#[derive(clap::Args)]
pub struct KnowledgeArgs {
    /// Chunks to index first.
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// Chunks per uploaded content.
    #[arg(long, default_value_t = 1_000)]
    chunks_per_content: usize,
    /// Measured searches per search type.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Dimensions of the embeddings.
    #[arg(long, default_value_t = 384)]
    dimensions: usize,
    /// Which database(s) to run on.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    pub backend: BackendChoice,
    /// The PostgreSQL server for the postgres run (each run uses a new schema in it, dropped after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
}

/// Words in the vocabulary.
const VOCABULARY: usize = 20_000;
/// The chunk size the corpus is cut with; every line is shorter, and two lines are longer.
const CHUNK_SIZE: usize = 200;
/// Uploads processed at once.
const UPLOADS_IN_FLIGHT: usize = 2;

/// Runs the benchmark on one backend (on PostgreSQL in a schema of its own, dropped after).
pub async fn knowledge(args: &KnowledgeArgs, backend: &str) -> anyhow::Result<()> {
    let database = Database::create(backend, &args.database_url).await?;
    let result = run(args, backend, &database.url).await;
    database.drop_schema().await;
    result
}

async fn run(args: &KnowledgeArgs, backend: &str, database_url: &str) -> anyhow::Result<()> {
    let model = ScriptedModel::start().await;
    model.set_embedding_dimensions(args.dimensions);
    let mut config = Config::default();
    config.providers.insert(
        "scripted".to_owned(),
        agentd_models::ProviderConfig {
            kind: agentd_models::ProviderKind::Openai,
            base_url: format!("{}/v1", model.url()),
            api_key_env: None,
            path: None,
            connect_timeout_secs: 10,
            read_timeout_secs: 600,
            max_retries: 0,
            models: Vec::new(),
        },
    );
    config.knowledge.embedder = Some("scripted/embedder".to_owned());
    config.knowledge.max_chunks_per_content = args.chunks_per_content.max(1);
    config.knowledge.concurrent_processing = UPLOADS_IN_FLIGHT;
    let server = start_with(backend, database_url, config, false).await?;

    let mut rng = StdRng::seed_from_u64(7);
    let vocabulary = vocabulary(&mut rng);
    let indexed = index(&server, args, &vocabulary, &mut rng).await?;
    eprintln!(
        "{backend:>8} indexed {} chunks in {:.1} s ({:.0} chunks/s)",
        indexed.chunks,
        indexed.took.as_secs_f64(),
        indexed.chunks as f64 / indexed.took.as_secs_f64()
    );
    println!(
        "{}",
        json!({
            "bench": "knowledge", "backend": backend, "op": "index",
            "chunks": indexed.chunks, "dimensions": args.dimensions,
            "seconds": indexed.took.as_secs_f64(),
            "chunks_per_s": (indexed.chunks as f64 / indexed.took.as_secs_f64()).round(),
        })
    );

    analyze(
        backend,
        database_url,
        "knowledge_chunks, knowledge_contents, knowledge_metadata",
    )
    .await?;

    let queries: Vec<String> = (0..args.queries)
        .map(|_| {
            (0..3)
                .map(|_| vocabulary[rng.gen_range(0..vocabulary.len())].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let extra = json!({"chunks": indexed.chunks, "dimensions": args.dimensions});

    // The first vector search loads the tenant's embeddings.
    let cold = search(&server, &queries, "vector", 1).await?;
    cold.report("knowledge", backend, "cold_vector", extra.clone());
    for search_type in ["keyword", "vector", "hybrid"] {
        let measured = search(&server, &queries, search_type, queries.len()).await?;
        measured.report("knowledge", backend, search_type, extra.clone());
    }
    Ok(())
}

/// `count` searches of `search_type`, one at a time; every one must find something.
async fn search(
    server: &Server,
    queries: &[String],
    search_type: &str,
    count: usize,
) -> anyhow::Result<Measured> {
    let (measured, answers) = measure(
        server,
        count,
        1,
        200,
        |n| {
            server
                .client
                .post(format!("{}/knowledge/search", server.base))
                .json(&json!({
                    "query": queries[n % queries.len()],
                    "search_type": search_type,
                    "max_results": 10,
                }))
        },
        json_body,
    )
    .await?;
    for answer in &answers {
        if answer["search_type"] != search_type {
            bail!("asked for {search_type}, got {answer}");
        }
    }
    let empty = answers
        .iter()
        .filter(|answer| answer["results"].as_array().is_none_or(Vec::is_empty))
        .count();
    if empty > count / 10 {
        bail!("{empty} of {count} {search_type} searches found nothing");
    }
    Ok(measured)
}

/// Made-up words of two to four syllables, all different.
fn vocabulary(rng: &mut StdRng) -> Vec<String> {
    const ONSETS: &[&str] = &[
        "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
        "br", "st", "tr", "pl", "gr", "sh", "ch", "th",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ou", "ea"];
    let mut words = std::collections::BTreeSet::new();
    while words.len() < VOCABULARY {
        let syllables = rng.gen_range(2..=4);
        let word: String = (0..syllables)
            .map(|_| {
                format!(
                    "{}{}",
                    ONSETS[rng.gen_range(0..ONSETS.len())],
                    VOWELS[rng.gen_range(0..VOWELS.len())]
                )
            })
            .collect();
        words.insert(word);
    }
    words.into_iter().collect()
}

/// A line of vocabulary words just under [`CHUNK_SIZE`] characters.
fn line(vocabulary: &[String], rng: &mut StdRng) -> String {
    let mut line = String::new();
    loop {
        let word = &vocabulary[rng.gen_range(0..vocabulary.len())];
        if line.len() + word.len() + 1 >= CHUNK_SIZE {
            return line;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        if line.len() > CHUNK_SIZE * 3 / 4 && rng.gen_bool(0.3) {
            return line;
        }
    }
}

struct Indexed {
    chunks: u64,
    took: Duration,
}

/// Uploads contents of `chunks_per_content` lines until `chunks` chunks are indexed, and waits for
/// each to complete.
async fn index(
    server: &Server,
    args: &KnowledgeArgs,
    vocabulary: &[String],
    rng: &mut StdRng,
) -> anyhow::Result<Indexed> {
    let per_content = args.chunks_per_content.max(1);
    let contents = args.chunks.div_ceil(per_content);
    let texts: Vec<String> = (0..contents)
        .map(|n| {
            let lines = per_content.min(args.chunks - n * per_content);
            (0..lines)
                .map(|_| line(vocabulary, rng))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let started = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let chunks: Vec<u64> = stream::iter(texts.into_iter().enumerate())
        .map(|(n, text)| {
            let done = &done;
            async move {
                let chunks = upload(server, n, text).await?;
                let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if finished.is_multiple_of(10) || finished == contents {
                    eprintln!("  {finished}/{contents} contents indexed");
                }
                anyhow::Ok(chunks)
            }
        })
        .buffer_unordered(UPLOADS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(Indexed {
        chunks: chunks.iter().sum(),
        took: started.elapsed(),
    })
}

/// Uploads one content and polls its status until it is `completed`; its chunk count.
async fn upload(server: &Server, n: usize, text: String) -> anyhow::Result<u64> {
    let response = server
        .client
        .post(format!("{}/knowledge/content", server.base))
        .bearer_auth(&server.key)
        .json(&json!({
            "name": format!("corpus-{n}"),
            "text": text,
            "chunking": {"strategy": "rows", "chunk_size": CHUNK_SIZE, "overlap": 0},
        }))
        .send()
        .await?;
    let status = response.status();
    let content: Value = response.json().await?;
    if status != 202 {
        bail!("upload {n}: {status} {content}");
    }
    let id = content["id"]
        .as_str()
        .context("an upload has an id")?
        .to_owned();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let content: Value = server
            .client
            .get(format!("{}/knowledge/content/{id}/status", server.base))
            .bearer_auth(&server.key)
            .send()
            .await?
            .json()
            .await?;
        match content["status"].as_str() {
            Some("processing") => continue,
            Some("completed") => {
                return content["chunk_count"]
                    .as_u64()
                    .with_context(|| format!("a completed content has a chunk count: {content}"))
            }
            _ => bail!("upload {n} did not complete: {content}"),
        }
    }
}
