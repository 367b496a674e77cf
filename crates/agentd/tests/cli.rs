//! The compiled `agentd` binary, driven the way an operator drives it: `serve` (health, the first
//! admin key printed once and never logged, graceful shutdown on SIGINT, keys surviving a restart),
//! `config` (precedence and masking), `keys create`, and a run surviving a SIGKILL of its server as a
//! `RunError`.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agentd");
const KEY_PREFIX: &str = "agentd_";
const KEY_SECRET_CHARS: usize = 40;

/// A command for the binary with no `AGENTD_*` variable inherited from the host and `RUST_LOG=info`.
fn agentd() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AGENTD_") {
            command.env_remove(&name);
        }
    }
    command.env("RUST_LOG", "info");
    command
}

/// A loopback address nobody listens on (at the moment of asking).
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    let addr = listener.local_addr().expect("a local address");
    drop(listener);
    addr.to_string()
}

/// Every `agentd_` + 40 ASCII alphanumerics token in `text`.
fn find_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for (start, _) in text.match_indices(KEY_PREFIX) {
        let preceded_by_word = text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let secret: String = text[start + KEY_PREFIX.len()..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        if !preceded_by_word && secret.len() == KEY_SECRET_CHARS {
            keys.push(format!("{KEY_PREFIX}{secret}"));
        }
    }
    keys
}

/// Copies a pipe into a shared buffer until end of file.
fn capture(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buffer);
    let reader = std::thread::spawn(move || {
        let mut chunk = [0_u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .expect("the buffer lock")
                    .extend_from_slice(&chunk[..n]),
            }
        }
    });
    (buffer, reader)
}

fn text_of(buffer: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buffer.lock().expect("the buffer lock")).into_owned()
}

/// What a stopped server left behind.
struct Stopped {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// `agentd serve` running as a child process; killed on drop if still alive.
struct Server {
    child: Child,
    base_url: String,
    spawned_at: Instant,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Server {
    fn spawn(data_dir: &Path, addr: &str) -> Self {
        Self::spawn_with_env(data_dir, addr, &[])
    }

    fn spawn_with_env(data_dir: &Path, addr: &str, env: &[(&str, String)]) -> Self {
        let mut command = agentd();
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", addr])
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning agentd serve");
        let spawned_at = Instant::now();
        let (stdout, out_reader) = capture(child.stdout.take().expect("piped stdout"));
        let (stderr, err_reader) = capture(child.stderr.take().expect("piped stderr"));
        Self {
            child,
            base_url: format!("http://{addr}"),
            spawned_at,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn stdout(&self) -> String {
        text_of(&self.stdout)
    }

    fn stderr(&self) -> String {
        text_of(&self.stderr)
    }

    /// Polls `GET /health` until it answers 200; returns how long after spawning that was. Panics
    /// (with the server's output) if the process exits or 10 seconds pass first.
    async fn wait_healthy(&mut self, client: &reqwest::Client) -> Duration {
        let deadline = self.spawned_at + Duration::from_secs(10);
        loop {
            let response = client
                .get(self.url("/health"))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if let Ok(response) = response {
                if response.status() == 200 {
                    return self.spawned_at.elapsed();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "agentd serve exited with {status} before becoming healthy\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agentd serve not healthy after 10 s\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGINT, waits up to 10 seconds for the process to exit and returns its status and output.
    fn stop(&mut self) -> Stopped {
        let pid = self.child.id();
        let signalled = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(signalled.success(), "kill -INT {pid} failed: {signalled}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for agentd") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "agentd serve did not exit within 10 s of SIGINT\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Stopped {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn output_text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_health_quickly_prints_the_admin_key_once_and_shuts_down_gracefully() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let addr = free_addr();
    let client = reqwest::Client::new();

    // First start: a fresh data directory, so an admin key is made and printed.
    let mut server = Server::spawn(data.path(), &addr);
    let healthy_after = server.wait_healthy(&client).await;
    assert!(
        healthy_after <= Duration::from_secs(2),
        "/health took {healthy_after:?} to answer 200"
    );
    let printed = find_keys(&server.stdout());
    assert_eq!(
        printed.len(),
        1,
        "one admin key on stdout:\n{}",
        server.stdout()
    );
    let key = printed[0].clone();

    let listed = client
        .get(server.url("/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET /keys");
    assert_eq!(listed.status(), 200, "GET /keys with the printed admin key");

    // Put the key where a careless log would copy it: the query string and the path.
    for path in [format!("/keys?api_key={key}"), format!("/nope/{key}")] {
        let response = client
            .get(server.url(&path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            !response.status().is_server_error(),
            "GET {path}: {}",
            response.status()
        );
    }

    let first = server.stop();
    assert!(
        first.status.success(),
        "exit after SIGINT: {}\nstderr:\n{}",
        first.status,
        first.stderr
    );
    assert!(
        !first.stderr.contains(&key),
        "the log holds the admin key:\n{}",
        first.stderr
    );
    assert!(
        find_keys(&first.stderr).is_empty(),
        "the log holds a key:\n{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("[REDACTED]"),
        "the request for /nope/<key> should be logged with the key masked:\n{}",
        first.stderr
    );
    assert_eq!(
        first.stdout.matches(&key).count(),
        1,
        "the admin key is printed exactly once:\n{}",
        first.stdout
    );
    drop(server);

    // Second start on the same data directory and port: the old key still works, no new one is printed.
    let mut server = Server::spawn(data.path(), &addr);
    server.wait_healthy(&client).await;
    let listed = client
        .get(server.url("/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET /keys after restart");
    assert_eq!(listed.status(), 200, "the admin key survives a restart");
    let second = server.stop();
    assert!(
        second.status.success(),
        "exit after SIGINT: {}\nstderr:\n{}",
        second.status,
        second.stderr
    );
    assert!(
        !second.stdout.contains(KEY_PREFIX),
        "a restart prints no key:\n{}",
        second.stdout
    );
    assert!(
        !second.stderr.contains(&key),
        "the log holds the admin key:\n{}",
        second.stderr
    );
}

#[test]
fn config_command_prints_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = |args: &[&str], env: &[(&str, &str)]| -> String {
        let mut command = agentd();
        command.arg("config").args(args).current_dir(dir.path());
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().expect("running agentd config");
        let (stdout, stderr) = output_text(&output);
        assert!(
            output.status.success(),
            "agentd config {args:?} {env:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        );
        stdout
    };

    let shown = run(
        &[
            "--database-url",
            "postgres://agentd:hunter2@db:5432/agentd",
            "--listen",
            "127.0.0.1:9999",
        ],
        &[("AGENTD_LOG__FORMAT", "json")],
    );
    assert!(
        shown.contains("127.0.0.1:9999"),
        "the --listen flag:\n{shown}"
    );
    assert!(
        shown.contains("format = \"json\""),
        "AGENTD_LOG__FORMAT sets log.format:\n{shown}"
    );
    assert!(
        !shown.contains("hunter2"),
        "the database password is masked:\n{shown}"
    );
    assert!(
        shown.contains("postgres://agentd:") && shown.contains("@db:5432/agentd"),
        "the rest of the database URL is shown:\n{shown}"
    );

    std::fs::write(
        dir.path().join("agentd.toml"),
        "listen = \"127.0.0.1:1234\"\nmax_body_bytes = 4096\n",
    )
    .expect("writing agentd.toml");

    let shown = run(&[], &[]);
    assert!(
        shown.contains("127.0.0.1:1234"),
        "listen from agentd.toml:\n{shown}"
    );
    assert!(
        shown.contains("4096"),
        "max_body_bytes from agentd.toml:\n{shown}"
    );

    let shown = run(&[], &[("AGENTD_LISTEN", "127.0.0.1:5678")]);
    assert!(
        shown.contains("127.0.0.1:5678"),
        "the environment beats the file:\n{shown}"
    );
    assert!(
        !shown.contains("127.0.0.1:1234"),
        "the environment beats the file:\n{shown}"
    );
    assert!(shown.contains("4096"), "the file still applies:\n{shown}");

    let shown = run(
        &["--listen", "127.0.0.1:4321"],
        &[("AGENTD_LISTEN", "127.0.0.1:5678")],
    );
    assert!(
        shown.contains("127.0.0.1:4321"),
        "the flag beats the environment:\n{shown}"
    );
    assert!(
        !shown.contains("5678") && !shown.contains("1234"),
        "the flag beats the environment and the file:\n{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_plan_command_puts_a_tenant_on_a_configured_plan() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let plan = |args: &[&str]| -> Output {
        agentd()
            .args(["tenants", "plan"])
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env("AGENTD_PLANS__PRO__MONTHLY_TOKENS", "5")
            .current_dir(data.path())
            .stdin(Stdio::null())
            .output()
            .expect("running agentd tenants plan")
    };
    let stored_plan = || async {
        let config = agentd_runtime::Config {
            data_dir: data.path().to_path_buf(),
            ..Default::default()
        };
        let started = agentd_runtime::Runtime::start(config).await.unwrap();
        let slug = agentd_core::TenantSlug::default_tenant();
        let tenant = started
            .runtime
            .store
            .get_tenant_by_slug(&slug)
            .await
            .unwrap();
        started.runtime.store.close().await;
        tenant.expect("the default tenant").plan
    };

    let unknown = plan(&["default", "gold"]);
    let (stdout, stderr) = output_text(&unknown);
    assert!(!unknown.status.success(), "an unknown plan is refused");
    assert!(
        stderr.contains("no plan `gold`") && stderr.contains("pro"),
        "the error names the plan and the configured ones:\n{stderr}"
    );
    assert!(
        stdout.contains("agentd_"),
        "the first start shows the admin key:\n{stdout}"
    );
    assert_eq!(stored_plan().await, None);

    let set = plan(&["default", "pro"]);
    assert!(set.status.success(), "{:?}", output_text(&set));
    assert_eq!(stored_plan().await.as_deref(), Some("pro"));

    let missing = plan(&["nobody", "pro"]);
    assert!(!missing.status.success());
    assert!(output_text(&missing).1.contains("no tenant `nobody`"));

    let reset = plan(&["default", "--default"]);
    assert!(reset.status.success(), "{:?}", output_text(&reset));
    assert_eq!(stored_plan().await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_create_command_makes_a_working_key() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let addr = free_addr();
    let client = reqwest::Client::new();
    let mut server = Server::spawn(data.path(), &addr);
    server.wait_healthy(&client).await;

    let data_dir = data.path().to_path_buf();
    let keys_create = move |scopes: &str| -> Output {
        agentd()
            .args(["keys", "create", "--data-dir"])
            .arg(&data_dir)
            .args(["--scopes", scopes, "--name", "ci"])
            .current_dir(&data_dir)
            .stdin(Stdio::null())
            .output()
            .expect("running agentd keys create")
    };

    let output = tokio::task::spawn_blocking({
        let keys_create = keys_create.clone();
        move || keys_create("keys:read")
    })
    .await
    .expect("the blocking task");
    let (stdout, stderr) = output_text(&output);
    assert!(
        output.status.success(),
        "agentd keys create: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let key = stdout
        .lines()
        .find_map(|line| line.strip_prefix("key:"))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no `key:` line in:\n{stdout}"));
    assert_eq!(
        find_keys(&key),
        vec![key.clone()],
        "a well-formed key: {key}"
    );
    assert!(
        !stderr.contains(&key),
        "the log holds the new key:\n{stderr}"
    );

    let listed = client
        .get(server.url("/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET /keys");
    assert_eq!(listed.status(), 200, "keys:read lets the key list keys");

    let refused = client
        .post(server.url("/keys"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "x", "scopes": ["keys:read"]}))
        .send()
        .await
        .expect("POST /keys");
    assert_eq!(
        refused.status(),
        403,
        "keys:read does not allow creating keys"
    );
    let body: serde_json::Value = refused.json().await.expect("a JSON problem body");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("keys:write"),
        "the detail names the missing scope: {body}"
    );

    let output = tokio::task::spawn_blocking(move || keys_create("not a scope"))
        .await
        .expect("the blocking task");
    let (stdout, stderr) = output_text(&output);
    assert!(
        !output.status.success(),
        "an invalid scope must fail\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        find_keys(&stdout).is_empty(),
        "no key is printed on failure:\n{stdout}"
    );

    let stopped = server.stop();
    assert!(
        stopped.status.success(),
        "exit after SIGINT: {}\nstderr:\n{}",
        stopped.status,
        stopped.stderr
    );
}

/// A server killed with SIGKILL mid-run leaves no run `running`: the next start ends it with one
/// `RunError`, and its event stream ends.
#[tokio::test]
async fn a_killed_server_leaves_no_run_running() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let addr = free_addr();
    let client = reqwest::Client::new();
    let model = agentd_testkit::ScriptedModel::start().await;
    model.push(agentd_testkit::Reply::hang());
    let env = [
        ("AGENTD_PROVIDERS__SCRIPTED__KIND", "openai".to_owned()),
        (
            "AGENTD_PROVIDERS__SCRIPTED__BASE_URL",
            format!("{}/v1", model.url()),
        ),
    ];
    let mut server = Server::spawn_with_env(data.path(), &addr, &env);
    server.wait_healthy(&client).await;
    let key = find_keys(&server.stdout())[0].clone();
    let agent: serde_json::Value = client
        .post(server.url("/agents"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "victim", "model": "scripted/m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = agent["id"].as_str().unwrap().to_owned();
    let accepted: serde_json::Value = client
        .post(server.url(&format!("/agents/{agent}/runs")))
        .bearer_auth(&key)
        .form(&[
            ("message", "hang"),
            ("stream", "false"),
            ("background", "true"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    // Wait until the model has the request, so the run is in flight.
    let deadline = Instant::now() + Duration::from_secs(5);
    while model.requests().is_empty() {
        assert!(Instant::now() < deadline, "the run never reached the model");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();

    let mut server = Server::spawn_with_env(data.path(), &addr, &env);
    server.wait_healthy(&client).await;
    let run: serde_json::Value = client
        .get(server.url(&format!("/agents/{agent}/runs/{run_id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["status"], "ERROR", "{run}");
    let events = client
        .get(server.url(&format!("/agents/{agent}/runs/{run_id}/events")))
        .bearer_auth(&key)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = agentd_testkit::sse::parse(&events);
    let terminals: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.event.as_deref())
        .filter(|e| matches!(*e, "RunCompleted" | "RunCancelled" | "RunError"))
        .collect();
    assert_eq!(terminals, ["RunError"], "{events}");
    assert_eq!(
        frames.last().unwrap().data["error_type"],
        "server_restarted"
    );
    server.stop();
}

/// `agentd audit verify` against a database a server wrote its audit log to, on both backends: an
/// untouched log verifies; an altered entry, a deleted last entry and a deleted entry in the middle
/// each make it fail and name the entry.
mod audit {
    use std::process::{Output, Stdio};

    use agentd_testkit::{backend_tests, spawn_app, TestDb};
    use serde_json::json;
    use sqlx::Connection;

    use super::{agentd, output_text};

    fn verify(db: &TestDb, args: &[&str]) -> Output {
        agentd()
            .args(["audit", "verify", "--database-url", &db.url(), "--data-dir"])
            .arg(db.data_dir())
            .args(args)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .expect("running agentd audit verify")
    }

    /// Runs one statement on the test database, as someone with database access would.
    async fn tamper(db: &TestDb, sql: &str) {
        let url = db.url();
        let affected = if url.starts_with("postgres") {
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            let done = sqlx::query(sql).execute(&mut connection).await.unwrap();
            done.rows_affected()
        } else {
            let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let done = sqlx::query(sql).execute(&mut connection).await.unwrap();
            done.rows_affected()
        };
        assert_eq!(affected, 1, "{sql}");
    }

    /// Verification fails, and its report names the tenant, the seq, the entry and what is wrong.
    fn assert_broken(db: &TestDb, seq: u64, id: &str, what: &str) {
        let output = verify(db, &[]);
        let (stdout, stderr) = output_text(&output);
        assert!(
            !output.status.success(),
            "verify must fail\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let broken = stdout
            .lines()
            .find(|line| line.starts_with("BROKEN"))
            .unwrap_or_else(|| panic!("no BROKEN line:\n{stdout}\nstderr:\n{stderr}"));
        for part in ["tenant `default`", &format!("seq {seq}"), id, what] {
            assert!(broken.contains(part), "`{part}` in: {broken}");
        }
        assert!(
            stderr.contains("has been tampered with"),
            "stderr:\n{stderr}"
        );
    }

    async fn audit_verify_names_an_altered_or_deleted_entry(db: TestDb) {
        let mut app = spawn_app(db.clone()).await;
        let agent = app.create_agent_id(&json!({"name": "audited"})).await;
        for action in ["pause", "resume", "pause"] {
            let response = app
                .post_json(&format!("/agents/{agent}/{action}"), &json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{action}");
        }
        app.create_key(&["agents:read"]).await;
        let anonymous = app.client.post(app.url("/agents")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let tenant = app
            .runtime
            .store
            .get_tenant_by_slug(&agentd_core::TenantSlug::default_tenant())
            .await
            .unwrap()
            .expect("the default tenant")
            .id;
        app.runtime.audit.flush().await;
        let chain = app.runtime.store.audit_chain(tenant, 0, 100).await.unwrap();
        app.stop().await;
        assert_eq!(chain.len(), 5, "{chain:#?}");
        let id = |seq: usize| chain[seq - 1].record.id.to_string();

        let output = verify(&db, &[]);
        let (stdout, stderr) = output_text(&output);
        assert!(
            output.status.success(),
            "an untouched log verifies\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stdout.contains("tenant `default`") && stdout.contains("5 entries"),
            "{stdout}"
        );
        assert!(stdout.contains("the platform chain"), "the 401: {stdout}");
        assert!(
            stdout.contains("audit log verified: 6 entries in 2 chains"),
            "{stdout}"
        );
        let only = verify(&db, &["--tenant", "default"]);
        let (stdout, _) = output_text(&only);
        assert!(
            only.status.success() && stdout.contains("5 entries in 1 chain"),
            "{stdout}"
        );
        let unknown = verify(&db, &["--tenant", "nobody"]);
        assert!(!unknown.status.success());
        assert!(output_text(&unknown).1.contains("no tenant `nobody`"));

        // One column of one row changed.
        let where_seq = |seq: u64| format!("WHERE tenant_id = '{tenant}' AND seq = {seq}");
        tamper(
            &db,
            &format!("UPDATE audit_log SET status = 500 {}", where_seq(2)),
        )
        .await;
        assert_broken(&db, 2, &id(2), "does not match its contents");
        tamper(
            &db,
            &format!("UPDATE audit_log SET status = 200 {}", where_seq(2)),
        )
        .await;
        assert!(
            verify(&db, &[]).status.success(),
            "restored, it verifies again"
        );

        // The last entry deleted: the chain ends before its head.
        tamper(&db, &format!("DELETE FROM audit_log {}", where_seq(5))).await;
        assert_broken(&db, 5, "", "were deleted");
        // An entry in the middle deleted: the next one is out of place.
        tamper(&db, &format!("DELETE FROM audit_log {}", where_seq(3))).await;
        assert_broken(&db, 4, &id(4), "expected seq 3 but found seq 4");
    }

    backend_tests!(audit_verify_names_an_altered_or_deleted_entry);
}
