//! Agent health: heartbeats, the sweeper's degradation over missed intervals, recovery, and probes of
//! remote agents' health endpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentd_runtime::config::HealthConfig;
use agentd_runtime::Config;
use agentd_testkit::{backend_tests, spawn_app_with, TestApp, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::assert_problem;

/// 200 ms heartbeats: degraded after 1 missed interval, unhealthy after 2, critical after 5.
fn fast_health() -> Config {
    Config {
        health: HealthConfig {
            heartbeat_interval_ms: 200,
            degraded_after_missed: 1,
            unhealthy_after_missed: 2,
            critical_after_missed: 5,
            sweep_interval_ms: 40,
            probe_timeout_ms: 300,
        },
        ..Config::default()
    }
}

async fn agent(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/agents/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the agent's recorded health is `health`; returns the health values seen on the way.
async fn wait_for_health(app: &TestApp, id: &str, health: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let current = agent(app, id).await["health"].as_str().unwrap().to_owned();
        if seen.last() != Some(&current) {
            seen.push(current.clone());
        }
        if current == health {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "agent {id} never became {health}; saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(action, actor)` of the audit entries the server made from the agent's events, oldest first.
async fn audited_agent_events(app: &TestApp, id: &str) -> Vec<(String, String)> {
    let page: Value = app
        .get_json(&format!("/audit?agent_id={id}&limit=500"))
        .await;
    let mut entries: Vec<(String, String)> = page["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|entry| entry["action"].as_str().unwrap().starts_with("agent."))
        .map(|entry| {
            assert_eq!(entry["target"], format!("/agents/{id}"), "{entry}");
            assert_eq!(entry["outcome"], "success", "{entry}");
            (
                entry["action"].as_str().unwrap().to_owned(),
                entry["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    entries.reverse();
    entries
}

async fn heartbeat(app: &TestApp, id: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/agents/{id}/heartbeat"),
        &app.admin_key,
    )
    .send()
    .await
    .unwrap()
}

async fn missed_heartbeats_degrade_health_and_a_heartbeat_restores_it(db: TestDb) {
    let app = spawn_app_with(db, fast_health()).await;
    let id = app.create_agent_id(&json!({"name": "worker"})).await;
    assert_eq!(
        agent(&app, &id).await["health"],
        "unknown",
        "a local agent that never beat is not judged"
    );
    let report: Value = heartbeat(&app, &id).await.json().await.unwrap();
    assert_eq!(report["health"], "healthy");
    assert_eq!(report["thresholds"]["unhealthy_after_seconds"], 0.4);

    let seen = wait_for_health(&app, &id, "unhealthy").await;
    assert!(
        seen.contains(&"degraded".to_owned()),
        "healthy → degraded → unhealthy, saw {seen:?}"
    );
    let explained: Value = app
        .get(&format!("/agents/{id}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        explained["missed_intervals"].as_u64().unwrap() >= 2,
        "{explained}"
    );
    assert!(
        explained["reason"].as_str().unwrap().contains("missed"),
        "{explained}"
    );
    assert!(
        explained["silence_seconds"].as_f64().unwrap() >= 0.4,
        "{explained}"
    );

    assert_eq!(heartbeat(&app, &id).await.status(), 200);
    assert_eq!(
        agent(&app, &id).await["health"],
        "healthy",
        "recovery on the next heartbeat"
    );
    wait_for_health(&app, &id, "critical").await;

    let events: Value = app
        .get(&format!("/agents/{id}/events?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changes: Vec<String> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "health_changed")
        .map(|e| e["detail"]["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(changes.first().map(String::as_str), Some("healthy"));
    assert!(
        changes.windows(2).any(|w| w == ["degraded", "unhealthy"]),
        "{changes:?}"
    );
    assert!(
        changes
            .windows(2)
            .any(|w| w[1] == "healthy" && w[0] != "healthy"),
        "recovery is an event: {changes:?}"
    );
    // The same changes are in the tenant's audit log: the sweeper's as `system`, the heartbeats'
    // (which are not recorded themselves when they succeed) as the key that sent them.
    let audited = audited_agent_events(&app, &id).await;
    let by = |actor: &str| {
        audited
            .iter()
            .filter(|(action, who)| action == "agent.health_changed" && who == actor)
            .count()
    };
    assert!(
        by("system") >= 3,
        "degraded, unhealthy, critical: {audited:?}"
    );
    let first_beat = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "health_changed")
        .unwrap();
    let key = format!("key:{}", first_beat["actor"].as_str().unwrap());
    assert_eq!(by(&key), 2, "the first beat and the recovery: {audited:?}");
    assert_eq!(
        audited
            .iter()
            .filter(|(action, _)| action == "agent.health_changed")
            .count(),
        changes.len(),
        "every health event, once: {audited:?}"
    );

    assert_eq!(
        app.request(
            Method::POST,
            &format!("/agents/{id}/terminate"),
            &app.admin_key
        )
        .send()
        .await
        .unwrap()
        .status(),
        200
    );
    assert_problem(heartbeat(&app, &id).await, 409, "conflict").await;
}

async fn a_remote_agent_is_probed(db: TestDb) {
    let app = spawn_app_with(db, fast_health()).await;

    // A remote agent's health endpoint, which the test can break.
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let endpoint = axum::Router::new().route(
        "/healthz",
        axum::routing::get(move || {
            let flag = flag.clone();
            async move {
                if flag.load(Ordering::SeqCst) {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, endpoint).await.unwrap() });

    let id = app.create_agent_id(&json!({"name": "far", "kind": "remote", "agent_url": format!("http://{address}"), "health_path": "/healthz"}),
    )
    .await;
    wait_for_health(&app, &id, "healthy").await;
    assert_eq!(
        agent(&app, &id).await["status"],
        "idle",
        "a probe that answers makes it ready"
    );
    let explained: Value = app
        .get(&format!("/agents/{id}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(explained["probe_url"], format!("http://{address}/healthz"));

    up.store(false, Ordering::SeqCst);
    let seen = wait_for_health(&app, &id, "unhealthy").await;
    assert!(seen.contains(&"degraded".to_owned()), "{seen:?}");
    up.store(true, Ordering::SeqCst);
    wait_for_health(&app, &id, "healthy").await;

    // Nothing listens here: never heard from, so it goes unhealthy from its creation time.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = app
        .create_agent_id(
            &json!({"name": "dead", "kind": "remote", "agent_url": format!("http://{closed}")}),
        )
        .await;
    wait_for_health(&app, &dead, "unhealthy").await;
    assert_eq!(agent(&app, &dead).await["status"], "initializing");

    // What the sweeper found is in the audit log, as its own doing: the answering probe made the
    // first agent ready once.
    let audited = audited_agent_events(&app, &id).await;
    assert_eq!(
        audited.first(),
        Some(&("agent.status_changed".to_owned(), "system".to_owned())),
        "{audited:?}"
    );
    assert!(
        audited
            .iter()
            .filter(|(action, _)| action == "agent.health_changed")
            .all(|(_, actor)| actor == "system")
            && audited.len() >= 5,
        "healthy, degraded, unhealthy, healthy again: {audited:?}"
    );
}

backend_tests!(
    missed_heartbeats_degrade_health_and_a_heartbeat_restores_it,
    a_remote_agent_is_probed,
);
