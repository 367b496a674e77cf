//! The agent lifecycle state machine, action by action and status by status, and its event log.

use std::time::Duration;

use agentd_testkit::{backend_tests, spawn_app, spawn_app_with_model, Reply, TestApp, TestDb};
use serde_json::{json, Value};

use crate::agents::{agent_in, post, put_status};
use crate::assert_problem;

const STATUSES: [&str; 7] = [
    "initializing",
    "idle",
    "busy",
    "paused",
    "stopped",
    "terminated",
    "error",
];

/// The lifecycle actions and the statuses each may start from, written out independently of the code.
const ACTIONS: [(&str, &[&str]); 5] = [
    ("spawn", &["stopped", "error"]),
    ("pause", &["idle", "busy"]),
    ("resume", &["paused"]),
    ("restart", &["idle", "busy", "paused", "stopped", "error"]),
    (
        "terminate",
        &["initializing", "idle", "busy", "paused", "stopped", "error"],
    ),
];

/// `PUT /status`: from each status, the statuses it may move to.
const STATUS_MOVES: [(&str, &[&str]); 7] = [
    ("initializing", &["idle", "stopped", "error", "terminated"]),
    (
        "idle",
        &["busy", "paused", "stopped", "error", "terminated"],
    ),
    (
        "busy",
        &["idle", "paused", "stopped", "error", "terminated"],
    ),
    ("paused", &["idle", "stopped", "error", "terminated"]),
    ("stopped", &["initializing", "terminated"]),
    ("error", &["initializing", "stopped", "terminated"]),
    ("terminated", &[]),
];

async fn every_lifecycle_action_follows_the_state_machine(db: TestDb) {
    let app = spawn_app(db).await;
    for (action, allowed_from) in ACTIONS {
        for from in STATUSES {
            let id = agent_in(&app, from).await;
            let response = post(&app, &format!("/agents/{id}/{action}")).await;
            if allowed_from.contains(&from) {
                assert_eq!(response.status(), 200, "{action} from {from}");
                let agent: Value = response.json().await.unwrap();
                let expected = match action {
                    "pause" => "paused",
                    "terminate" => "terminated",
                    _ => "idle",
                };
                assert_eq!(agent["status"], expected, "{action} from {from}");
            } else {
                let problem = assert_problem(response, 409, "conflict").await;
                let detail = problem["detail"].as_str().unwrap();
                assert!(detail.contains(&format!("that is {from}")), "{detail}");
                for allowed in allowed_from {
                    assert!(detail.contains(allowed), "{action} from {from}: {detail}");
                }
            }
        }
    }
    let id = agent_in(&app, "idle").await;
    let problem = assert_problem(
        post(&app, &format!("/agents/{id}/explode")).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "action");
}

async fn every_status_change_follows_the_state_machine(db: TestDb) {
    let app = spawn_app(db).await;
    for (from, allowed) in STATUS_MOVES {
        for to in STATUSES {
            let id = agent_in(&app, from).await;
            let response = put_status(&app, &id, to).await;
            if allowed.contains(&to) {
                assert_eq!(response.status(), 200, "{from} → {to}");
            } else {
                let problem = assert_problem(response, 409, "conflict").await;
                let detail = problem["detail"].as_str().unwrap();
                assert!(detail.contains(&format!("that is {from}")), "{detail}");
                for target in allowed {
                    assert!(detail.contains(target), "{from} → {to}: {detail}");
                }
            }
        }
    }
    let id = agent_in(&app, "idle").await;
    let problem = assert_problem(put_status(&app, &id, "asleep").await, 422, "invalid_field").await;
    assert_eq!(problem["field"], "status");
}

async fn transitions_are_recorded_as_events(db: TestDb) {
    let app = spawn_app(db).await;
    let id = agent_in(&app, "idle").await;
    assert_eq!(
        post(&app, &format!("/agents/{id}/pause")).await.status(),
        200
    );
    assert_eq!(
        post(&app, &format!("/agents/{id}/resume")).await.status(),
        200
    );
    assert_eq!(
        post(&app, &format!("/agents/{id}/restart")).await.status(),
        200
    );
    assert_eq!(put_status(&app, &id, "busy").await.status(), 200);
    let mut events = Vec::new();
    let mut path = format!("/agents/{id}/events?limit=2");
    loop {
        let page: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
        events.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/agents/{id}/events?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let moves: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["kind"] == "status_changed")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["from_status"].as_str().unwrap().to_owned(),
                e["to_status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("ready", "initializing", "idle"),
        ("pause", "idle", "paused"),
        ("resume", "paused", "idle"),
        ("restart", "idle", "initializing"),
        ("ready", "initializing", "idle"),
        ("set status", "idle", "busy"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, f, t)| (a.to_string(), f.to_string(), t.to_string()))
        .collect();
    assert_eq!(moves, expected);
    assert_eq!(events[0]["kind"], "created");
    assert_ne!(
        events[1]["actor"], events[2]["actor"],
        "the server settles, the key acts"
    );
}

async fn status_of(app: &TestApp, id: &str) -> String {
    app.get_json(&format!("/agents/{id}")).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until the agent shows `status` (a run's last write lands just after its stream ends).
async fn wait_for_status(app: &TestApp, id: &str, status: &str) {
    for _ in 0..100 {
        if status_of(app, id).await == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the agent stayed {} instead of {status}",
        status_of(app, id).await
    );
}

/// `idle ⇄ busy` follows the agent's runs by itself: busy while one runs, idle when none does (a
/// paused run is not running); each change is an agent event caused by the run's key. An operator's
/// status (here `paused`) is not overridden by a run that ends.
async fn busy_while_a_run_runs(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let id = app
        .create_agent_id(&json!({"name": "worker", "model": "scripted/gpt-test",
                                 "tools": [{"name": "ask", "client_side": true}]}))
        .await;
    assert_eq!(status_of(&app, &id).await, "idle");

    // Two runs at once: busy until the second has finished too.
    model.push(Reply::text(&"slow ".repeat(20)).token_delay(Duration::from_millis(20)));
    model.push(Reply::text(&"slower ".repeat(40)).token_delay(Duration::from_millis(20)));
    let start = |n: usize| {
        let app = &app;
        let id = &id;
        async move {
            app.post_form(
                &format!("/agents/{id}/runs"),
                &[
                    ("message", &format!("run {n}")),
                    ("stream", "false"),
                    ("background", "true"),
                ],
            )
            .await
        }
    };
    assert_eq!(start(1).await.status(), 202);
    assert_eq!(start(2).await.status(), 202);
    assert_eq!(status_of(&app, &id).await, "busy");
    wait_for_status(&app, &id, "idle").await;
    let runs: Value = app.get_json(&format!("/agents/{id}/runs")).await;
    assert!(
        runs["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "COMPLETED"),
        "idle only once both runs are done: {runs}"
    );

    // A run paused for a client tool leaves the agent idle.
    model.push(Reply::tool_call("call_1", "ask", "{}"));
    let paused = app
        .post_form(
            &format!("/agents/{id}/runs"),
            &[("message", "ask"), ("stream", "false")],
        )
        .await;
    let paused: Value = paused.json().await.unwrap();
    assert_eq!(paused["status"], "PAUSED", "{paused}");
    assert_eq!(status_of(&app, &id).await, "idle");

    // Paused by its operator during a run: the run's end does not make it idle.
    model.push(Reply::text(&"long ".repeat(30)).token_delay(Duration::from_millis(20)));
    assert_eq!(start(3).await.status(), 202);
    assert_eq!(status_of(&app, &id).await, "busy");
    assert_eq!(
        post(&app, &format!("/agents/{id}/pause")).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let runs: Value = app.get_json(&format!("/agents/{id}/runs")).await;
    assert!(
        runs["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] != "RUNNING"),
        "the third run has ended: {runs}"
    );
    assert_eq!(status_of(&app, &id).await, "paused");

    let events: Value = app
        .get_json(&format!("/agents/{id}/events?limit=100"))
        .await;
    let moves: Vec<(&str, &str, &str)> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "status_changed")
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["from_status"].as_str().unwrap(),
                e["to_status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("ready", "initializing", "idle"),
            ("run started", "idle", "busy"),
            ("no run running", "busy", "idle"),
            ("run started", "idle", "busy"),
            ("no run running", "busy", "idle"),
            ("run started", "idle", "busy"),
            ("pause", "busy", "paused"),
        ]
    );
    let started = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "run started")
        .unwrap();
    assert!(
        started["actor"].as_str().unwrap().starts_with("key:"),
        "{started}"
    );
    assert!(started["detail"]["run_id"].is_string(), "{started}");
}

backend_tests!(
    every_lifecycle_action_follows_the_state_machine,
    every_status_change_follows_the_state_machine,
    transitions_are_recorded_as_events,
    busy_while_a_run_runs,
);
