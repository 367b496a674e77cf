//! Configuration. Precedence, lowest first: built-in defaults < `agentd.toml` < `AGENTD_*` environment
//! variables (`__` separates nesting: `AGENTD_LOG__FORMAT=json`) < command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The config file read when none is named.
pub const DEFAULT_FILE: &str = "agentd.toml";

/// The effective configuration of one agentd node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Where the SQLite database (and later keys, outbox and workspaces) live.
    pub data_dir: PathBuf,
    /// `postgres://…` to run on PostgreSQL, or `sqlite:<path>`; unset means SQLite in `data_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_seconds: u64,
    pub log: LogConfig,
    pub health: HealthConfig,
    /// Names this node among several sharing one PostgreSQL database; a restarting node ends only the
    /// runs it left in flight itself. Give each node its own.
    pub node_id: String,
    /// Model providers by name; an agent's `model` is `<name>/<model>`.
    pub providers: BTreeMap<String, agentd_models::ProviderConfig>,
    /// Model routes by name: a model that is served by the first of several `provider/model` targets
    /// that answers (the next is tried on a rate limit, a 5xx, a timeout or a refused connection).
    pub routes: BTreeMap<String, agentd_models::RouteConfig>,
    /// Plans by name, with their limits; a tenant is on `default_plan` unless it was put on another.
    pub plans: BTreeMap<String, PlanConfig>,
    /// The plan of tenants that have none. A name that `plans` does not list has no limits.
    pub default_plan: String,
    pub runs: RunsConfig,
    pub tools: ToolsConfig,
    /// The knowledge base: the embedder and upload limits.
    pub knowledge: crate::knowledge::KnowledgeConfig,
    /// The key that seals secrets at rest (agent private keys, the JWT signing key): 32 bytes as
    /// base64 or hex, usually from `AGENTD_MASTER_KEY`. Unset, `<data_dir>/master.key` is used,
    /// generated on first start. Nodes sharing one database need the same key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    pub auth: crate::auth_config::AuthConfig,
    pub smtp: crate::auth_config::SmtpConfig,
}

/// The limits of a plan; an unset limit is no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanConfig {
    /// Requests per minute per principal (API key), on every authenticated route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Model tokens (prompt + completion) per calendar month (UTC) for the whole tenant: runs and
    /// gateway calls together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_tokens: Option<u64>,
    /// Runs one principal (API key or user) may have executing at once on a node; a paused run
    /// waiting for client tools does not count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent_runs: Option<u32>,
}

/// Defaults for runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RunsConfig {
    /// Limits of a run when neither the request nor the agent sets them.
    pub max_iterations: u32,
    pub max_tokens: Option<u64>,
    pub max_seconds: u64,
}

impl Default for RunsConfig {
    fn default() -> Self {
        Self {
            max_iterations: 10,
            max_tokens: None,
            max_seconds: 600,
        }
    }
}

impl RunsConfig {
    /// The server-wide run limits.
    pub fn limits(&self) -> agentd_core::run::RunLimits {
        agentd_core::run::RunLimits {
            max_iterations: Some(self.max_iterations),
            max_tokens: self.max_tokens,
            max_seconds: Some(self.max_seconds),
        }
    }
}

/// Settings of the built-in server tools.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolsConfig {
    pub http_fetch: crate::tools::HttpFetchConfig,
    /// Connections to the MCP servers agents list.
    pub mcp: crate::tools::mcp::McpConfig,
}

/// How agent health is derived from heartbeats and probes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// How often agents are expected to send a heartbeat (and remote agents are probed).
    pub heartbeat_interval_ms: u64,
    /// Missed intervals after which an agent is `degraded`, `unhealthy` and `critical`.
    pub degraded_after_missed: u32,
    pub unhealthy_after_missed: u32,
    pub critical_after_missed: u32,
    /// How often the sweeper re-derives health.
    pub sweep_interval_ms: u64,
    /// How long a remote agent's health endpoint may take to answer.
    pub probe_timeout_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 30_000,
            degraded_after_missed: 1,
            unhealthy_after_missed: 3,
            critical_after_missed: 6,
            sweep_interval_ms: 5_000,
            probe_timeout_ms: 2_000,
        }
    }
}

/// Logging.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `agentd=debug,sqlx=warn`.
    pub level: String,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The format's name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7777".to_owned(),
            data_dir: PathBuf::from("./agentd-data"),
            database_url: None,
            max_body_bytes: 1024 * 1024,
            shutdown_grace_seconds: 30,
            log: LogConfig::default(),
            health: HealthConfig::default(),
            node_id: "local".to_owned(),
            providers: BTreeMap::new(),
            routes: BTreeMap::new(),
            plans: BTreeMap::new(),
            default_plan: "default".to_owned(),
            runs: RunsConfig::default(),
            tools: ToolsConfig::default(),
            knowledge: Default::default(),
            master_key: None,
            auth: Default::default(),
            smtp: Default::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the configuration from the file (`agentd.toml` if `file` is `None` and it exists), the
    /// environment and `overrides`, and checks it.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Error> {
        let path = match file {
            Some(path) if !path.exists() => {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )))
            }
            Some(path) => path.to_path_buf(),
            None => PathBuf::from(DEFAULT_FILE),
        };
        let config: Self = Figment::from(Serialized::defaults(Self::default()))
            .merge(Toml::file(path))
            .merge(Env::prefixed("AGENTD_").split("__"))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), Error> {
        self.listen_addr()?;
        if self.max_body_bytes == 0 {
            return Err(Error::Config(
                "max_body_bytes must be greater than 0".to_owned(),
            ));
        }
        self.knowledge.check()?;
        if let Some(url) = &self.database_url {
            agentd_store::Backend::from_url(url).map_err(|e| Error::Config(e.to_string()))?;
        }
        let health = &self.health;
        let ordered = 0 < health.degraded_after_missed
            && health.degraded_after_missed <= health.unhealthy_after_missed
            && health.unhealthy_after_missed <= health.critical_after_missed;
        if !ordered || health.heartbeat_interval_ms == 0 || health.sweep_interval_ms == 0 {
            return Err(Error::Config(
                "health: intervals must be positive and 0 < degraded_after_missed <= unhealthy_after_missed <= critical_after_missed"
                    .to_owned(),
            ));
        }
        for (name, plan) in &self.plans {
            if plan.concurrent_runs == Some(0) {
                return Err(Error::Config(format!(
                    "plans.{name}.concurrent_runs must be greater than 0 (leave it out for no limit)"
                )));
            }
            if plan.requests_per_minute == Some(0) {
                return Err(Error::Config(format!(
                    "plans.{name}.requests_per_minute must be greater than 0 (leave it out for no limit)"
                )));
            }
        }
        Ok(())
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> Result<SocketAddr, Error> {
        self.listen
            .parse()
            .map_err(|e| Error::Config(format!("listen `{}`: {e}", self.listen)))
    }

    /// The database URL: the configured one, or the SQLite file in the data directory.
    pub fn database_url(&self) -> Result<String, Error> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            Error::Config(format!(
                "cannot create data_dir {}: {e}",
                self.data_dir.display()
            ))
        })?;
        Ok(format!(
            "sqlite://{}",
            self.data_dir.join("agentd.db").display()
        ))
    }

    /// The configuration with every secret masked, for `agentd config` and `GET /config`.
    pub fn redacted(&self) -> Self {
        let mut providers = self.providers.clone();
        for provider in providers.values_mut() {
            provider.base_url = redact_url(&provider.base_url);
        }
        Self {
            database_url: self.redacted_database_url(),
            master_key: self.master_key.as_ref().map(|_| "***".to_owned()),
            providers,
            ..self.clone()
        }
    }

    /// The configured database URL with its password masked.
    pub fn redacted_database_url(&self) -> Option<String> {
        self.database_url.as_deref().map(redact_url)
    }
}

/// Masks the password (and any secret query value) in a URL.
fn redact_url(raw: &str) -> String {
    let masked = match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some(agentd_core::redact::MASK));
            url.to_string()
        }
        _ => raw.to_owned(),
    };
    agentd_core::redact::redact(&masked).into_owned()
}

#[cfg(test)]
// figment's `Jail` closures return its own large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "agentd.toml",
                r#"
                    listen = "127.0.0.1:1111"
                    data_dir = "/from/file"
                    max_body_bytes = 2048
                    [log]
                    level = "debug"
                "#,
            )?;
            jail.set_env("AGENTD_DATA_DIR", "/from/env");
            jail.set_env("AGENTD_LISTEN", "127.0.0.1:2222");
            jail.set_env("AGENTD_LOG__FORMAT", "json");
            let flags = Overrides {
                listen: Some("127.0.0.1:3333".to_owned()),
                ..Overrides::default()
            };
            let config = Config::load(None, &flags).expect("config loads");
            assert_eq!(config.listen, "127.0.0.1:3333", "flag beats env and file");
            assert_eq!(
                config.data_dir,
                PathBuf::from("/from/env"),
                "env beats file"
            );
            assert_eq!(config.max_body_bytes, 2048, "file beats default");
            assert_eq!(config.log.level, "debug", "nested file value");
            assert_eq!(config.log.format, LogFormat::Json, "nested env value");
            assert_eq!(config.shutdown_grace_seconds, 30, "default");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("AGENTD_LOG__FORMAT", "yaml");
            let error = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string()
                .to_lowercase();
            assert!(error.contains("log.format"), "{error}");
            jail.set_env("AGENTD_LOG__FORMAT", "text");
            jail.set_env("AGENTD_LISTEN", "nowhere");
            let error = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string()
                .to_lowercase();
            assert!(error.contains("listen"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn redaction_masks_database_passwords() {
        let config = Config {
            database_url: Some("postgres://agentd:hunter2@db:5432/agentd".to_owned()),
            ..Config::default()
        };
        let shown = config.redacted().database_url.unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.starts_with("postgres://agentd:"), "{shown}");
        assert!(shown.ends_with("@db:5432/agentd"), "{shown}");
    }
}
