//! `/keys`: creation, listing, deletion, scopes, expiry, tenants, restarts.

use agentd_testkit::{backend_tests, spawn_app, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::assert_problem;

async fn a_created_key_is_shown_once_and_listed_without_its_secret(db: TestDb) {
    let app = spawn_app(db).await;
    let response = app
        .post_json(
            "/keys",
            &json!({"name": " ci ", "scopes": ["keys:read", "agents:*:run", "keys:read"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("agentd_") && secret.len() >= 7 + 32,
        "{secret}"
    );
    assert_eq!(created["name"], "ci");
    assert_eq!(created["scopes"], json!(["keys:read", "agents:*:run"]));
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));

    let listed = app.get("/keys").send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains(&secret), "the secret is never shown again");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        2,
        "the admin key and the new one"
    );
    let one: Value = app
        .get(&format!("/keys/{}", created["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], created["id"]);
    assert!(one.get("key").is_none());
    assert_eq!(one["last_used_at"], Value::Null);

    let response = app
        .request(Method::GET, "/keys", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let one: Value = app
        .get(&format!("/keys/{}", created["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(one["last_used_at"].is_string(), "use is recorded: {one}");
}

async fn keys_page_with_cursors(db: TestDb) {
    let app = spawn_app(db).await;
    for _ in 0..4 {
        app.create_key(&["keys:read"]).await;
    }
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/keys?limit=2&cursor={c}"),
            None => "/keys?limit=2".to_owned(),
        };
        let page: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        ids.extend(data.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 5);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "oldest first");
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "no key twice");
}

async fn deleting_a_key_stops_it_at_once(db: TestDb) {
    let app = spawn_app(db).await;
    let (id, secret) = app.create_key(&["keys:read"]).await;
    assert_eq!(
        app.request(Method::GET, "/keys", &secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let response = app
        .request(Method::DELETE, &format!("/keys/{id}"), &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .request(Method::GET, "/keys", &secret)
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "invalid_credentials").await;
    let response = app
        .request(Method::DELETE, &format!("/keys/{id}"), &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "not_found").await;
}

async fn keys_survive_a_restart(db: TestDb) {
    let app = spawn_app(db).await;
    let (_, secret) = app.create_key(&["keys:read"]).await;
    let admin = app.admin_key.clone();
    let app = app.restart().await;
    assert_eq!(
        app.request(Method::GET, "/keys", &admin)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let listed: Value = app
        .request(Method::GET, "/keys", &secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
}

async fn scopes_are_enforced_and_named(db: TestDb) {
    let app = spawn_app(db).await;
    let (_, reader) = app.create_key(&["keys:read"]).await;
    let response = app
        .request(Method::POST, "/keys", &reader)
        .json(&json!({"name": "x", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 403, "missing_scope").await;
    assert!(
        body["detail"].as_str().unwrap().contains("keys:write"),
        "{body}"
    );

    // A key cannot mint a key with more power than it has.
    let (_, writer) = app.create_key(&["keys:write", "keys:read"]).await;
    let response = app
        .request(Method::POST, "/keys", &writer)
        .json(&json!({"name": "x", "scopes": ["keys:read", "agent_os:admin"]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 403, "missing_scope").await;
    assert!(
        body["detail"].as_str().unwrap().contains("agent_os:admin"),
        "{body}"
    );
    let response = app
        .request(Method::POST, "/keys", &writer)
        .json(&json!({"name": "x", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

async fn bad_or_expired_credentials_are_401(db: TestDb) {
    let app = spawn_app(db).await;
    let cases = [
        None,
        Some("Bearer"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer not-a-key"),
        Some("Bearer agentd_0000000000000000000000000000000000000000"),
    ];
    for header in cases {
        let mut request = app.client.get(app.url("/keys"));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let code = if header.is_none() {
            "missing_credentials"
        } else {
            "invalid_credentials"
        };
        assert_problem(response, 401, code).await;
    }

    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let response = app
        .post_json(
            "/keys",
            &json!({"name": "short", "scopes": ["keys:read"], "expires_at": soon}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let secret = response.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.request(Method::GET, "/keys", &secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let response = app
        .request(Method::GET, "/keys", &secret)
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 401, "invalid_credentials").await;
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let response = app
        .post_json(
            "/keys",
            &json!({"name": "late", "scopes": ["keys:read"], "expires_at": past}),
        )
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(body["field"], "expires_at");
}

async fn tenants_never_see_each_others_keys(db: TestDb) {
    let app = spawn_app(db).await;
    let (a_key_id, _) = app.create_key(&["keys:read"]).await;
    let b_admin = app.create_tenant("tenant-b").await;

    let listed: Value = app
        .request(Method::GET, "/keys", &b_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "tenant B sees only its own admin key: {listed}"
    );
    assert!(!ids.contains(&a_key_id.as_str()));

    let response = app
        .request(Method::GET, &format!("/keys/{a_key_id}"), &b_admin)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "not_found").await;
    let response = app
        .request(Method::DELETE, &format!("/keys/{a_key_id}"), &b_admin)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "not_found").await;

    // Nothing changed for tenant A.
    let response = app.get(&format!("/keys/{a_key_id}")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

backend_tests!(
    a_created_key_is_shown_once_and_listed_without_its_secret,
    keys_page_with_cursors,
    deleting_a_key_stops_it_at_once,
    keys_survive_a_restart,
    scopes_are_enforced_and_named,
    bad_or_expired_credentials_are_401,
    tenants_never_see_each_others_keys,
);
