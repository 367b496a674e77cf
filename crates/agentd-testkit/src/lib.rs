//! Test helpers. [`TestDb`] hands out a fresh database (a SQLite file in a temporary directory, or a
//! new schema on the PostgreSQL server at `AGENTD_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`); [`spawn_app`] starts a real server on a random port
//! over it; [`backend_tests!`] runs a test on both backends. [`ScriptedModel`] is a scripted model server
//! speaking the OpenAI, Anthropic and Ollama protocols, for testing model providers and runs.
//! [`OidcProvider`] is an OpenID Connect provider, for testing OAuth logins and external JWTs.
//!
//! PostgreSQL tests run whenever the server is reachable. When it is not, they are skipped with a
//! note, except under `CI=true`, where an unreachable server fails them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentd_core::{NewApiKey, Scope, ScopeSet, Tenant, TenantSlug};
use agentd_runtime::{Config, Runtime};
use sqlx::{Connection, Executor};

pub mod mcp;
pub mod model_server;
pub mod oidc;
pub mod pdf;
pub mod python;
pub mod sse;

pub use model_server::{RecordedRequest, Reply, ScriptedModel};
pub use oidc::{OidcProvider, OidcUser};

/// The default PostgreSQL server for tests.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Test schemas are named `agentd_t_<unix seconds>_<random>`.
const SCHEMA_PREFIX: &str = "agentd_t_";
/// Test schemas older than this are dropped by the next test run.
const STALE_SCHEMA_SECONDS: u64 = 2 * 60 * 60;

/// Runs each named `async fn(TestDb)` as two tests, `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::TestDb::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::TestDb::postgres().await {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

/// A fresh, empty database for one test.
#[derive(Clone)]
pub enum TestDb {
    Sqlite { dir: Arc<tempfile::TempDir> },
    Postgres { url: String, schema: String },
}

impl TestDb {
    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::Sqlite { dir: Arc::new(dir) }
    }

    /// A new schema on the test PostgreSQL server; `None` (with a note) if the server is unreachable
    /// outside CI. Under `CI=true` an unreachable server panics.
    pub async fn postgres() -> Option<Self> {
        let base =
            std::env::var("AGENTD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let connected =
            tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&base)).await;
        let mut connection = match connected {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return unreachable_postgres(&base, &error.to_string()),
            Err(_) => return unreachable_postgres(&base, "timed out"),
        };
        drop_stale_schemas(&mut connection).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let schema = format!(
            "{SCHEMA_PREFIX}{now}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        connection
            .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
            .await
            .expect("creating a test schema");
        let _ = connection.close().await;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        Some(Self::Postgres { url, schema })
    }

    /// The database URL to configure agentd with.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { dir } => format!("sqlite://{}", dir.path().join("agentd.db").display()),
            Self::Postgres { url, .. } => url.clone(),
        }
    }

    /// A data directory that lives as long as this database.
    pub fn data_dir(&self) -> std::path::PathBuf {
        match self {
            Self::Sqlite { dir } => dir.path().to_path_buf(),
            Self::Postgres { schema, .. } => std::env::temp_dir().join(schema),
        }
    }
}

fn unreachable_postgres(url: &str, error: &str) -> Option<TestDb> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if in_ci {
        panic!("CI=true but PostgreSQL at {url} is unreachable ({error}); the PostgreSQL suite is required in CI");
    }
    eprintln!("note: PostgreSQL at {url} is unreachable ({error}); skipping this PostgreSQL test");
    None
}

static STALE_SCHEMAS_DROPPED: AtomicBool = AtomicBool::new(false);

/// Drops test schemas left behind by earlier runs (tests cannot drop their own on the way out).
async fn drop_stale_schemas(connection: &mut sqlx::PgConnection) {
    if STALE_SCHEMAS_DROPPED.swap(true, Ordering::SeqCst) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(SCHEMA_PREFIX)
            .fetch_all(&mut *connection)
            .await
            .unwrap_or_default();
    for name in names {
        let created: Option<u64> = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > STALE_SCHEMA_SECONDS) {
            let _ = connection
                .execute(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE").as_str())
                .await;
        }
    }
}

/// A running agentd server on a random port over a fresh database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    pub client: reqwest::Client,
    /// The admin key of the default tenant, made on first start.
    pub admin_key: String,
    pub runtime: Runtime,
    pub db: TestDb,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    jobs: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts a server over `db` with a [`ScriptedModel`] configured as provider `scripted` (OpenAI
/// protocol), so agents with model `scripted/<any>` run against it. `http_fetch` may reach local
/// addresses, so tests can serve pages to it.
pub async fn spawn_app_with_model(db: TestDb) -> (TestApp, ScriptedModel) {
    spawn_app_with_model_and(db, Config::default()).await
}

/// Like [`spawn_app_with_model`], starting from `config`.
pub async fn spawn_app_with_model_and(db: TestDb, mut config: Config) -> (TestApp, ScriptedModel) {
    let model = ScriptedModel::start().await;
    config.providers.insert(
        "scripted".to_owned(),
        agentd_models::ProviderConfig {
            kind: agentd_models::ProviderKind::Openai,
            base_url: format!("{}/v1", model.url()),
            api_key_env: None,
            path: None,
            connect_timeout_secs: 2,
            read_timeout_secs: 5,
            max_retries: 1,
            models: Vec::new(),
        },
    );
    config.tools.http_fetch.allow_private_networks = true;
    (spawn_app_with(db, config).await, model)
}

/// Starts a server over `db`.
pub async fn spawn_app(db: TestDb) -> TestApp {
    spawn_app_with(db, Config::default()).await
}

/// Starts a server over `db` with `config` (its listen address, data directory and database URL are
/// replaced by the test's own).
pub async fn spawn_app_with(db: TestDb, config: Config) -> TestApp {
    start(db, config, None).await
}

async fn start(db: TestDb, mut config: Config, admin_key: Option<String>) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("a bound address");
    // Links in mails and OAuth callbacks name the port the test server really listens on.
    config
        .auth
        .public_url
        .get_or_insert_with(|| format!("http://{addr}"));
    let config = Config {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: db.data_dir(),
        database_url: Some(db.url()),
        ..config
    };
    let started = Runtime::start(config).await.expect("the runtime starts");
    let admin_key = match (started.first_admin_key, admin_key) {
        (Some(key), _) => key.reveal().to_owned(),
        (None, Some(key)) => key,
        (None, None) => panic!("a fresh database must produce a first admin key"),
    };
    let runtime = started.runtime;
    let jobs = runtime
        .start_background_jobs()
        .expect("background jobs start");
    let app = agentd_server::router(agentd_server::AppState::new(runtime.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        agentd_server::serve(listener, app, shutdown, Duration::from_secs(5))
            .await
            .expect("the server runs");
    });
    TestApp {
        base_url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        admin_key,
        runtime,
        db,
        stop: Some(stop_tx),
        server: Some(server),
        jobs,
    }
}

impl TestApp {
    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A request with `key` as bearer credential.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    /// A GET with the admin key.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path, &self.admin_key)
    }

    /// A POST with the admin key and a JSON body.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path, &self.admin_key)
            .json(body)
    }

    /// A POST of form fields with the admin key.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.request(reqwest::Method::POST, path, &self.admin_key)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"))
    }

    /// A GET with the admin key, answered with JSON (of any status).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self
            .get(path)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        response
            .json()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: not JSON: {error}"))
    }

    /// Creates a key in the default tenant through the API; returns `(id, secret)`.
    pub async fn create_key(&self, scopes: &[&str]) -> (String, String) {
        let response = self
            .post_json(
                "/keys",
                &serde_json::json!({"name": "test", "scopes": scopes}),
            )
            .send()
            .await
            .expect("POST /keys");
        assert_eq!(response.status(), 201, "creating a key with {scopes:?}");
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        (
            body["id"].as_str().expect("an id").to_owned(),
            body["key"].as_str().expect("a key").to_owned(),
        )
    }

    /// Creates an agent in the default tenant through the API (asserting 201); returns its view.
    pub async fn create_agent(&self, body: &serde_json::Value) -> serde_json::Value {
        let response = self
            .post_json("/agents", body)
            .send()
            .await
            .expect("POST /agents");
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(status, 201, "creating agent {body}: {text}");
        serde_json::from_str(&text).expect("a JSON agent")
    }

    /// Like [`TestApp::create_agent`], returning just the id.
    pub async fn create_agent_id(&self, body: &serde_json::Value) -> String {
        self.create_agent(body).await["id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    /// Creates another tenant with its own admin key, straight in the store; returns the key.
    pub async fn create_tenant(&self, slug: &str) -> String {
        let tenant = Tenant::new(TenantSlug::parse(slug).expect("a valid slug"), slug);
        let admin = NewApiKey {
            name: agentd_core::KeyName::parse("admin").expect("a valid name"),
            scopes: ScopeSet::new([Scope::admin()]),
            expires_at: None,
        };
        let (key, plain) = admin.issue(tenant.id);
        let created = self
            .runtime
            .store
            .create_tenant_with_key(&tenant, &key)
            .await
            .expect("creating a tenant");
        assert!(created, "tenant {slug} already existed");
        plain.reveal().to_owned()
    }

    /// Stops the server, finishing in-flight requests.
    pub async fn stop(&mut self) {
        for job in self.jobs.drain(..) {
            job.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.runtime.runs.shutdown().await;
        self.runtime.audit.flush().await;
        self.runtime.store.close().await;
    }

    /// A new user of the admin key's tenant with `role`, signed in: their id and a JWT for them, as
    /// a login would give (made directly, without mail or a provider).
    pub async fn signed_in_user(&self, email: &str, role: &str) -> (String, String) {
        let response = self
            .post_json("/users", &serde_json::json!({"email": email, "role": role}))
            .send()
            .await
            .expect("POST /users");
        assert_eq!(response.status(), 201, "POST /users for {email}");
        let user: serde_json::Value = response.json().await.expect("a user as JSON");
        let user_id = user["id"].as_str().expect("a user id").to_owned();
        let tenant = self.get_json("/tenant").await;
        let token = self.runtime.tokens.issue(
            tenant["id"]
                .as_str()
                .expect("a tenant id")
                .parse()
                .expect("a tenant id"),
            user_id.parse().expect("a user id"),
            role,
        );
        (user_id, token.token)
    }

    /// A second node: another server over the same database, with the same configuration (but its
    /// own node id and port) and admin key, running beside this one.
    pub async fn another_node(&self) -> TestApp {
        let mut config = (*self.runtime.config).clone();
        if config.auth.public_url.as_deref() == Some(self.base_url.as_str()) {
            config.auth.public_url = None;
        }
        config.node_id = format!("{}-2", config.node_id);
        start(self.db.clone(), config, Some(self.admin_key.clone())).await
    }

    /// Stops the server and starts a new one over the same database, as a restart would.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut config = (*self.runtime.config).clone();
        if config.auth.public_url.as_deref() == Some(self.base_url.as_str()) {
            // The restarted server listens on a new port.
            config.auth.public_url = None;
        }
        start(self.db.clone(), config, Some(self.admin_key.clone())).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for job in &self.jobs {
            job.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
