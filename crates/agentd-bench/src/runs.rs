//! The `runs` benchmark, against agents whose model is a [`ScriptedModel`] (the OpenAI protocol on
//! loopback):
//!
//! 1. Throughput and added latency, with the server and the model in this process. For each backend and
//!    concurrency: `POST /agents/{id}/runs` with `stream=false` (the finished run as JSON) and streamed
//!    (SSE read to the end, 12 events), each next to a baseline of the same client calling the model
//!    directly with the request the server sends it (streamed and not). Added latency is the run's
//!    percentile minus the baseline's. By default the model is the scripted model's answer replayed
//!    by [`ReplayModel`] (see there why), `--model scripted` uses the scripted model itself.
//! 2. Open streams: `--streams` SSE runs against a model that waits `--stream-seconds` before each
//!    token, so they stay open; the server and the model run as child processes (this binary again,
//!    hidden subcommands), so `/proc/<pid>/status` gives the server's own memory, without the client's.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentd_runtime::Config;
use agentd_testkit::{Reply, ScriptedModel};
use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::common::{analyze, ms, start_with, BackendChoice, Database, Measured};
use crate::replay::ReplayModel;

/// The scripted answer: eight chunks, so a streamed run has 12 events (`RunStarted`,
/// `ModelRequestStarted`, 8 × `RunContent`, `ModelRequestCompleted`, `RunCompleted`).
const REPLY: &str = "The quick brown fox jumps over the dog.";
/// Events of a streamed run answered by [`REPLY`].
const EVENTS_PER_RUN: usize = 12;
const MESSAGE: &str = "Say eight words.";
const INSTRUCTIONS: &str = "You are a benchmark agent. Answer briefly.";
/// Unmeasured runs before the measurements, so connection pools and caches are warm.
const WARM_UP_RUNS: usize = 2_000;
/// SSE runs being opened at once in the stream test (each frees its slot at its first event), so the
/// server's accept queue is not flooded.
const OPENING_AT_ONCE: usize = 256;

#[derive(clap::Args)]
pub struct RunsArgs {
    /// Which database(s) to run on.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    backend: BackendChoice,
    /// The PostgreSQL server for the postgres runs (each uses a new schema in it, dropped at the end).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// Measured runs per mode (JSON, SSE) and concurrency, and as many direct model calls for each
    /// baseline; 0 skips the throughput part.
    #[arg(long, default_value_t = 2_000)]
    runs: usize,
    /// Runs in flight at once: one measurement per value.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// The model of the throughput part: the scripted model's answers replayed by a server with
    /// `TCP_NODELAY` (`replay`), or the scripted model itself (`scripted`; its streamed answers take
    /// ~44 ms on a kept-alive connection, Nagle's algorithm against delayed ACKs).
    #[arg(long, value_enum, default_value_t = ModelChoice::Replay)]
    model: ModelChoice,
    /// Diagnostic: serve the throughput part's server with `TCP_NODELAY` on accepted connections
    /// (axum's `serve` with `tap_io`), which `agentd_server::serve` does not set.
    #[arg(long)]
    nodelay: bool,
    /// SSE runs to hold open at once against a slow model; 0 skips the stream part. The server needs
    /// two sockets per open run (the client's and its model call's), so `ulimit -n` must exceed
    /// twice this.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// How long the slow model waits before each token; opening all streams must take less.
    #[arg(long, default_value_t = 120)]
    stream_seconds: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModelChoice {
    Replay,
    Scripted,
}

pub async fn runs(args: &RunsArgs) -> anyhow::Result<()> {
    if args.concurrency.contains(&0) {
        bail!("--concurrency values must be at least 1");
    }
    for backend in args.backend.backends() {
        let database = Database::create(backend, &args.database_url)
            .await
            .with_context(|| format!("preparing the {backend} database"))?;
        let result = async {
            if args.runs > 0 {
                throughput(args, backend, &database.url)
                    .await
                    .with_context(|| format!("run throughput on {backend}"))?;
            }
            if args.streams > 0 {
                open_streams(args, backend, &database.url)
                    .await
                    .with_context(|| format!("open streams on {backend}"))?;
            }
            anyhow::Ok(())
        }
        .await;
        database.drop_schema().await;
        result?;
    }
    Ok(())
}

/// The provider `scripted`, speaking the OpenAI protocol to the model at `model_url`. The read timeout
/// is long so the slow model of the stream test is not cut off; no retries, so failures show.
fn scripted_provider(model_url: &str) -> agentd_models::ProviderConfig {
    agentd_models::ProviderConfig {
        kind: agentd_models::ProviderKind::Openai,
        base_url: format!("{model_url}/v1"),
        api_key_env: None,
        path: None,
        connect_timeout_secs: 10,
        read_timeout_secs: 3600,
        max_retries: 0,
        models: Vec::new(),
    }
}

fn config_with_model(model_url: &str) -> Config {
    let mut config = Config::default();
    config
        .providers
        .insert("scripted".to_owned(), scripted_provider(model_url));
    config
}

/// Creates the agent the runs run on; returns its id.
async fn create_agent(client: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/agents"))
        .bearer_auth(key)
        .json(&json!({
            "name": "bench-runner",
            "model": "scripted/bench",
            "instructions": INSTRUCTIONS,
        }))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    if status != 201 {
        bail!("creating the agent: {status}: {body}");
    }
    let agent: Value = serde_json::from_str(&body)?;
    agent["id"]
        .as_str()
        .map(str::to_owned)
        .context("the created agent has no id")
}

/// The request body the server sends the model for a run (see `agentd_models::openai::request_body`),
/// streamed or not.
fn model_request(stream: bool) -> Value {
    let mut body = json!({
        "model": "bench",
        "messages": [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": MESSAGE},
        ],
        "stream": stream,
    });
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Sends the request and checks the status; returns the response to read.
async fn send_ok(request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
    let response = request.send().await?;
    let status = response.status();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        bail!("expected 200, got {status}: {body}");
    }
    Ok(response)
}

/// A run with `stream=false`: the finished run as JSON, which must be completed with the reply.
async fn run_json(client: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<usize> {
    let request = client
        .post(url)
        .bearer_auth(key)
        .json(&json!({"message": MESSAGE, "stream": false}));
    let run: Value = send_ok(request).await?.json().await?;
    if run["status"] != "COMPLETED" || run["content"] != REPLY {
        bail!("the run did not complete with the scripted reply: {run}");
    }
    Ok(0)
}

/// A streamed run, read to its end; returns its number of events (the last must be `RunCompleted`).
async fn run_sse(client: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<usize> {
    let request = client
        .post(url)
        .bearer_auth(key)
        .json(&json!({"message": MESSAGE}));
    let mut response = send_ok(request).await?;
    let mut reader = SseReader::default();
    while let Some(chunk) = response.chunk().await? {
        reader.feed(&chunk);
    }
    if reader.last_event.as_deref() != Some("RunCompleted") {
        bail!(
            "the stream ended with {:?} after {} events",
            reader.last_event,
            reader.frames
        );
    }
    Ok(reader.frames)
}

/// The model called directly without streaming: a chat completion as JSON.
async fn model_json(client: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let answer: Value = send_ok(client.post(url).json(&model_request(false)))
        .await?
        .json()
        .await?;
    if answer["choices"][0]["message"]["content"] != REPLY {
        bail!("unexpected model answer: {answer}");
    }
    Ok(0)
}

/// The model called directly, streamed and read to `[DONE]`; returns its number of frames.
async fn model_sse(client: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let mut response = send_ok(client.post(url).json(&model_request(true))).await?;
    let mut reader = SseReader::default();
    while let Some(chunk) = response.chunk().await? {
        reader.feed(&chunk);
    }
    if reader.last_data != "[DONE]" {
        bail!("the model stream ended without [DONE]");
    }
    Ok(reader.frames)
}

/// Splits a `text/event-stream` body into frames as chunks arrive; comments (keep-alives) are skipped.
#[derive(Default)]
struct SseReader {
    buffer: Vec<u8>,
    /// Frames with data so far.
    frames: usize,
    /// The `event:` name of the last frame with data.
    last_event: Option<String>,
    /// The `data:` of the last frame with data.
    last_data: String,
}

impl SseReader {
    /// Takes a chunk; returns how many frames with data it completed.
    fn feed(&mut self, chunk: &[u8]) -> usize {
        self.buffer.extend_from_slice(chunk);
        let mut completed = 0;
        while let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
            let mut event = None;
            let mut data = None;
            for line in self.buffer[..end].split(|byte| *byte == b'\n') {
                if let Some(name) = line.strip_prefix(b"event:") {
                    event = Some(String::from_utf8_lossy(name).trim().to_owned());
                } else if let Some(value) = line.strip_prefix(b"data:") {
                    data = Some(String::from_utf8_lossy(value).trim().to_owned());
                }
            }
            self.buffer.drain(..end + 2);
            if let Some(data) = data {
                self.frames += 1;
                self.last_event = event;
                self.last_data = data;
                completed += 1;
            }
        }
        completed
    }
}

/// Runs `count` operations made by `operation`, `concurrency` at a time, timing each; returns the
/// timings and what each returned.
async fn measure<F, Fut>(
    count: usize,
    concurrency: usize,
    operation: F,
) -> anyhow::Result<(Measured, Vec<usize>)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Duration, usize)>> = stream::iter(0..count)
        .map(|n| {
            let operation = operation(n);
            async move {
                let sent = Instant::now();
                let value = operation.await?;
                Ok((sent.elapsed(), value))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let mut latencies = Vec::with_capacity(count);
    let mut values = Vec::with_capacity(count);
    for result in results {
        let (latency, value) = result?;
        latencies.push(latency);
        values.push(value);
    }
    Ok((Measured { latencies, wall }, values))
}

/// Part 1: run throughput and added latency over a zero-delay model, server and model in this process.
async fn throughput(args: &RunsArgs, backend: &str, database_url: &str) -> anyhow::Result<()> {
    let scripted = ScriptedModel::start().await;
    scripted.set_default(Reply::text(REPLY));
    let replay;
    let (model_name, model_base) = match args.model {
        ModelChoice::Scripted => ("scripted", scripted.url()),
        ModelChoice::Replay => {
            replay =
                ReplayModel::record(&scripted, &model_request(true), &model_request(false)).await?;
            ("replay", replay.url())
        }
    };
    let server = start_with(
        backend,
        database_url,
        config_with_model(&model_base),
        args.nodelay,
    )
    .await?;
    // One client for the runs and the baselines, with an idle connection for every request in flight.
    let most = args.concurrency.iter().copied().max().unwrap_or(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(most.max(64))
        .build()?;
    let agent = create_agent(&client, &server.base, &server.key).await?;
    let runs_url = format!("{}/agents/{agent}/runs", server.base);
    let model_url = format!("{model_base}/v1/chat/completions");
    let (client, runs_url, model_url, key) = (&client, &runs_url, &model_url, &server.key);

    // Warm-up in two rounds with the tables analyzed after each (see `analyze`): after the first
    // the plans fit a small table, after the second a table large enough for its indexes.
    for round in [WARM_UP_RUNS / 10, WARM_UP_RUNS - WARM_UP_RUNS / 10] {
        measure(round, most.min(round), |_| run_sse(client, runs_url, key))
            .await
            .context("warming up")?;
        analyze(backend, database_url, "runs, run_events, sessions").await?;
    }

    for &concurrency in &args.concurrency {
        for streamed in [false, true] {
            let cpu_before = process_cpu_seconds();
            let (mut baseline, _) = measure(args.runs, concurrency, move |_| async move {
                if streamed {
                    model_sse(client, model_url).await
                } else {
                    model_json(client, model_url).await
                }
            })
            .await
            .context("calling the model directly")?;
            let cpu_between = process_cpu_seconds();
            let (mut run, events) = measure(args.runs, concurrency, move |_| async move {
                if streamed {
                    run_sse(client, runs_url, key).await
                } else {
                    run_json(client, runs_url, key).await
                }
            })
            .await
            .context("running the agent")?;
            let cpu_after = process_cpu_seconds();
            let model_cores = cpu_cores(cpu_between - cpu_before, &baseline);
            let run_cores = cpu_cores(cpu_after - cpu_between, &run);
            let model_cpu = cpu_between - cpu_before;
            let run_cpu = cpu_after - cpu_between;
            let model_p50 = baseline.percentile_ms(0.50);
            let model_p99 = baseline.percentile_ms(0.99);
            let run_p50 = run.percentile_ms(0.50);
            let run_p99 = run.percentile_ms(0.99);
            let (model_op, run_op) = if streamed {
                ("model_sse", "run_sse")
            } else {
                ("model_json", "run_json")
            };
            baseline.report(
                "runs",
                backend,
                model_op,
                json!({
                    "concurrency": concurrency,
                    "model": model_name,
                    "nodelay": args.nodelay,
                    "cpu_ms_per_op": cpu_ms_per_op(model_cpu, args.runs),
                    "cpu_cores": model_cores,
                }),
            );
            let mut extra = json!({
                "concurrency": concurrency,
                "model": model_name,
                "nodelay": args.nodelay,
                "cpu_ms_per_op": cpu_ms_per_op(run_cpu, args.runs),
                "cpu_cores": run_cores,
                "model_p50_ms": ms(model_p50),
                "model_p99_ms": ms(model_p99),
                "added_p50_ms": ms(run_p50 - model_p50),
                "added_p99_ms": ms(run_p99 - model_p99),
            });
            if streamed {
                let mean = events.iter().sum::<usize>() as f64 / events.len().max(1) as f64;
                extra["events_per_run"] = json!((mean * 100.0).round() / 100.0);
                if events.iter().any(|&n| n != EVENTS_PER_RUN) {
                    eprintln!("note: some streamed runs did not have {EVENTS_PER_RUN} events");
                }
            }
            run.report("runs", backend, run_op, extra);
        }
    }
    Ok(())
}

/// CPU time this process has used (all threads, user and system), from `/proc/self/stat` in clock
/// ticks of 1/100 s.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU milliseconds per operation, the whole process (client, model and server) counted.
fn cpu_ms_per_op(cpu_seconds: f64, count: usize) -> f64 {
    ms(cpu_seconds * 1000.0 / count.max(1) as f64)
}

/// How many cores the process kept busy on average.
fn cpu_cores(cpu_seconds: f64, measured: &Measured) -> f64 {
    (cpu_seconds / measured.wall.as_secs_f64().max(1e-9) * 100.0).round() / 100.0
}

/// A child process running this binary with a hidden subcommand. It prints one JSON line on stdout
/// when ready, and exits when its stdin closes; dropping the handle kills it.
struct ChildProcess {
    child: Child,
    ready: Value,
}

impl ChildProcess {
    async fn spawn(args: &[&str]) -> anyhow::Result<ChildProcess> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting `{}`", args.join(" ")))?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let mut process = ChildProcess {
            child,
            ready: Value::Null,
        };
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await??;
        if line.trim().is_empty() {
            bail!("`{}` exited before it was ready", args.join(" "));
        }
        process.ready = serde_json::from_str(&line)?;
        Ok(process)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn field(&self, name: &str) -> anyhow::Result<String> {
        self.ready[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no `{name}` in {}", self.ready))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

fn open_fds(pid: &str) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The soft limit on open files of this process (children inherit it).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Part 2: `--streams` SSE runs held open at once against a slow model, the server in a child process.
async fn open_streams(args: &RunsArgs, backend: &str, database_url: &str) -> anyhow::Result<()> {
    let wanted = args.streams;
    if let Some(limit) = open_files_limit() {
        let needed = 2 * wanted as u64 + 100;
        if limit < needed {
            eprintln!(
                "note: open files are limited to {limit}; the server needs two sockets per open run \
                 ({needed} for {wanted}): raise `ulimit -n`, or expect some runs not to open"
            );
        }
    }
    let delay_ms = (args.stream_seconds * 1000).to_string();
    let warm_up = 20;
    let model = ChildProcess::spawn(&[
        "serve-model",
        "--token-delay-ms",
        &delay_ms,
        "--fast-replies",
        &warm_up.to_string(),
    ])
    .await?;
    let model_url = model.field("url")?;
    let mut server_args = vec![
        "serve-agentd",
        "--backend",
        backend,
        "--model-url",
        &model_url,
    ];
    if backend == "postgres" {
        server_args.extend(["--database-url", database_url]);
    }
    let server = ChildProcess::spawn(&server_args).await?;
    let base = server.field("base")?;
    let key = server.field("key")?;
    let pid = server.pid().to_string();
    let me = std::process::id().to_string();

    let client = reqwest::Client::new();
    let agent = create_agent(&client, &base, &key).await?;
    let url = format!("{base}/agents/{agent}/runs");
    // The first runs get fast replies: pools and caches warm up before the idle figure is taken.
    measure(warm_up, 4, |_| run_json(&client, &url, &key))
        .await
        .context("warming up")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_idle = proc_status_kib(&pid, "VmRSS").context("the server's VmRSS")?;
    let client_idle = proc_status_kib(&me, "VmRSS").unwrap_or_default();

    let opened = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_events = Arc::new(Mutex::new(Vec::with_capacity(wanted)));
    let errors = Arc::new(Mutex::new(Vec::new()));
    // How the streams that ended before the measurement ended (their last event).
    let endings = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        let (opened, ended, failed) = (opened.clone(), ended.clone(), failed.clone());
        let (first_events, errors, gate) = (first_events.clone(), errors.clone(), gate.clone());
        let endings = endings.clone();
        tasks.push(tokio::spawn(async move {
            let mut slot = gate.acquire_owned().await.ok();
            let sent = Instant::now();
            let request = client
                .post(&url)
                .bearer_auth(&key)
                .json(&json!({"message": MESSAGE}));
            let mut response = match send_ok(request).await {
                Ok(response) => response,
                Err(error) => {
                    failed.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut errors) = errors.lock() {
                        errors.push(error.to_string());
                    }
                    return;
                }
            };
            let mut reader = SseReader::default();
            let mut first = true;
            while let Ok(Some(chunk)) = response.chunk().await {
                if reader.feed(&chunk) > 0 && first {
                    first = false;
                    if let Ok(mut first_events) = first_events.lock() {
                        first_events.push(sent.elapsed());
                    }
                    opened.fetch_add(1, Ordering::SeqCst);
                    slot.take();
                }
            }
            if first {
                failed.fetch_add(1, Ordering::SeqCst);
            } else {
                ended.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut endings) = endings.lock() {
                    let last = reader.last_event.unwrap_or_else(|| "(none)".to_owned());
                    *endings.entry(last).or_default() += 1;
                }
            }
        }));
    }

    let limit = Duration::from_secs(args.stream_seconds);
    let mut last_note = Instant::now();
    while opened.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst) < wanted
        && started.elapsed() < limit
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last_note.elapsed() >= Duration::from_secs(5) {
            last_note = Instant::now();
            eprintln!(
                "{backend:>8} opening streams: {} open, {} failed after {:.0} s",
                opened.load(Ordering::SeqCst),
                failed.load(Ordering::SeqCst),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    // Held a little longer, then measured while every stream is still waiting on the model.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server_held = proc_status_kib(&pid, "VmRSS").context("the server's VmRSS")?;
    let server_fds = open_fds(&pid).unwrap_or_default();
    let client_held = proc_status_kib(&me, "VmRSS").unwrap_or_default();
    // Ended before opened: a stream counted as ended was counted as opened before.
    let ended_now = ended.load(Ordering::SeqCst);
    let opened_now = opened.load(Ordering::SeqCst);
    let failed_now = failed.load(Ordering::SeqCst);
    let held = opened_now.saturating_sub(ended_now);
    let ended_with = endings.lock().map(|e| e.clone()).unwrap_or_default();

    drop(server);
    drop(model);
    for task in &tasks {
        task.abort();
    }

    let mut first = Measured {
        latencies: first_events.lock().map(|l| l.clone()).unwrap_or_default(),
        wall: Duration::ZERO,
    };
    let added = server_held.saturating_sub(server_idle);
    let line = json!({
        "bench": "runs",
        "backend": backend,
        "op": "open_streams",
        "streams": wanted,
        "held": held,
        "ended_early": ended_now,
        "ended_early_with": ended_with,
        "failed": failed_now,
        "never_opened": wanted.saturating_sub(opened_now + failed_now),
        "open_seconds": ms(open_seconds),
        "first_event_p50_ms": ms(first.percentile_ms(0.50)),
        "first_event_p99_ms": ms(first.percentile_ms(0.99)),
        "token_delay_s": args.stream_seconds,
        "server_rss_idle_mib": mib(server_idle),
        "server_rss_held_mib": mib(server_held),
        "server_rss_added_mib": mib(added),
        "server_kib_per_stream": ((added as f64 / held.max(1) as f64) * 10.0).round() / 10.0,
        "server_open_fds": server_fds,
        "client_rss_added_mib": mib(client_held.saturating_sub(client_idle)),
    });
    println!("{line}");
    eprintln!(
        "{backend:>8} open_streams  {held}/{wanted} held ({failed_now} failed) in {open_seconds:.1} s; \
         server RSS {:.1} MiB idle, {:.1} MiB held (+{:.1} MiB, {:.1} KiB per stream)",
        mib(server_idle),
        mib(server_held),
        mib(added),
        added as f64 / held.max(1) as f64
    );
    if let Ok(errors) = errors.lock() {
        if let Some(error) = errors.first() {
            eprintln!("{backend:>8} first failure of {}: {error}", errors.len());
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ServeAgentdArgs {
    #[arg(long)]
    backend: String,
    /// The PostgreSQL URL (SQLite uses a fresh file).
    #[arg(long, default_value = "")]
    database_url: String,
    #[arg(long)]
    model_url: String,
}

/// Blocks until standard input closes (the parent exited or dropped its handle).
async fn until_stdin_closes() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink)
    })
    .await;
}

/// The hidden `serve-agentd`: an agentd server (as `agentd serve` starts it, background jobs included,
/// without the log writer)
/// with the scripted provider; prints `{"base","key"}` and serves until stdin closes.
pub async fn serve_agentd(args: ServeAgentdArgs) -> anyhow::Result<()> {
    let server = start_with(
        &args.backend,
        &args.database_url,
        config_with_model(&args.model_url),
        false,
    )
    .await?;
    let _jobs = server.runtime.start_background_jobs()?;
    println!("{}", json!({"base": server.base, "key": server.key}));
    until_stdin_closes().await;
    Ok(())
}

#[derive(clap::Args)]
pub struct ServeModelArgs {
    /// The wait before each token of the default reply.
    #[arg(long)]
    token_delay_ms: u64,
    /// Requests answered at once with the fast reply before the slow one applies.
    #[arg(long, default_value_t = 0)]
    fast_replies: usize,
}

/// The hidden `serve-model`: a scripted model whose default reply is slow; prints `{"url"}` and serves
/// until stdin closes.
pub async fn serve_model(args: ServeModelArgs) -> anyhow::Result<()> {
    let model = ScriptedModel::start().await;
    for _ in 0..args.fast_replies {
        model.push(Reply::text(REPLY));
    }
    model.set_default(
        Reply::text("A slow reply.").token_delay(Duration::from_millis(args.token_delay_ms)),
    );
    println!("{}", json!({"url": model.url()}));
    until_stdin_closes().await;
    Ok(())
}
