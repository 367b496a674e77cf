//! Route-by-route checks derived from the OpenAPI document, which is generated from the router: every
//! operation is documented with its schemas, is public only if it is on the public list, and needs
//! exactly the scope its `security` entry names.

use agentd_testkit::{spawn_app, TestApp, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

/// The only routes that answer without credentials (besides `/openapi.json` and `/docs`).
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/info"),
    ("post", "/auth/link"),
    ("get", "/auth/link/verify"),
    ("post", "/auth/refresh"),
    ("post", "/auth/logout"),
    ("get", "/auth/oauth/{provider}/authorize"),
    ("get", "/auth/oauth/{provider}/callback"),
    ("get", "/.well-known/jwks.json"),
];

async fn operations(app: &TestApp) -> Vec<(String, String, Value)> {
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    assert!(operations.len() >= 8, "{operations:?}");
    operations
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                uuid::Uuid::now_v7().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn request(app: &TestApp, method: &str, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut builder = app.client.request(method.clone(), app.url(&concrete(path)));
    if let Some(key) = key {
        builder = builder.bearer_auth(key);
    }
    if method == Method::POST || method == Method::PATCH || method == Method::PUT {
        builder = builder.json(&json!({}));
    }
    builder
}

#[tokio::test]
async fn every_route_is_public_by_list_or_needs_its_documented_scope() {
    let app = spawn_app(TestDb::sqlite()).await;
    let (_, unrelated) = app.create_key(&["nothing:read"]).await;
    for (method, path, operation) in operations(&app).await {
        let scopes: Vec<String> = operation["security"]
            .as_array()
            .map(|requirements| {
                requirements
                    .iter()
                    .flat_map(|r| r["bearer"].as_array().cloned().unwrap_or_default())
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let anonymous = request(&app, &method, &path, None)
            .send()
            .await
            .unwrap()
            .status();
        if PUBLIC.contains(&(method.as_str(), path.as_str())) {
            assert!(
                scopes.is_empty(),
                "{method} {path} is public but documents scopes"
            );
            assert_ne!(anonymous, 401, "{method} {path} is public");
            continue;
        }
        assert_eq!(
            scopes.len(),
            1,
            "{method} {path} must document exactly one scope"
        );
        let scope = &scopes[0];
        assert_eq!(anonymous, 401, "{method} {path} without a key");

        let response = request(&app, &method, &path, Some(&unrelated))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            403,
            "{method} {path} with an unrelated scope"
        );
        let body: Value = response.json().await.unwrap();
        // Each face's error shape: problem+json, OpenAI's (`/v1/…`) or Ollama's (`/v1/llm/…`).
        let detail = body["detail"]
            .as_str()
            .or(body["error"]["message"].as_str())
            .or(body["error"].as_str())
            .unwrap_or_else(|| panic!("{method} {path}: no error detail in {body}"));
        assert!(detail.contains(scope.as_str()), "{method} {path}: {body}");

        let (_, holder) = app.create_key(&[scope.as_str()]).await;
        let status = request(&app, &method, &path, Some(&holder))
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status != 401 && status != 403,
            "{method} {path} with `{scope}` answered {status}"
        );
    }
}

#[tokio::test]
async fn every_operation_documents_its_schemas() {
    let app = spawn_app(TestDb::sqlite()).await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    for (method, path, operation) in operations(&app).await {
        let responses = operation["responses"].as_object().expect("responses");
        // A redirect (the start of an OAuth login) documents its 3xx and has no body.
        let success = responses
            .iter()
            .find(|(status, _)| status.starts_with('2') || status.starts_with('3'))
            .unwrap_or_else(|| panic!("{method} {path}: a 2xx or 3xx response"));
        if success.0 != "204" && !success.0.starts_with('3') {
            let content = success.1["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} 2xx content"));
            assert!(
                content.values().all(|c| c["schema"].is_object()),
                "{method} {path}"
            );
        }
        assert!(
            responses.contains_key("500"),
            "{method} {path} documents 500"
        );
        for (status, response) in responses
            .iter()
            .filter(|(s, _)| s.starts_with('4') || s.starts_with('5'))
        {
            let schema = &response["content"]["application/problem+json"]["schema"];
            let is_problem = schema["$ref"] == "#/components/schemas/Problem";
            let is_health = path == "/health" && status == "503";
            assert!(
                is_problem || is_health,
                "{method} {path} {status} is a problem: {response}"
            );
        }
        if operation.get("security").is_some() {
            assert!(
                responses.contains_key("401") && responses.contains_key("403"),
                "{method} {path}"
            );
        }
        if let Some(body) = operation.get("requestBody") {
            assert!(
                body["content"]["application/json"]["schema"].is_object(),
                "{method} {path}"
            );
        }
    }
    for expected in [
        "/health",
        "/info",
        "/config",
        "/metrics/prometheus",
        "/keys",
        "/keys/{key_id}",
    ] {
        assert!(
            document["paths"][expected].is_object(),
            "{expected} is documented"
        );
    }
}

#[tokio::test]
async fn the_docs_page_works_without_network() {
    let app = spawn_app(TestDb::sqlite()).await;
    let response = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for part in html.split(attribute).skip(1) {
            let target = part.split('"').next().unwrap();
            assert!(
                !target.starts_with("http:")
                    && !target.starts_with("https:")
                    && !target.starts_with("//"),
                "/docs loads {target} from the network"
            );
            assets.push(target.trim_start_matches("./").to_owned());
        }
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    for asset in assets {
        let response = app
            .client
            .get(app.url(&format!("/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/docs/{asset}");
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("https://unpkg.com") && !text.contains("cdn.jsdelivr"),
            "/docs/{asset} uses a CDN"
        );
    }
    let initializer = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
}
