//! `/health`, `/info`, `/config`, `/metrics/prometheus`, request ids.

use agentd_testkit::{backend_tests, spawn_app, TestDb};
use serde_json::Value;

use crate::assert_problem;

async fn health_reports_the_database_and_turns_503_when_it_is_gone(db: TestDb) {
    let app = spawn_app(db.clone()).await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["status"], "ok");
    let backend = if matches!(db, TestDb::Sqlite { .. }) {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(body["database"]["backend"], backend);

    app.runtime.store.close().await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["database"]["status"], "unavailable");
    assert!(body["database"]["detail"].is_string());

    // With the database gone, an authenticated route says 503 too, as problem+json, not 500.
    let response = app.get("/keys").send().await.unwrap();
    assert_problem(response, 503, "unavailable").await;
}

async fn info_is_public_and_config_needs_its_scope(db: TestDb) {
    let app = spawn_app(db).await;
    let info: Value = app
        .client
        .get(app.url("/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["name"], "agentd");
    assert_eq!(info["auth_mode"], "api_key");

    let response = app.client.get(app.url("/config")).send().await.unwrap();
    assert_problem(response, 401, "missing_credentials").await;
    let config: Value = app
        .get("/config")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["listen"], "127.0.0.1:0");
    assert_eq!(config["max_body_bytes"], 1024 * 1024);
    if let Some(url) = config["database_url"].as_str() {
        assert!(!url.contains("hunter2"));
    }
    let (_, reader) = app.create_key(&["config:read"]).await;
    let response = app
        .request(reqwest::Method::GET, "/config", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn prometheus_counts_requests_by_route_template(db: TestDb) {
    let app = spawn_app(db).await;
    for _ in 0..3 {
        app.client.get(app.url("/health")).send().await.unwrap();
    }
    let random = uuid::Uuid::now_v7();
    app.get(&format!("/keys/{random}")).send().await.unwrap();
    let response = app.get("/metrics/prometheus").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"agentd_http_requests_total{method="GET",route="/health",status="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"agentd_http_requests_total{method="GET",route="/keys/{key_id}",status="404"} 1"#
        ),
        "ids are folded into the route template: {text}"
    );
    assert!(
        text.contains("agentd_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(!text.contains(&random.to_string()));
}

async fn request_ids_are_echoed_or_generated(db: TestDb) {
    let app = spawn_app(db).await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "bad id with spaces\u{7f}")
        .send()
        .await;
    // A client's unusable id is replaced, never echoed.
    if let Ok(response) = response {
        assert_ne!(
            response.headers()["x-request-id"],
            "bad id with spaces\u{7f}"
        );
    }
}

backend_tests!(
    health_reports_the_database_and_turns_503_when_it_is_gone,
    info_is_public_and_config_needs_its_scope,
    prometheus_counts_requests_by_route_template,
    request_ids_are_echoed_or_generated,
);
