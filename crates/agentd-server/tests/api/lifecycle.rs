//! The agent lifecycle state machine, action by action and status by status, and its event log.

use agentd_testkit::{backend_tests, spawn_app, TestDb};
use serde_json::Value;

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

backend_tests!(
    every_lifecycle_action_follows_the_state_machine,
    every_status_change_follows_the_state_machine,
    transitions_are_recorded_as_events,
);
