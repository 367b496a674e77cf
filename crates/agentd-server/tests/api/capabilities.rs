//! `/agents/{id}/capabilities`: proficiency, experience, endorsements, the capability filter.

use agentd_testkit::{backend_tests, spawn_app, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{assert_all_not_found, assert_problem};

async fn capabilities_are_added_changed_and_endorsed(db: TestDb) {
    let app = spawn_app(db).await;
    let id = app
        .create_agent_id(&json!({"name": "analyst", "skills": ["research"]}))
        .await;
    let other = app.create_agent_id(&json!({"name": "plain"})).await;
    let base = format!("/agents/{id}/capabilities");

    let listed: Value = app.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        listed["data"][0]["name"], "research",
        "declared skills become capabilities"
    );
    assert_eq!(listed["data"][0]["proficiency"], 0.0);

    let response = app
        .post_json(
            &base,
            &json!({"name": "coding", "proficiency": 0.7, "experience": 3}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let added: Value = response.json().await.unwrap();
    assert_eq!(
        (added["proficiency"].clone(), added["experience"].clone()),
        (json!(0.7), json!(3))
    );
    assert_problem(
        app.post_json(&base, &json!({"name": "coding"}))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    for (body, field) in [
        (json!({"name": "x", "proficiency": 1.5}), "proficiency"),
        (json!({"name": "x", "proficiency": "high"}), "proficiency"),
        (json!({"name": ""}), "name"),
        (json!({"name": "a/b"}), "name"),
        (json!({"name": "x", "experience": -1}), "experience"),
    ] {
        let problem = assert_problem(
            app.post_json(&base, &body).send().await.unwrap(),
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(problem["field"], field, "{body}");
    }

    let patch = |name: &str, body: Value| {
        app.request(Method::PATCH, &format!("{base}/{name}"), &app.admin_key)
            .json(&body)
            .send()
    };
    let changed: Value = patch(
        "coding",
        json!({"proficiency": 0.9, "experience": 4, "description": "Rust"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        (
            changed["proficiency"].clone(),
            changed["experience"].clone()
        ),
        (json!(0.9), json!(4))
    );
    assert_eq!(changed["description"], "Rust");
    let problem = assert_problem(
        patch("coding", json!({"proficiency": -0.1})).await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "proficiency");
    assert_problem(
        patch("juggling", json!({"proficiency": 0.1}))
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    let endorse = |key: &str| {
        app.request(Method::POST, &format!("{base}/coding/endorse"), key)
            .send()
    };
    let endorsed: Value = endorse(&app.admin_key).await.unwrap().json().await.unwrap();
    assert_eq!(endorsed["endorsements"], 1);
    let problem = assert_problem(endorse(&app.admin_key).await.unwrap(), 409, "conflict").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already endorsed"),
        "{problem}"
    );
    let (_, peer) = app.create_key(&["agents:write"]).await;
    let response = app
        .request(Method::POST, &format!("{base}/coding/endorse"), &peer)
        .json(&json!({"comment": "ships good code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap()["endorsements"], 2);
    assert_problem(
        app.request(Method::POST, &format!("{base}/juggling/endorse"), &peer)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    let found: Value = app
        .get("/agents?capability=coding")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let found: Value = app
        .get("/agents?capability=research")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert!(!found.to_string().contains(&other));

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
        .filter(|e| e["kind"] == "capability_changed")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["add capability", "update capability", "endorse", "endorse"]
    );

    app.request(
        Method::POST,
        &format!("/agents/{id}/terminate"),
        &app.admin_key,
    )
    .send()
    .await
    .unwrap();
    assert_problem(
        app.post_json(&base, &json!({"name": "late"}))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
}

async fn capabilities_stay_in_their_tenant(db: TestDb) {
    let app = spawn_app(db).await;
    let id = app
        .create_agent_id(&json!({"name": "analyst", "skills": ["research"]}))
        .await;
    let other = app.create_tenant("tenant-b").await;
    let base = format!("/agents/{id}/capabilities");
    let calls = vec![
        (Method::GET, base.clone(), None),
        (Method::POST, base.clone(), Some(json!({"name": "x"}))),
        (
            Method::PATCH,
            format!("{base}/research"),
            Some(json!({"proficiency": 1.0})),
        ),
        (
            Method::POST,
            format!("{base}/research/endorse"),
            Some(json!({})),
        ),
    ];
    assert_all_not_found(&app, &other, calls).await;
    let listed: Value = app.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["endorsements"], 0);
    assert_eq!(listed["data"][0]["proficiency"], 0.0);
}

backend_tests!(
    capabilities_are_added_changed_and_endorsed,
    capabilities_stay_in_their_tenant
);
