//! MCP servers as tool sources. An agent's `mcp_servers` name servers to start (stdio) or reach
//! (streamable HTTP); [`McpPool`] connects to each on first use, keeps the connection and its tool
//! list for later runs, and wraps every MCP tool as a [`ServerTool`] named `<server>__<tool>`.
//!
//! A stdio server runs as our own child process, leader of a process group of its own, so that
//! killing the group also ends what it started (`npx` runs the server as a grandchild). It gets only
//! a short list of environment variables (`PATH`, `HOME`, locale, proxies, CA files): agentd's own
//! environment holds secrets. Its stderr goes to the log at debug level; the last lines are quoted
//! when the server fails to start.
//!
//! A connection is dropped and opened again on next use once it is dead (the process exited, the
//! transport closed, or a request failed in the transport), and closed after `idle_ttl_secs` without
//! use. Dropping the pool, or [`McpPool::shutdown`], kills every child process.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use agentd_core::agent::McpServerSpec;
use async_trait::async_trait;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, Tool,
};
use rmcp::service::{ClientInitializeError, MaybeSendFuture, NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, Peer, RoleClient, ServiceError, ServiceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::ServerTool;

/// Longest tool name most model APIs accept.
const MAX_TOOL_NAME: usize = 64;
/// How long a closing connection may take to say goodbye before it is abandoned.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Stderr lines kept per stdio server, quoted when it fails to start.
const STDERR_TAIL_LINES: usize = 8;
/// Longest stderr line kept or logged, in bytes.
const STDERR_LINE_BYTES: usize = 2000;
/// Longest description of a server's command in messages, in bytes.
const MAX_DESCRIPTION: usize = 200;
/// Environment variables a stdio server inherits; everything else of agentd's is withheld. The
/// first six are the MCP TypeScript SDK's defaults; the rest let a server reach a registry or the
/// network the way the host is set up to.
const INHERITED_ENV: &[&str] = &[
    "HOME",
    "LOGNAME",
    "PATH",
    "SHELL",
    "TERM",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TZ",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

/// Timeouts and lifetimes of MCP connections, from `[tools.mcp]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct McpConfig {
    /// Starting a server (or reaching it), the MCP handshake and the first tool list.
    pub connect_timeout_ms: u64,
    /// One `tools/call` (and a later `tools/list`).
    pub call_timeout_ms: u64,
    /// A connection unused this long is closed; 0 keeps connections until shutdown.
    pub idle_ttl_secs: u64,
    /// The commands agents may start as stdio MCP servers: program names or paths, as written in the
    /// agent's `mcp_servers[].command`. Empty (the default) allows none, since whoever may write an
    /// agent spec could otherwise make the server run any program; `*` allows every command, for a
    /// server whose every API user is trusted.
    pub allowed_commands: Vec<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 10_000,
            call_timeout_ms: 60_000,
            idle_ttl_secs: 300,
            allowed_commands: Vec::new(),
        }
    }
}

/// Connections to MCP servers, shared by every run. Cheap to share behind an `Arc`.
pub struct McpPool {
    pool: Arc<Pool>,
}

impl McpPool {
    pub fn new(config: McpConfig) -> Self {
        Self {
            pool: Arc::new(Pool {
                config,
                slots: Mutex::new(HashMap::new()),
                open: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                sweeper_started: AtomicBool::new(false),
            }),
        }
    }

    /// The tools of one MCP server, each wrapped as a [`ServerTool`] named `<server name>__<tool
    /// name>` (only `[A-Za-z0-9_-]`, at most 64 characters), with the MCP tool's description and
    /// input schema. Connects on first use and reuses the connection (keyed by the command and
    /// arguments, or the URL) for later runs; a dead connection is dropped and opened again. The
    /// tool list is cached with the connection and listed again when the server says it changed.
    #[tracing::instrument(skip_all, fields(mcp.server = %server.name))]
    pub async fn tools(&self, server: &McpServerSpec) -> Result<Vec<Arc<dyn ServerTool>>, String> {
        if let Some(command) = &server.command {
            let allowed = &self.pool.config.allowed_commands;
            if !allowed.iter().any(|a| a == "*" || a == command) {
                return Err(format!(
                    "MCP server `{}`: the command `{command}` is not in `tools.mcp.allowed_commands`",
                    server.name
                ));
            }
        }
        let endpoint = Endpoint::of(server)
            .map_err(|message| format!("MCP server `{}`: {message}", server.name))?;
        let named = |message: String| server_message(&server.name, &endpoint, &message);
        // A connection that died without our noticing fails its listing; one more try opens a
        // fresh one.
        let mut retried = false;
        loop {
            let connection = self.pool.connection(&endpoint).await.map_err(named)?;
            match connection.list_tools(self.pool.call_timeout()).await {
                Ok(listed) => {
                    return Ok(wrap_tools(
                        &server.name,
                        &endpoint,
                        &listed,
                        Arc::downgrade(&self.pool),
                    ))
                }
                Err(_) if !retried && !connection.alive() => retried = true,
                Err(message) => return Err(named(message)),
            }
        }
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.pool.open.load(Ordering::SeqCst)
    }

    /// Closes every connection (child processes are killed). Later calls of [`Self::tools`] and of
    /// the tools it returned fail.
    pub async fn shutdown(&self) {
        self.pool.closed.store(true, Ordering::SeqCst);
        for slot in self.pool.slots() {
            let taken = self.pool.take(&mut *slot.lock().await);
            if let Some(connection) = taken {
                connection.close().await;
            }
        }
    }
}

/// Where a server is: what the pool keys connections by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Endpoint {
    Command { program: String, args: Vec<String> },
    Url(String),
}

impl Endpoint {
    fn of(server: &McpServerSpec) -> Result<Self, String> {
        match (&server.command, &server.url) {
            (Some(program), _) => Ok(Self::Command {
                program: program.clone(),
                args: server.args.clone(),
            }),
            (None, Some(url)) => Ok(Self::Url(url.clone())),
            (None, None) => Err("needs a command or a url".to_owned()),
        }
    }

    /// The command line or the URL, shortened, for messages and logs.
    fn describe(&self) -> String {
        let full = match self {
            Self::Command { program, args } => {
                let mut line = program.clone();
                for arg in args {
                    line.push(' ');
                    line.push_str(arg);
                }
                line
            }
            Self::Url(url) => url.clone(),
        };
        truncate(&full, MAX_DESCRIPTION)
    }
}

fn server_message(name: &str, endpoint: &Endpoint, message: &str) -> String {
    format!("MCP server `{name}` ({}): {message}", endpoint.describe())
}

type Slot = tokio::sync::Mutex<Option<Arc<Connection>>>;

struct Pool {
    config: McpConfig,
    slots: Mutex<HashMap<Endpoint, Arc<Slot>>>,
    /// Connections held by slots.
    open: AtomicUsize,
    closed: AtomicBool,
    sweeper_started: AtomicBool,
}

impl Pool {
    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.config.connect_timeout_ms)
    }

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.config.call_timeout_ms)
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        slots.values().cloned().collect()
    }

    fn slot(&self, endpoint: &Endpoint) -> Arc<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        slots.entry(endpoint.clone()).or_default().clone()
    }

    fn take(&self, held: &mut Option<Arc<Connection>>) -> Option<Arc<Connection>> {
        let taken = held.take();
        if taken.is_some() {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
        taken
    }

    /// The live connection to `endpoint`, opened if there is none. Opening happens under the
    /// slot's lock, so concurrent first uses start one server, not several.
    async fn connection(self: &Arc<Self>, endpoint: &Endpoint) -> Result<Arc<Connection>, String> {
        let slot = self.slot(endpoint);
        let mut held = slot.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Err("the MCP connection pool has shut down".to_owned());
        }
        match held.as_ref() {
            Some(connection) if connection.alive() => {
                connection.touch();
                return Ok(connection.clone());
            }
            Some(_) => {
                if let Some(dead) = self.take(&mut held) {
                    tracing::debug!(mcp.endpoint = %endpoint.describe(), "dropping a dead MCP connection");
                    dead.close().await;
                }
            }
            None => {}
        }
        let timeout = self.connect_timeout();
        let connection = match tokio::time::timeout(timeout, Connection::open(endpoint)).await {
            Ok(opened) => Arc::new(opened?),
            Err(_) => {
                return Err(format!(
                    "no answer within {} ms",
                    self.config.connect_timeout_ms
                ))
            }
        };
        *held = Some(connection.clone());
        self.open.fetch_add(1, Ordering::SeqCst);
        self.start_sweeper();
        Ok(connection)
    }

    /// Starts the task that closes idle and dead connections, once, from the first connection on.
    /// It holds the pool weakly and ends when the pool is gone or shut down.
    fn start_sweeper(self: &Arc<Self>) {
        let ttl = self.config.idle_ttl_secs;
        if ttl == 0 || self.sweeper_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = Arc::downgrade(self);
        let period = Duration::from_secs((ttl / 4).clamp(1, 60));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                if pool.closed.load(Ordering::SeqCst) {
                    return;
                }
                pool.close_idle(Duration::from_secs(ttl)).await;
            }
        });
    }

    async fn close_idle(&self, ttl: Duration) {
        for slot in self.slots() {
            // A slot in use is not idle.
            let Ok(mut held) = slot.try_lock() else {
                continue;
            };
            let idle = held
                .as_ref()
                .is_some_and(|connection| !connection.alive() || connection.idle_for(ttl));
            if !idle {
                continue;
            }
            let taken = self.take(&mut held);
            drop(held);
            if let Some(connection) = taken {
                tracing::debug!(mcp.endpoint = %connection.label, "closing an idle MCP connection");
                connection.close().await;
            }
        }
    }
}

/// Our side of an MCP session: answers nothing, but notes when the server's tool list changes.
#[derive(Clone)]
struct Handler {
    tools_changed: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("agentd", env!("CARGO_PKG_VERSION")),
        )
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl std::future::Future<Output = ()> + MaybeSendFuture + '_ {
        self.tools_changed.store(true, Ordering::SeqCst);
        std::future::ready(())
    }
}

/// One open MCP session, with its cached tool list and, for stdio, its process.
struct Connection {
    label: String,
    peer: Peer<RoleClient>,
    service: tokio::sync::Mutex<Option<RunningService<RoleClient, Handler>>>,
    tools: tokio::sync::Mutex<Arc<Vec<Tool>>>,
    tools_changed: Arc<AtomicBool>,
    /// Set when the process exited or a request failed in the transport.
    broken: Arc<AtomicBool>,
    last_used: Mutex<Instant>,
    calls_in_flight: AtomicUsize,
    process: Option<ProcessHandle>,
}

impl Connection {
    async fn open(endpoint: &Endpoint) -> Result<Self, String> {
        let tools_changed = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            tools_changed: tools_changed.clone(),
        };
        let broken = Arc::new(AtomicBool::new(false));
        let label = endpoint.describe();
        let (service, process) = match endpoint {
            Endpoint::Command { program, args } => {
                let (service, process) =
                    start_process(program, args, &label, handler, broken.clone()).await?;
                (service, Some(process))
            }
            Endpoint::Url(url) => {
                install_crypto_provider();
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                let service = handler.serve(transport).await.map_err(|error| {
                    format!("the MCP handshake failed: {}", handshake_error(&error))
                })?;
                (service, None)
            }
        };
        let peer = service.peer().clone();
        let connection = Self {
            label,
            peer,
            service: tokio::sync::Mutex::new(Some(service)),
            tools: tokio::sync::Mutex::new(Arc::new(Vec::new())),
            tools_changed,
            broken,
            last_used: Mutex::new(Instant::now()),
            calls_in_flight: AtomicUsize::new(0),
            process,
        };
        // The first list is part of connecting (and under its timeout).
        let listed = connection
            .peer
            .list_all_tools()
            .await
            .map_err(|error| format!("listing tools failed: {}", service_error(&error)))?;
        *connection.tools.lock().await = Arc::new(listed);
        Ok(connection)
    }

    fn alive(&self) -> bool {
        !self.broken.load(Ordering::SeqCst) && !self.peer.is_transport_closed()
    }

    fn touch(&self) {
        *self
            .last_used
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Instant::now();
    }

    fn idle_for(&self, ttl: Duration) -> bool {
        self.calls_in_flight.load(Ordering::SeqCst) == 0
            && self
                .last_used
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .elapsed()
                >= ttl
    }

    /// Marks the connection dead when an error says the transport failed.
    fn note(&self, error: &ServiceError) {
        if matches!(
            error,
            ServiceError::TransportClosed | ServiceError::TransportSend(_)
        ) {
            self.broken.store(true, Ordering::SeqCst);
        }
    }

    /// The cached tool list, listed again if the server said it changed.
    async fn list_tools(&self, timeout: Duration) -> Result<Arc<Vec<Tool>>, String> {
        let mut cached = self.tools.lock().await;
        if !self.tools_changed.swap(false, Ordering::SeqCst) {
            return Ok(cached.clone());
        }
        match tokio::time::timeout(timeout, self.peer.list_all_tools()).await {
            Ok(Ok(listed)) => {
                *cached = Arc::new(listed);
                Ok(cached.clone())
            }
            Ok(Err(error)) => {
                self.note(&error);
                self.tools_changed.store(true, Ordering::SeqCst);
                Err(format!("listing tools failed: {}", service_error(&error)))
            }
            Err(_) => {
                self.tools_changed.store(true, Ordering::SeqCst);
                Err(format!(
                    "listing tools: no answer within {} ms",
                    timeout.as_millis()
                ))
            }
        }
    }

    /// Sends `tools/call`. A timed-out call is dropped, which tells the server it was cancelled.
    async fn call(
        &self,
        tool: &str,
        arguments: JsonObject,
        timeout: Duration,
    ) -> Result<String, CallFailure> {
        let in_flight = InFlight::enter(self);
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let answer = tokio::time::timeout(timeout, self.peer.call_tool_once(params)).await;
        drop(in_flight);
        let response = match answer {
            Err(_) => {
                return Err(CallFailure::Server(format!(
                    "`{tool}` got no answer within {} ms",
                    timeout.as_millis()
                )))
            }
            Ok(Err(error)) => {
                self.note(&error);
                return Err(CallFailure::Server(format!(
                    "`{tool}` failed: {}",
                    service_error(&error)
                )));
            }
            Ok(Ok(response)) => response,
        };
        match response {
            CallToolResponse::Complete(result) => {
                let result = serde_json::to_value(&result).map_err(|error| {
                    CallFailure::Server(format!("`{tool}` answered unreadably: {error}"))
                })?;
                render_call_result(&result).map_err(CallFailure::Tool)
            }
            CallToolResponse::InputRequired(_) => Err(CallFailure::Server(format!(
                "`{tool}` asked for input from the client, which agentd does not give"
            ))),
            CallToolResponse::Task(_) => Err(CallFailure::Server(format!(
                "`{tool}` started a task, which agentd does not follow"
            ))),
            _ => Err(CallFailure::Server(format!(
                "`{tool}` gave an answer agentd does not know"
            ))),
        }
    }

    /// Kills the process (if any) and ends the session, waiting a moment for both.
    async fn close(&self) {
        self.broken.store(true, Ordering::SeqCst);
        if let Some(process) = &self.process {
            process.kill().await;
        }
        let service = self.service.lock().await.take();
        if let Some(mut service) = service {
            let _ = service.close_with_timeout(CLOSE_GRACE).await;
        }
    }
}

/// Counts a call as in flight until dropped, also when the caller gives up on it midway.
struct InFlight<'a>(&'a Connection);

impl<'a> InFlight<'a> {
    fn enter(connection: &'a Connection) -> Self {
        connection.calls_in_flight.fetch_add(1, Ordering::SeqCst);
        Self(connection)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.calls_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a call failed: the tool said so (`isError`), or the server or transport did.
enum CallFailure {
    Tool(String),
    Server(String),
}

/// Starts a stdio server and performs the MCP handshake. On failure the process is killed and the
/// last lines of its stderr are quoted.
async fn start_process(
    program: &str,
    args: &[String],
    label: &str,
    handler: Handler,
    broken: Arc<AtomicBool>,
) -> Result<(RunningService<RoleClient, Handler>, ProcessHandle), String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (name, value))),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot start `{program}`: {error}"))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(format!("cannot start `{program}`: no pipes to it"));
    };
    let mut process = ServerProcess::new(child);
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr_reader = tokio::spawn(log_stderr(stderr, label.to_owned(), stderr_tail.clone()));
    match handler.serve((stdout, stdin)).await {
        Ok(service) => Ok((service, ProcessHandle::watch(process, label, broken))),
        Err(error) => {
            // The process likely exited; give its last words a moment to arrive.
            let _ = tokio::time::timeout(Duration::from_millis(500), stderr_reader).await;
            let mut message = match process.exit_status() {
                Some(status) => format!("it exited ({status}) during the MCP handshake"),
                None => format!("the MCP handshake failed: {}", handshake_error(&error)),
            };
            drop(process);
            let tail = stderr_tail
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if !tail.is_empty() {
                message.push_str("; its stderr ended with:");
                for line in tail.iter() {
                    let _ = write!(message, "\n{line}");
                }
            }
            Err(message)
        }
    }
}

/// Logs a server's stderr at debug level and keeps its last lines.
async fn log_stderr(stderr: ChildStderr, label: String, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = truncate(&line, STDERR_LINE_BYTES);
        tracing::debug!(mcp.endpoint = %label, stderr = %line, "MCP server stderr");
        let mut tail = tail.lock().unwrap_or_else(|poison| poison.into_inner());
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// A stdio server's child process. Until it has been reaped, its pid is still its process group's
/// id, so killing the group cannot hit an unrelated process; dropping it kills the group.
struct ServerProcess {
    /// Taken at the start: the child forgets its pid once reaped.
    group: Option<u32>,
    child: Child,
    reaped: bool,
}

impl ServerProcess {
    fn new(child: Child) -> Self {
        Self {
            group: child.id(),
            child,
            reaped: false,
        }
    }

    /// How the process ended, if it has (and then it is reaped, and its group killed).
    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.try_wait().ok().flatten()?;
        self.reaped = true;
        self.kill_group();
        Some(status)
    }

    /// Waits for the process to exit and reaps it.
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await;
        self.reaped = status.is_ok();
        status
    }

    fn kill_group(&self) {
        #[cfg(unix)]
        if let Some(group) = self.group.and_then(|pid| i32::try_from(pid).ok()) {
            use nix::sys::signal::{killpg, Signal};
            use nix::unistd::Pid;
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.reaped {
            // `kill_on_drop` ends the leader; this ends whatever it started.
            self.kill_group();
        }
    }
}

/// The task that owns a stdio server's process: it marks the connection broken when the process
/// exits, and kills the process group when asked to (or when the connection is dropped).
struct ProcessHandle {
    stop: CancellationToken,
    watcher: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    _stop_on_drop: DropGuard,
}

impl ProcessHandle {
    fn watch(mut process: ServerProcess, label: &str, broken: Arc<AtomicBool>) -> Self {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let label = label.to_owned();
        let watcher = tokio::spawn(async move {
            let exited = tokio::select! {
                status = process.wait() => Some(status),
                () = stopped.cancelled() => None,
            };
            broken.store(true, Ordering::SeqCst);
            match exited {
                Some(status) => {
                    tracing::debug!(mcp.endpoint = %label, ?status, "MCP server exited");
                    // Whatever it started goes too; its group id is reused only once it is empty.
                    process.kill_group();
                }
                None => {
                    process.kill_group();
                    let _ = process.wait().await;
                }
            }
        });
        Self {
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            watcher: tokio::sync::Mutex::new(Some(watcher)),
        }
    }

    /// Kills the process group and waits a moment for the process to be reaped.
    async fn kill(&self) {
        self.stop.cancel();
        let watcher = self.watcher.lock().await.take();
        if let Some(watcher) = watcher {
            let _ = tokio::time::timeout(CLOSE_GRACE, watcher).await;
        }
    }
}

/// rmcp's HTTP client (reqwest 0.13 without a provider) needs a process-wide rustls crypto
/// provider; ring is the one the rest of agentd already uses. One installed earlier stays.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

/// An MCP tool as a server tool. It holds the pool weakly and looks its connection up on every
/// call, so a connection that died or idled out is opened again.
struct McpTool {
    pool: Weak<Pool>,
    server: String,
    endpoint: Endpoint,
    /// The tool's name on the server.
    remote_name: String,
    name: String,
    description: String,
    parameters: Value,
}

#[async_trait]
impl ServerTool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        self.parameters.clone()
    }

    async fn call(&self, arguments: Value) -> Result<String, String> {
        let arguments = match arguments {
            Value::Object(arguments) => arguments,
            // A model calling a tool without arguments may send nothing.
            Value::Null => Map::new(),
            other => {
                return Err(format!(
                    "the arguments of `{}` must be a JSON object, not {}",
                    self.name,
                    json_kind(&other)
                ))
            }
        };
        let named = |message: String| server_message(&self.server, &self.endpoint, &message);
        let pool = self
            .pool
            .upgrade()
            .ok_or_else(|| named("the MCP connection pool has shut down".to_owned()))?;
        let connection = pool.connection(&self.endpoint).await.map_err(named)?;
        match connection
            .call(&self.remote_name, arguments, pool.call_timeout())
            .await
        {
            Ok(text) => Ok(text),
            Err(CallFailure::Tool(message)) => Err(message),
            Err(CallFailure::Server(message)) => Err(named(message)),
        }
    }
}

fn wrap_tools(
    server: &str,
    endpoint: &Endpoint,
    listed: &[Tool],
    pool: Weak<Pool>,
) -> Vec<Arc<dyn ServerTool>> {
    let mut taken = HashSet::new();
    listed
        .iter()
        .map(|tool| {
            let mut name = tool_name(server, &tool.name);
            if !taken.insert(name.clone()) {
                // Two names that sanitize alike: the later one gets a hash of its own.
                name = with_hash(&name, &format!("{server}\u{0}{}", tool.name));
                taken.insert(name.clone());
            }
            let description = tool
                .description
                .as_deref()
                .or(tool.title.as_deref())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("`{}` of the MCP server `{server}`", tool.name));
            Arc::new(McpTool {
                pool: pool.clone(),
                server: server.to_owned(),
                endpoint: endpoint.clone(),
                remote_name: tool.name.to_string(),
                name,
                description,
                parameters: Value::Object((*tool.input_schema).clone()),
            }) as Arc<dyn ServerTool>
        })
        .collect()
}

/// `<server>__<tool>` with every character outside `[A-Za-z0-9_-]` replaced by `_`; a name longer
/// than 64 characters is cut and ends in a hash of the whole, so it stays unique.
fn tool_name(server: &str, tool: &str) -> String {
    let full = format!("{server}__{tool}");
    let clean: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= MAX_TOOL_NAME {
        return clean;
    }
    with_hash(&clean, &full)
}

/// `name` cut to leave room for `_` and eight hex digits of a hash of `whole`.
fn with_hash(name: &str, whole: &str) -> String {
    let mut cut = name.to_owned();
    cut.truncate(MAX_TOOL_NAME - 9);
    format!("{cut}_{:08x}", fnv1a(whole.as_bytes()) as u32)
}

/// FNV-1a: a hash that stays the same across builds, so a tool keeps its name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A `tools/call` result (wire JSON) as text for the model: text blocks joined with newlines, other
/// blocks summarised; structured content when there is nothing else. `isError` makes it an `Err`.
fn render_call_result(result: &Value) -> Result<String, String> {
    let blocks = result
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut parts: Vec<String> = blocks.iter().map(render_block).collect();
    if parts.is_empty() {
        if let Some(structured) = result.get("structuredContent") {
            parts.push(structured.to_string());
        }
    }
    let text = parts.join("\n");
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        if text.is_empty() {
            return Err("the tool failed without saying why".to_owned());
        }
        return Err(text);
    }
    Ok(text)
}

fn render_block(block: &Value) -> String {
    let field = |name: &str| block.get(name).and_then(Value::as_str).unwrap_or_default();
    let kind = field("type");
    match kind {
        "text" => field("text").to_owned(),
        "image" | "audio" => format!(
            "[{kind} {}, {} bytes base64]",
            or_unknown(field("mimeType")),
            field("data").len()
        ),
        "resource" => {
            let resource = block.get("resource").unwrap_or(&Value::Null);
            let field = |name: &str| resource.get(name).and_then(Value::as_str);
            let uri = field("uri").unwrap_or_default();
            match (field("text"), field("blob")) {
                (Some(text), _) => format!("[resource {uri}]\n{text}"),
                (None, Some(blob)) => format!(
                    "[resource {uri} {}, {} bytes base64]",
                    or_unknown(field("mimeType").unwrap_or_default()),
                    blob.len()
                ),
                (None, None) => format!("[resource {uri}]"),
            }
        }
        "resource_link" => match field("name") {
            "" => format!("[resource link {}]", field("uri")),
            name => format!("[resource link {} ({name})]", field("uri")),
        },
        other => format!("[{} content]", or_unknown(other)),
    }
}

/// An rmcp handshake error without the transport's type name.
fn handshake_error(error: &ClientInitializeError) -> String {
    match error {
        ClientInitializeError::TransportError { error, context } => {
            format!("{} ({context})", error_chain(&*error.error))
        }
        other => other.to_string(),
    }
}

/// An rmcp request error without the transport's type name.
fn service_error(error: &ServiceError) -> String {
    match error {
        ServiceError::TransportSend(error) => error_chain(&*error.error),
        other => other.to_string(),
    }
}

/// An error and its sources, `: `-separated, skipping a source its predecessor already quotes.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn or_unknown(value: &str) -> &str {
    if value.is_empty() {
        "unknown"
    } else {
        value
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` cut to at most `max` bytes, on a character boundary, marked with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tool_names_are_namespaced_sanitized_and_short() {
        assert_eq!(tool_name("everything", "get-sum"), "everything__get-sum");
        assert_eq!(tool_name("files", "read.file v2"), "files__read_file_v2");
        let long = tool_name("a-server-with-a-rather-long-name", &"x".repeat(60));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("a-server-with-a-rather-long-name__xxx"));
        let other = tool_name("a-server-with-a-rather-long-name", &"x".repeat(61));
        assert_ne!(long, other, "cut names keep apart by their hash");
        assert_eq!(
            long,
            tool_name("a-server-with-a-rather-long-name", &"x".repeat(60))
        );
    }

    #[test]
    fn results_become_text() {
        let result = json!({"content": [
            {"type": "text", "text": "one"},
            {"type": "image", "mimeType": "image/png", "data": "QUJD"},
            {"type": "resource", "resource": {"uri": "demo://a", "text": "body"}},
            {"type": "resource", "resource": {"uri": "demo://b", "mimeType": "application/gzip", "blob": "AAAA"}},
            {"type": "resource_link", "uri": "demo://c", "name": "c"},
            {"type": "text", "text": "two"},
        ]});
        assert_eq!(
            render_call_result(&result).unwrap(),
            "one\n[image image/png, 4 bytes base64]\n[resource demo://a]\nbody\n\
             [resource demo://b application/gzip, 4 bytes base64]\n[resource link demo://c (c)]\ntwo"
        );
        let structured = json!({"content": [], "structuredContent": {"a": 1}});
        assert_eq!(render_call_result(&structured).unwrap(), r#"{"a":1}"#);
        let failed =
            json!({"content": [{"type": "text", "text": "no such file"}], "isError": true});
        assert_eq!(render_call_result(&failed).unwrap_err(), "no such file");
        let silent = json!({"content": [], "isError": true});
        assert!(render_call_result(&silent).is_err());
    }

    #[test]
    fn config_defaults_fill_gaps() {
        let config: McpConfig = serde_json::from_value(json!({"call_timeout_ms": 5})).unwrap();
        assert_eq!(
            config,
            McpConfig {
                call_timeout_ms: 5,
                ..McpConfig::default()
            }
        );
        assert_eq!(McpConfig::default().connect_timeout_ms, 10_000);
        assert_eq!(McpConfig::default().idle_ttl_secs, 300);
    }

    #[test]
    fn a_server_needs_a_command_or_a_url() {
        let spec = McpServerSpec {
            name: "m".into(),
            command: None,
            args: vec![],
            url: None,
        };
        assert!(Endpoint::of(&spec).is_err());
        let spec = McpServerSpec {
            command: Some("npx".into()),
            args: vec!["-y".into(), "pkg".into()],
            ..spec
        };
        assert_eq!(Endpoint::of(&spec).unwrap().describe(), "npx -y pkg");
    }
}
