//! `McpPool` against the reference server `@modelcontextprotocol/server-everything`, over stdio and
//! streamable HTTP.
//!
//! The server comes from `agentd_testkit::mcp::everything` (installed once, pinned).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentd_core::agent::McpServerSpec;
use agentd_runtime::tools::mcp::{McpConfig, McpPool};
use agentd_runtime::tools::ServerTool;
use serde_json::{json, Value};

use agentd_testkit::mcp::everything;

/// A pool configuration that lets agents start any stdio server.
fn trusting() -> McpConfig {
    McpConfig {
        allowed_commands: vec!["*".to_owned()],
        ..McpConfig::default()
    }
}

fn stdio_spec(bin: &Path, args: &[&str]) -> McpServerSpec {
    McpServerSpec {
        name: "everything".into(),
        command: Some(bin.display().to_string()),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        url: None,
    }
}

fn url_spec(url: &str) -> McpServerSpec {
    McpServerSpec {
        name: "everything".into(),
        command: None,
        args: vec![],
        url: Some(url.to_owned()),
    }
}

fn find<'a>(tools: &'a [Arc<dyn ServerTool>], name: &str) -> &'a Arc<dyn ServerTool> {
    tools
        .iter()
        .find(|tool| tool.name() == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = tools.iter().map(|tool| tool.name()).collect();
            panic!("no tool `{name}` among {names:?}")
        })
}

/// A unique argument to find a server's process by (server-everything ignores extra arguments).
fn process_marker(test: &str) -> String {
    format!("agentd-mcp-test-{test}-{}", std::process::id())
}

/// Pids of live processes whose command line holds `marker`.
fn pids_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

async fn wait_until_gone(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids_with(marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes {:?} outlived their pool",
            pids_with(marker)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The streamable HTTP flavour of server-everything on a free port, killed on drop.
struct HttpEverything {
    _child: tokio::process::Child,
    url: String,
}

impl HttpEverything {
    async fn start(bin: &Path) -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(bin)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting mcp-server-everything streamableHttp");
        // It listens on every interface; we only ever talk to loopback.
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "port {port} never opened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The story every transport must tell: list, echo, add, reuse.
async fn lists_and_calls(pool: &McpPool, spec: &McpServerSpec) {
    let started = Instant::now();
    let tools = pool.tools(spec).await.expect("listing tools");
    let listed_in = started.elapsed();
    let echo = find(&tools, "everything__echo");
    assert!(!echo.description().is_empty());
    assert_eq!(echo.parameters()["type"], "object");
    assert_eq!(echo.parameters()["properties"]["message"]["type"], "string");
    assert!(
        tools.iter().all(|tool| tool.name().len() <= 64
            && tool.name().starts_with("everything__")
            && tool
                .name()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')),
        "every name is namespaced and sanitized"
    );
    assert_eq!(
        echo.call(json!({"message": "hi"})).await.unwrap(),
        "Echo: hi"
    );
    let sum = find(&tools, "everything__get-sum")
        .call(json!({"a": 2, "b": 3.5}))
        .await
        .unwrap();
    assert!(sum.contains("5.5"), "{sum}");
    let refused = echo.call(json!(["hi"])).await.unwrap_err();
    assert!(refused.contains("must be a JSON object"), "{refused}");

    let started = Instant::now();
    let again = pool.tools(spec).await.expect("listing tools again");
    let relisted_in = started.elapsed();
    assert_eq!(again.len(), tools.len());
    assert_eq!(
        pool.connections(),
        1,
        "the second listing reuses the connection"
    );
    eprintln!("first listing {listed_in:?} (connecting), second {relisted_in:?}");
}

#[tokio::test]
async fn stdio_server_tools_are_listed_and_called() {
    let Some(bin) = everything() else { return };
    let pool = McpPool::new(trusting());
    let spec = stdio_spec(&bin, &[]);
    lists_and_calls(&pool, &spec).await;

    let tools = pool.tools(&spec).await.unwrap();
    let image = find(&tools, "everything__get-tiny-image")
        .call(json!({}))
        .await
        .unwrap();
    assert!(image.contains("[image image/png, "), "{image}");
    assert!(image.contains(" bytes base64]"), "{image}");

    // The server sees a short list of our environment, not all of it.
    let env = find(&tools, "everything__get-env")
        .call(Value::Null)
        .await
        .unwrap();
    assert!(env.contains("PATH"), "{env}");
    assert!(!env.contains("CARGO_MANIFEST_DIR"), "{env}");
    pool.shutdown().await;
}

#[tokio::test]
async fn http_server_tools_are_listed_and_called() {
    let Some(bin) = everything() else { return };
    let server = HttpEverything::start(&bin).await;
    let pool = McpPool::new(trusting());
    lists_and_calls(&pool, &url_spec(&server.url)).await;
    pool.shutdown().await;
    assert_eq!(pool.connections(), 0);
}

#[tokio::test]
async fn a_server_that_cannot_start_is_named() {
    let pool = McpPool::new(trusting());
    let spec = McpServerSpec {
        name: "ghost".into(),
        command: Some("agentd-no-such-mcp-server".into()),
        args: vec!["--flag".into()],
        url: None,
    };
    let error = pool.tools(&spec).await.err().expect("no such command");
    assert!(
        error.starts_with("MCP server `ghost` (agentd-no-such-mcp-server --flag): cannot start"),
        "{error}"
    );
    assert_eq!(pool.connections(), 0);

    // A command that starts but speaks no MCP: its stderr is quoted.
    let spec = McpServerSpec {
        name: "mute".into(),
        command: Some("sh".into()),
        args: vec!["-c".into(), "echo 'cannot find config' >&2; exit 3".into()],
        url: None,
    };
    let error = pool.tools(&spec).await.err().expect("no MCP");
    assert!(error.starts_with("MCP server `mute` (sh -c "), "{error}");
    assert!(error.contains("cannot find config"), "{error}");

    let spec = url_spec(&format!("http://127.0.0.1:{}/mcp", free_port()));
    let pool = McpPool::new(McpConfig {
        connect_timeout_ms: 3_000,
        ..trusting()
    });
    let started = Instant::now();
    let error = pool.tools(&spec).await.err().expect("nothing listens");
    assert!(
        error.starts_with("MCP server `everything` (http://127.0.0.1:"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_slow_call_times_out_and_the_connection_lives_on() {
    let Some(bin) = everything() else { return };
    let pool = McpPool::new(McpConfig {
        call_timeout_ms: 500,
        ..trusting()
    });
    let tools = pool.tools(&stdio_spec(&bin, &[])).await.unwrap();
    let started = Instant::now();
    let error = find(&tools, "everything__trigger-long-running-operation")
        .call(json!({"duration": 5, "steps": 5}))
        .await
        .unwrap_err();
    assert!(error.contains("no answer within 500 ms"), "{error}");
    assert!(error.starts_with("MCP server `everything` ("), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        find(&tools, "everything__echo")
            .call(json!({"message": "still here"}))
            .await
            .unwrap(),
        "Echo: still here"
    );
    assert_eq!(pool.connections(), 1);
    pool.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_dead_server_is_started_again() {
    let Some(bin) = everything() else { return };
    let marker = process_marker("restart");
    let pool = McpPool::new(trusting());
    let spec = stdio_spec(&bin, &["stdio", &marker]);
    let tools = pool.tools(&spec).await.unwrap();
    let first = pids_with(&marker);
    assert_eq!(first.len(), 1, "{first:?}");
    std::process::Command::new("kill")
        .args(["-9", &first[0].to_string()])
        .status()
        .unwrap();

    // The call that meets the dead connection may fail; the next one starts the server again.
    let echo = find(&tools, "everything__echo");
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match echo.call(json!({"message": "again"})).await {
            Ok(answer) => break answer,
            Err(error) => {
                assert!(Instant::now() < deadline, "never came back: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(answer, "Echo: again");
    let second = pids_with(&marker);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second);
    assert_eq!(pool.connections(), 1);
    pool.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn shutdown_and_drop_kill_the_servers() {
    let Some(bin) = everything() else { return };
    let marker = process_marker("shutdown");
    let pool = McpPool::new(trusting());
    let spec = stdio_spec(&bin, &["stdio", &marker]);
    let tools = pool.tools(&spec).await.unwrap();
    assert_eq!(pids_with(&marker).len(), 1);
    pool.shutdown().await;
    wait_until_gone(&marker).await;
    assert_eq!(pool.connections(), 0);
    let error = pool.tools(&spec).await.err().expect("shut down");
    assert!(error.contains("shut down"), "{error}");
    let error = find(&tools, "everything__echo")
        .call(json!({"message": "hi"}))
        .await
        .unwrap_err();
    assert!(error.contains("shut down"), "{error}");

    let marker = process_marker("drop");
    let pool = McpPool::new(trusting());
    pool.tools(&stdio_spec(&bin, &["stdio", &marker]))
        .await
        .unwrap();
    assert_eq!(pids_with(&marker).len(), 1);
    drop(pool);
    wait_until_gone(&marker).await;

    // What the server started goes too, even when it would outlive the server (as `npx` leaves
    // its child): here the server leaves a shell behind that sleeps for a minute.
    let marker = process_marker("descendant");
    let pool = McpPool::new(trusting());
    let line = format!(
        "sh -c 'sleep 60; : {marker}' </dev/null >/dev/null 2>&1 & exec '{}' stdio {marker}",
        bin.display()
    );
    let spec = McpServerSpec {
        name: "wrapped".into(),
        command: Some("sh".into()),
        args: vec!["-c".into(), line],
        url: None,
    };
    pool.tools(&spec).await.unwrap();
    assert_eq!(pids_with(&marker).len(), 2, "the server and the shell");
    drop(pool);
    wait_until_gone(&marker).await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let Some(bin) = everything() else { return };
    let pool = McpPool::new(McpConfig {
        idle_ttl_secs: 1,
        ..trusting()
    });
    let spec = stdio_spec(&bin, &[]);
    let tools = pool.tools(&spec).await.unwrap();
    assert_eq!(pool.connections(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.connections() > 0 {
        assert!(Instant::now() < deadline, "the idle connection stayed open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A tool from before opens a new connection when called.
    assert_eq!(
        find(&tools, "everything__echo")
            .call(json!({"message": "back"}))
            .await
            .unwrap(),
        "Echo: back"
    );
    assert_eq!(pool.connections(), 1);
    pool.shutdown().await;
}
