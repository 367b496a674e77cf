//! `/sessions…`: create, read, list with filters and cursor pages, update, rename, delete (one and
//! many, with their runs), and a session's runs.

use agentd_testkit::{backend_tests, spawn_app_with_model, Reply, TestDb};
use serde_json::{json, Value};

use crate::assert_problem;

async fn sessions_story(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = app
        .create_agent_id(&json!({"name": "s", "model": "scripted/m"}))
        .await;
    let other_agent = app
        .create_agent_id(&json!({"name": "t", "model": "scripted/m"}))
        .await;

    // Explicit creation, with a client-chosen id.
    let response = app
        .post_json(
            "/sessions",
            &json!({"session_id": "chat-1", "agent_id": agent, "session_name": "Planning", "user_id": "ann", "session_state": {"step": 1}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["session_id"], "chat-1");
    assert_eq!(created["session_type"], "agent");
    assert_eq!(created["agent_id"], agent);
    assert_eq!(created["session_state"], json!({"step": 1}));
    assert_eq!(created["policy"], "enqueue");
    let again = app
        .post_json(
            "/sessions",
            &json!({"session_id": "chat-1", "agent_id": agent}),
        )
        .send()
        .await
        .unwrap();
    assert_problem(again, 409, "conflict").await;
    let bad = app
        .post_json("/sessions", &json!({"agent_id": "nope"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 422, "invalid_field").await;
    assert_eq!(problem["field"], "agent_id");
    let missing = app
        .post_json("/sessions", &json!({"agent_id": uuid::Uuid::now_v7()}))
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404, "not_found").await;
    let bad = app
        .post_json(
            "/sessions",
            &json!({"agent_id": agent, "policy": "sometimes"}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 422, "invalid_field").await;
    assert_eq!(problem["field"], "policy");

    // Created on a run's first use, for another user and agent.
    model.push(Reply::text("ok"));
    let run: Value = app
        .post_form(
            &format!("/agents/{other_agent}/runs"),
            &[
                ("message", "hello"),
                ("stream", "false"),
                ("session_id", "auto-1"),
                ("user_id", "bob"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let auto: Value = app.get_json("/sessions/auto-1").await;
    assert_eq!(auto["user_id"], "bob");
    assert_eq!(auto["component_id"], other_agent);
    // A session belongs to its agent.
    let response = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[("message", "x"), ("session_id", "auto-1")],
        )
        .await;
    assert_problem(response, 409, "conflict").await;

    // Lists: newest first, filters, total count and cursor pages.
    for n in 0..3 {
        app.post_json(
            "/sessions",
            &json!({"session_id": format!("bulk-{n}"), "agent_id": agent, "user_id": "ann"}),
        )
        .send()
        .await
        .unwrap();
    }
    let all: Value = app.get_json("/sessions?limit=2").await;
    assert_eq!(all["meta"]["total_count"], 5);
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bulk-2", "bulk-1"]);
    let cursor = all["meta"]["next_cursor"].as_str().unwrap();
    let next: Value = app
        .get_json(&format!("/sessions?limit=2&cursor={cursor}"))
        .await;
    let ids: Vec<&str> = next["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bulk-0", "auto-1"]);
    let bob: Value = app.get_json("/sessions?user_id=bob").await;
    assert_eq!(bob["meta"]["total_count"], 1);
    let by_agent: Value = app
        .get_json(&format!("/sessions?type=agent&component_id={agent}"))
        .await;
    assert_eq!(by_agent["meta"]["total_count"], 4);
    let named: Value = app.get_json("/sessions?session_name=plan").await;
    assert_eq!(named["data"][0]["session_id"], "chat-1");
    let bad = app.get("/sessions?type=robot").send().await.unwrap();
    let problem = assert_problem(bad, 422, "invalid_field").await;
    assert_eq!(problem["field"], "type");
    let bad = app.get("/sessions?cursor=zzz").send().await.unwrap();
    assert_problem(bad, 422, "invalid_field").await;

    // Update and rename.
    let patched: Value = app
        .request(reqwest::Method::PATCH, "/sessions/chat-1", &app.admin_key)
        .json(&json!({"session_state": {"step": 2}, "summary": "about plans", "policy": "reject"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["session_state"], json!({"step": 2}));
    assert_eq!(patched["summary"], "about plans");
    assert_eq!(patched["policy"], "reject");
    assert_eq!(patched["session_name"], "Planning");
    let renamed: Value = app
        .post_json(
            "/sessions/chat-1/rename",
            &json!({"session_name": "Roadmap"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["session_name"], "Roadmap");
    let bad = app
        .post_json("/sessions/chat-1/rename", &json!({"session_name": " "}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 422, "invalid_field").await;
    assert_eq!(problem["field"], "session_name");
    let missing = app
        .post_json("/sessions/nope/rename", &json!({"session_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404, "not_found").await;

    // The session's runs.
    let runs: Value = app.get_json("/sessions/auto-1/runs").await;
    assert_eq!(runs[0]["run_id"], run_id, "AgentOS's bare array");
    let one: Value = app
        .get_json(&format!("/sessions/auto-1/runs/{run_id}"))
        .await;
    assert_eq!(one["content"], "ok");
    let elsewhere = app
        .get(&format!("/sessions/chat-1/runs/{run_id}"))
        .send()
        .await
        .unwrap();
    assert_problem(elsewhere, 404, "not_found").await;

    // Delete one (with its runs), then several.
    let deleted = app
        .request(reqwest::Method::DELETE, "/sessions/auto-1", &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app
        .get(&format!("/agents/{other_agent}/runs/{run_id}"))
        .send()
        .await
        .unwrap();
    assert_problem(gone, 404, "not_found").await;
    let again = app
        .request(reqwest::Method::DELETE, "/sessions/auto-1", &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_problem(again, 404, "not_found").await;
    let bulk: Value = app
        .request(reqwest::Method::DELETE, "/sessions", &app.admin_key)
        .json(&json!({"session_ids": ["bulk-0", "bulk-1", "never"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["deleted"], 2);
    let left: Value = app.get_json("/sessions").await;
    assert_eq!(left["meta"]["total_count"], 2);
}

backend_tests!(sessions_story);
