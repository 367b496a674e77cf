//! Black-box API tests: a real server on a random port over a fresh database, on SQLite and
//! PostgreSQL, driven over HTTP.

mod agentos_client;
mod agents;
mod audit;
mod capabilities;
mod chat;
mod errors;
mod gateway;
mod health;
mod identity;
mod isolation;
mod keys;
mod knowledge;
mod knowledge_recall;
mod knowledge_runs;
mod lifecycle;
mod login;
mod mcp_runs;
mod memories;
mod memory_runs;
mod oauth;
mod openai_sdk;
mod resources;
mod routes;
mod runs;
mod sessions;
mod streams;
mod system;

use reqwest::Response;
use serde_json::Value;

/// Asserts a problem+json answer with `status` and `code`, and returns its body.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "status for body {text}");
    assert_eq!(
        content_type, "application/problem+json",
        "content type for body {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("a JSON problem");
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status, "status member in {body}");
    assert_eq!(body["type"], format!("urn:agentd:problem:{code}"));
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Asserts that each call, made with `key`, answers 404 `not_found` (a foreign or unknown resource).
pub async fn assert_all_not_found(
    app: &agentd_testkit::TestApp,
    key: &str,
    calls: Vec<(reqwest::Method, String, Option<Value>)>,
) {
    for (method, path, body) in calls {
        let mut request = app.request(method.clone(), &path, key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        assert_problem(response, 404, "not_found").await;
    }
}
