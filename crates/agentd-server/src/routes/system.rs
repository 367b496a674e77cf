//! System routes: health, information, configuration and Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use agentd_runtime::{Config, Runtime};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::metrics::Metrics;
use crate::state::AppState;

/// How long `/health` waits for the database before calling it unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(info))
        .routes(routes!(config))
        .routes(routes!(prometheus))
}

/// The server's health.
#[derive(Serialize, ToSchema)]
pub struct HealthView {
    /// `ok`, or `unavailable` when the database does not answer.
    #[schema(example = "ok")]
    pub status: &'static str,
    pub database: DatabaseView,
    /// The agentd version.
    pub version: &'static str,
    /// When this node started.
    pub instantiated_at: chrono::DateTime<chrono::Utc>,
}

/// The database as the health check saw it.
#[derive(Serialize, ToSchema)]
pub struct DatabaseView {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Round-trip time of the check, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Health: 200 when the database answers, 503 when it does not. No authentication.
#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    responses(
        (status = 200, description = "Healthy", body = HealthView),
        (status = 503, description = "The database is unreachable", body = HealthView),
    )
)]
async fn health(State(runtime): State<Runtime>) -> impl IntoResponse {
    let database = runtime.database_health(HEALTH_TIMEOUT).await;
    let status = if database.reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let view = HealthView {
        status: if database.reachable {
            "ok"
        } else {
            "unavailable"
        },
        database: DatabaseView {
            backend: database.backend,
            status: if database.reachable {
                "ok"
            } else {
                "unavailable"
            },
            latency_ms: database
                .latency
                .map(|latency| latency.as_secs_f64() * 1000.0),
            detail: database.problem,
        },
        version: env!("CARGO_PKG_VERSION"),
        instantiated_at: runtime.started_at,
    };
    (status, Json(view))
}

/// What this server is.
#[derive(Serialize, ToSchema)]
pub struct InfoView {
    #[schema(example = "agentd")]
    pub name: &'static str,
    pub version: &'static str,
    /// How callers authenticate: `api_key`.
    pub auth_mode: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    /// Where the OpenAPI document is.
    pub openapi_url: &'static str,
    /// Where the interactive documentation is.
    pub docs_url: &'static str,
    pub instantiated_at: chrono::DateTime<chrono::Utc>,
}

/// Server information. No authentication.
#[utoipa::path(get, path = "/info", tag = "system", responses((status = 200, body = InfoView)))]
async fn info(State(runtime): State<Runtime>) -> Json<InfoView> {
    Json(InfoView {
        name: "agentd",
        version: env!("CARGO_PKG_VERSION"),
        auth_mode: "api_key",
        database: runtime.backend(),
        openapi_url: "/openapi.json",
        docs_url: "/docs",
        instantiated_at: runtime.started_at,
    })
}

/// The effective configuration with secrets masked.
#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    pub listen: String,
    pub data_dir: String,
    /// The database URL with its password masked; absent when SQLite in `data_dir` is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    pub max_body_bytes: usize,
    pub shutdown_grace_seconds: u64,
    pub log: LogView,
}

/// Logging settings.
#[derive(Serialize, ToSchema)]
pub struct LogView {
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl From<&Config> for ConfigView {
    fn from(config: &Config) -> Self {
        Self {
            listen: config.listen.clone(),
            data_dir: config.data_dir.display().to_string(),
            database_url: config.redacted_database_url(),
            max_body_bytes: config.max_body_bytes,
            shutdown_grace_seconds: config.shutdown_grace_seconds,
            log: LogView {
                level: config.log.level.clone(),
                format: config.log.format.as_str().to_owned(),
            },
        }
    }
}

/// The effective configuration, secrets masked.
#[utoipa::path(
    get,
    path = "/config",
    tag = "system",
    security(("bearer" = ["config:read"])),
    responses((status = 200, body = ConfigView))
)]
async fn config(
    _auth: Auth<scopes::ConfigRead>,
    State(config): State<Arc<Config>>,
) -> Json<ConfigView> {
    Json(ConfigView::from(config.as_ref()))
}

/// Request counts and latency histograms by route and status, in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics/prometheus",
    tag = "system",
    security(("bearer" = ["metrics:read"])),
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"))
)]
async fn prometheus(
    _auth: Auth<scopes::MetricsRead>,
    State(metrics): State<Arc<Metrics>>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
