//! `/agents/{id}/resources`: limits, reported and consumed usage, enforcement and resets.

use agentd_testkit::{backend_tests, spawn_app, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{assert_all_not_found, assert_problem};

async fn limits_usage_enforcement_and_reset(db: TestDb) {
    let app = spawn_app(db).await;
    let id = app.create_agent_id(&json!({"name": "metered"})).await;
    let base = format!("/agents/{id}/resources");
    let call = |method: Method, path: String, body: Option<Value>| {
        let mut request = app.request(method, &path, &app.admin_key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };

    let fresh: Value = app.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(fresh["limits"]["api_quota"], Value::Null);
    assert_eq!(fresh["usage"]["api_calls"], 0);

    let limits =
        json!({"api_quota": 3, "storage_mb": 10, "memory_mb": 512, "cpu_millicores": 1000});
    let set: Value = call(Method::PATCH, base.clone(), Some(limits))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["limits"]["api_quota"], 3);
    assert_eq!(set["limits"]["network_mbps"], Value::Null);
    for (body, field) in [
        (json!({"api_quota": -1}), "api_quota"),
        (json!({"memory_mb": "lots"}), "memory_mb"),
    ] {
        let problem = assert_problem(
            call(Method::PATCH, base.clone(), Some(body)).await.unwrap(),
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(problem["field"], field);
    }

    // Gauges come with heartbeats.
    let beat = call(
        Method::POST,
        format!("/agents/{id}/heartbeat"),
        Some(json!({"usage": {"memory_mb": 600, "cpu_millicores": 250}})),
    )
    .await
    .unwrap();
    assert_eq!(beat.status(), 200);
    let problem = assert_problem(
        call(
            Method::POST,
            format!("/agents/{id}/heartbeat"),
            Some(json!({"usage": {"memory_mb": "a lot"}})),
        )
        .await
        .unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "usage.memory_mb");
    let report: Value = app
        .get(&format!("{base}/usage"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let line = |name: &str| {
        report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["resource"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(line("memory_mb")["used"], 600);
    assert_eq!(line("memory_mb")["over_limit"], true);
    assert_eq!(line("cpu_millicores")["percent"], 25.0);
    assert_eq!(line("network_mbps")["limit"], Value::Null);

    // Consumption is charged until the quota, then refused naming the limit, with nothing charged.
    let consume = |body: Value| call(Method::POST, format!("{base}/usage"), Some(body));
    assert_eq!(
        consume(json!({"api_calls": 2})).await.unwrap().status(),
        200
    );
    assert_eq!(
        consume(json!({"api_calls": 1})).await.unwrap().status(),
        200
    );
    let problem = assert_problem(
        consume(json!({"api_calls": 1})).await.unwrap(),
        429,
        "quota_exceeded",
    )
    .await;
    assert_eq!(problem["field"], "api_quota");
    assert!(
        problem["detail"].as_str().unwrap().contains("3 used of 3"),
        "{problem}"
    );
    let problem = assert_problem(
        consume(json!({"storage_mb": 11})).await.unwrap(),
        403,
        "limit_exceeded",
    )
    .await;
    assert_eq!(problem["field"], "storage_mb");
    let now: Value = app.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(now["usage"]["api_calls"], 3);
    assert_eq!(now["usage"]["storage_mb"], 0);

    let reset: Value = call(Method::POST, format!("{base}/reset"), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reset["usage"]["api_calls"], 0);
    assert_eq!(reset["usage"]["memory_mb"], 0);
    assert_eq!(
        consume(json!({"api_calls": 1})).await.unwrap().status(),
        200
    );

    let unlimited: Value = call(
        Method::PATCH,
        base.clone(),
        Some(json!({"api_quota": null})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(unlimited["limits"]["api_quota"], Value::Null);
    assert_eq!(
        unlimited["limits"]["storage_mb"], 10,
        "other limits are kept"
    );
    assert_eq!(
        consume(json!({"api_calls": 100})).await.unwrap().status(),
        200
    );

    let events: Value = app
        .get(&format!("/agents/{id}/events?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "resources_changed")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["set resource limits", "reset usage", "set resource limits"]
    );
}

async fn resources_stay_in_their_tenant(db: TestDb) {
    let app = spawn_app(db).await;
    let id = app.create_agent_id(&json!({"name": "metered"})).await;
    let other = app.create_tenant("tenant-b").await;
    let base = format!("/agents/{id}/resources");
    let calls = vec![
        (Method::GET, base.clone(), None),
        (Method::PATCH, base.clone(), Some(json!({"api_quota": 1}))),
        (Method::GET, format!("{base}/usage"), None),
        (
            Method::POST,
            format!("{base}/usage"),
            Some(json!({"api_calls": 1})),
        ),
        (Method::POST, format!("{base}/reset"), None),
    ];
    assert_all_not_found(&app, &other, calls).await;
    let unchanged: Value = app.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(unchanged["limits"]["api_quota"], Value::Null);
    assert_eq!(unchanged["usage"]["api_calls"], 0);
    let missing = uuid::Uuid::now_v7();
    assert_problem(
        app.get(&format!("/agents/{missing}/resources"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
}

backend_tests!(
    limits_usage_enforcement_and_reset,
    resources_stay_in_their_tenant
);
