//! Garbage in, problem+json out: every bad request gets a 4xx naming what is wrong, never a 500.

use agentd_testkit::{backend_tests, spawn_app, TestDb};
use reqwest::Method;

use crate::assert_problem;

async fn malformed_bodies_name_the_problem(db: TestDb) {
    let app = spawn_app(db).await;
    let post = |body: &'static str| {
        app.request(Method::POST, "/keys", &app.admin_key)
            .header("content-type", "application/json")
            .body(body)
    };

    let body = assert_problem(
        post(r#"{"name": "x", "scopes": ["#).send().await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("line 1"),
        "{body}"
    );
    assert_problem(post("").send().await.unwrap(), 400, "invalid_json").await;
    assert_problem(
        post(r#"{"name":"x","scopes":["keys:read"]} trailing"#)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_json",
    )
    .await;

    let cases: [(&str, &str); 7] = [
        (r#"{"name": 5, "scopes": ["keys:read"]}"#, "name"),
        (r#"{"scopes": ["keys:read"]}"#, "name"),
        (r#"{"name": "x"}"#, "scopes"),
        (r#"{"name": "x", "scopes": ["keys:read", 7]}"#, "scopes[1]"),
        (
            r#"{"name": "x", "scopes": ["keys:read", "not a scope"]}"#,
            "scopes[1]",
        ),
        (
            r#"{"name": "x", "scopes": ["keys:read"], "expires_at": "tomorrow"}"#,
            "expires_at",
        ),
        (r#""just a string""#, "body"),
    ];
    for (body, field) in cases {
        let problem = assert_problem(post(body).send().await.unwrap(), 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "for {body}: {problem}");
    }
    let problem = assert_problem(
        post(r#"{"name": "", "scopes": ["keys:read"]}"#)
            .send()
            .await
            .unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "name");
    let problem = assert_problem(
        post(r#"{"name": "x", "scopes": []}"#).send().await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "scopes");

    let response = app
        .request(Method::POST, "/keys", &app.admin_key)
        .header("content-type", "text/plain")
        .body(r#"{"name":"x","scopes":["keys:read"]}"#)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported_media_type").await;

    // Nothing was half-written by any of the above.
    let listed: serde_json::Value = app.get("/keys").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
}

async fn oversize_bodies_are_413(db: TestDb) {
    let app = spawn_app(db).await;
    let big = format!(
        r#"{{"name": "x", "scopes": ["keys:read"], "pad": "{}"}}"#,
        "a".repeat(10 * 1024 * 1024)
    );
    let response = app
        .request(Method::POST, "/keys", &app.admin_key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "payload_too_large").await;
}

async fn bad_query_and_path_values_name_the_parameter(db: TestDb) {
    let app = spawn_app(db).await;
    for (path, field) in [
        ("/keys?limit=ten", "limit"),
        ("/keys?limit=-1", "limit"),
        ("/keys?limit=0", "limit"),
        ("/keys?limit=100000", "limit"),
        ("/keys?cursor=not-a-cursor", "cursor"),
        ("/keys/not-a-uuid", "key_id"),
        ("/keys/12345", "key_id"),
    ] {
        let problem =
            assert_problem(app.get(path).send().await.unwrap(), 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "for {path}: {problem}");
    }
    let response = app
        .request(Method::DELETE, "/keys/%E2%98%83", &app.admin_key)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "key_id");
}

async fn unknown_routes_and_wrong_methods_are_problems(db: TestDb) {
    let app = spawn_app(db).await;
    let body = assert_problem(
        app.get("/no/such/route").send().await.unwrap(),
        404,
        "route_not_found",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("/no/such/route"));
    let response = app
        .request(Method::PUT, "/health", &app.admin_key)
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("allow"));
    assert_problem(response, 405, "method_not_allowed").await;
    let response = app
        .request(Method::PATCH, "/keys", &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_problem(response, 405, "method_not_allowed").await;
}

backend_tests!(
    malformed_bodies_name_the_problem,
    oversize_bodies_are_413,
    bad_query_and_path_values_name_the_parameter,
    unknown_routes_and_wrong_methods_are_problems,
);
