//! The audit log: what the middleware records (mutations and refusals, with who, what, on what, how
//! it ended and the request id; never a successful read), `GET /audit` with filters and cursors,
//! one agent's trail at `/api/audit/{agent_id}`, the hash chain, and tenants never seeing each other's
//! entries.

use agentd_core::audit::{platform_tenant, AuditOutcome};
use agentd_store::AuditFilter;
use agentd_testkit::{backend_tests, spawn_app, TestApp, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::assert_problem;

/// The id of the default tenant's admin key, as the audit log names it.
async fn admin_actor(app: &TestApp) -> String {
    let keys = app.get_json("/keys").await;
    format!("key:{}", keys["data"][0]["id"].as_str().unwrap())
}

/// Every entry of `path` (a list route), following cursors with `limit` per page.
async fn all_pages(app: &TestApp, key: &str, path: &str, limit: u32) -> Vec<Value> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{separator}limit={limit}&cursor={c}"),
            None => format!("{path}{separator}limit={limit}"),
        };
        let response = app.request(Method::GET, &url, key).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {url}");
        let page: Value = response.json().await.unwrap();
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= limit as usize, "{page}");
        entries.extend(data.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    entries
}

/// The one entry with this action and target.
fn find<'a>(entries: &'a [Value], action: &str, target: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .collect();
    assert_eq!(found.len(), 1, "{action} {target} in {entries:#?}");
    found[0]
}

async fn mutations_and_refusals_are_recorded_and_reads_are_not(db: TestDb) {
    let app = spawn_app(db).await;
    let admin = admin_actor(&app).await;

    let agent: Value = app
        .post_json("/agents", &json!({"name": "audited"}))
        .header("x-request-id", "req-create-agent")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = agent["id"].as_str().unwrap().to_owned();
    let paused = app
        .post_json(&format!("/agents/{agent}/pause"), &json!({}))
        .header("x-request-id", "req-pause")
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), 200);
    let (reader_id, reader) = app.create_key(&["agents:read"]).await;
    let (doomed, _) = app.create_key(&["agents:read"]).await;
    let deleted = app
        .request(Method::DELETE, &format!("/keys/{doomed}"), &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    // Refused: no key (401), a key without the scope (403) on a write and on a read.
    let anonymous = app
        .client
        .post(app.url("/keys"))
        .header("x-request-id", "req-anonymous")
        .json(&json!({"name": "x", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let forbidden = app
        .request(Method::POST, "/keys", &reader)
        .header("x-request-id", "req-forbidden")
        .json(&json!({"name": "x", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let forbidden_read = app
        .request(Method::GET, "/keys", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden_read.status(), 403);
    // Successful reads leave no trace, and neither do routine high-rate calls such as heartbeats:
    // only the health change the first one makes is recorded, as an agent event.
    for path in ["/agents", "/keys", &format!("/agents/{agent}")] {
        assert_eq!(app.get(path).send().await.unwrap().status(), 200, "{path}");
    }
    for _ in 0..2 {
        let heartbeat = app
            .post_json(&format!("/agents/{agent}/heartbeat"), &json!({}))
            .send()
            .await
            .unwrap();
        assert!(heartbeat.status().is_success(), "{}", heartbeat.status());
    }

    let entries = all_pages(&app, &app.admin_key, "/audit", 500).await;
    let created = find(&entries, "POST /agents", &format!("/agents/{agent}"));
    assert_eq!(created["actor"], admin);
    assert_eq!(created["agent_id"], agent);
    assert_eq!(created["status"], 201);
    assert_eq!(created["outcome"], "success");
    assert_eq!(created["request_id"], "req-create-agent");
    assert!(
        created["client_addr"]
            .as_str()
            .is_some_and(|addr| addr.starts_with("127.0.0.1:")),
        "{created}"
    );
    assert!(created["created_at"].is_string());

    let pause = find(
        &entries,
        "POST /agents/{agent_id}/pause",
        &format!("/agents/{agent}/pause"),
    );
    assert_eq!(pause["actor"], admin);
    assert_eq!(pause["agent_id"], agent);
    assert_eq!(pause["status"], 200);
    assert_eq!(pause["request_id"], "req-pause");

    let key_created = find(&entries, "POST /keys", &format!("/keys/{reader_id}"));
    assert_eq!(key_created["actor"], admin);
    assert_eq!(key_created["status"], 201);
    assert_eq!(key_created["agent_id"], Value::Null);
    let key_deleted = find(
        &entries,
        "DELETE /keys/{key_id}",
        &format!("/keys/{doomed}"),
    );
    assert_eq!(key_deleted["status"], 204);
    assert_eq!(key_deleted["outcome"], "success");

    let refused = find(&entries, "POST /keys", "/keys");
    assert_eq!(refused["actor"], format!("key:{reader_id}"));
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["outcome"], "denied");
    assert_eq!(refused["request_id"], "req-forbidden");
    let refused_read = find(&entries, "GET /keys", "/keys");
    assert_eq!(refused_read["actor"], format!("key:{reader_id}"));
    assert_eq!(refused_read["outcome"], "denied");

    let healthy = find(
        &entries,
        "agent.health_changed",
        &format!("/agents/{agent}"),
    );
    assert_eq!(healthy["actor"], admin);
    assert_eq!(healthy["agent_id"], agent);
    assert_eq!(healthy["status"], 0, "no HTTP answer of its own");
    assert_eq!(healthy["outcome"], "success");

    // Nothing else: no successful GET, no heartbeat, and the anonymous 401 is not the tenant's.
    assert_eq!(entries.len(), 8, "{entries:#?}");
    assert!(entries
        .iter()
        .all(|e| !e["action"].as_str().unwrap().starts_with("GET ") || e["status"] == 403));

    // The 401 belongs to no tenant: it is on the platform chain.
    app.runtime.audit.flush().await;
    let platform = app
        .runtime
        .store
        .list_audit(platform_tenant(), &AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(platform.len(), 1, "{platform:#?}");
    let anonymous = &platform[0].record;
    assert_eq!(anonymous.actor, "anonymous");
    assert_eq!(anonymous.action, "POST /keys");
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.outcome, AuditOutcome::Denied);
    assert_eq!(anonymous.request_id.as_deref(), Some("req-anonymous"));

    // Newest first, one gapless chain: each entry links to the one after it in the list.
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=8).rev().collect::<Vec<_>>());
    for pair in entries.windows(2) {
        assert_eq!(pair[0]["prev_hash"], pair[1]["hash"]);
    }
    assert_eq!(entries[7]["prev_hash"], "0".repeat(64));
}

async fn the_audit_list_filters_and_pages(db: TestDb) {
    let app = spawn_app(db).await;
    let admin = admin_actor(&app).await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let first = app.create_agent_id(&json!({"name": "one"})).await;
    let second = app.create_agent_id(&json!({"name": "two"})).await;
    for agent in [&first, &second] {
        let response = app
            .post_json(&format!("/agents/{agent}/pause"), &json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let (reader_id, reader) = app.create_key(&["agents:read"]).await;
    for _ in 0..2 {
        let response = app
            .request(Method::DELETE, &format!("/agents/{first}"), &reader)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
    }
    // A failure: resuming an agent that is no longer paused.
    app.post_json(&format!("/agents/{second}/resume"), &json!({}))
        .send()
        .await
        .unwrap();
    let conflict = app
        .post_json(&format!("/agents/{second}/resume"), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(conflict.status(), 409);

    let all = all_pages(&app, &app.admin_key, "/audit", 500).await;
    assert_eq!(all.len(), 9, "{all:#?}");
    // Pages of 2 walk the same entries in the same order.
    let paged = all_pages(&app, &app.admin_key, "/audit", 2).await;
    assert_eq!(paged, all);

    let query = |filter: String| {
        let app = &app;
        async move {
            all_pages(app, &app.admin_key, &format!("/audit?{filter}"), 3)
                .await
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["action"].as_str().unwrap(),
                        e["target"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        query(format!("actor=key:{reader_id}")).await,
        [
            format!("DELETE /agents/{{agent_id}} /agents/{first}"),
            format!("DELETE /agents/{{agent_id}} /agents/{first}"),
        ]
    );
    assert_eq!(query("outcome=denied".to_owned()).await.len(), 2);
    assert_eq!(
        query("outcome=failed".to_owned()).await,
        [format!(
            "POST /agents/{{agent_id}}/resume /agents/{second}/resume"
        )]
    );
    assert_eq!(
        query("action=POST%20%2Fagents%2F%7Bagent_id%7D%2Fpause".to_owned()).await,
        [
            format!("POST /agents/{{agent_id}}/pause /agents/{second}/pause"),
            format!("POST /agents/{{agent_id}}/pause /agents/{first}/pause"),
        ]
    );
    assert_eq!(
        query(format!("agent_id={first}")).await,
        [
            format!("DELETE /agents/{{agent_id}} /agents/{first}"),
            format!("DELETE /agents/{{agent_id}} /agents/{first}"),
            format!("POST /agents/{{agent_id}}/pause /agents/{first}/pause"),
            format!("POST /agents /agents/{first}"),
        ]
    );
    assert_eq!(
        query(format!("target=/agents/{second}/")).await,
        [
            format!("POST /agents/{{agent_id}}/resume /agents/{second}/resume"),
            format!("POST /agents/{{agent_id}}/resume /agents/{second}/resume"),
            format!("POST /agents/{{agent_id}}/pause /agents/{second}/pause"),
        ]
    );
    assert_eq!(
        query(format!("actor={admin}&outcome=success")).await.len(),
        6
    );
    let time =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        query(format!("from={}&to={}", time(started), time(later)))
            .await
            .len(),
        9
    );
    assert!(query(format!("from={}", time(later))).await.is_empty());
    assert!(query(format!("to={}", time(started))).await.is_empty());

    for bad in [
        "outcome=maybe",
        "agent_id=nope",
        "from=yesterday",
        "limit=0",
        "cursor=x",
    ] {
        let response = app.get(&format!("/audit?{bad}")).send().await.unwrap();
        assert_problem(response, 422, "invalid_field").await;
    }
    let backwards = app
        .get(&format!("/audit?from={}&to={}", time(later), time(started)))
        .send()
        .await
        .unwrap();
    assert_problem(backwards, 422, "invalid_field").await;
}

async fn an_agent_reads_its_own_trail_and_tenants_see_only_their_own(db: TestDb) {
    let app = spawn_app(db).await;
    let mine = app.create_agent_id(&json!({"name": "mine"})).await;
    let other = app.create_agent_id(&json!({"name": "other"})).await;
    for agent in [&mine, &other] {
        app.post_json(&format!("/agents/{agent}/pause"), &json!({}))
            .send()
            .await
            .unwrap();
    }
    let trail = all_pages(&app, &app.admin_key, &format!("/api/audit/{mine}"), 50).await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["POST /agents/{agent_id}/pause", "POST /agents"]);
    assert!(trail.iter().all(|e| e["agent_id"] == mine.as_str()));

    // A key scoped to the agent reads its own trail, and no other agent's.
    let (_, agent_key) = app.create_key(&[&format!("agents:{mine}:read")]).await;
    let own = all_pages(&app, &agent_key, &format!("/api/audit/{mine}"), 50).await;
    assert_eq!(own, trail);
    let response = app
        .request(Method::GET, &format!("/api/audit/{other}"), &agent_key)
        .send()
        .await
        .unwrap();
    assert_problem(response, 403, "missing_scope").await;
    // It has no `audit:read`: the tenant's whole log is not its to read.
    let response = app
        .request(Method::GET, "/audit", &agent_key)
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 403, "missing_scope").await;
    assert!(
        body["detail"].as_str().unwrap().contains("audit:read"),
        "{body}"
    );
    // The trail's own filters.
    let creation = all_pages(
        &app,
        &app.admin_key,
        &format!("/api/audit/{mine}?action=POST%20%2Fagents"),
        50,
    )
    .await;
    assert_eq!(creation.len(), 1);
    assert_eq!(creation[0]["target"], format!("/agents/{mine}"));

    // Another tenant: the agent is not found, and its log holds only its own entries.
    let tenant_b = app.create_tenant("b").await;
    crate::assert_all_not_found(
        &app,
        &tenant_b,
        vec![
            (Method::GET, format!("/api/audit/{mine}"), None),
            (
                Method::GET,
                format!("/api/audit/{}", uuid::Uuid::now_v7()),
                None,
            ),
        ],
    )
    .await;
    let theirs = app
        .request(Method::POST, "/agents", &tenant_b)
        .json(&json!({"name": "theirs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 201);
    let b_log = all_pages(&app, &tenant_b, "/audit", 50).await;
    assert_eq!(b_log.len(), 1, "{b_log:#?}");
    assert_eq!(b_log[0]["action"], "POST /agents");
    assert_eq!(b_log[0]["seq"], 1, "tenant b's chain starts at 1");
    let a_log = all_pages(&app, &app.admin_key, "/audit", 50).await;
    assert!(
        a_log.iter().all(|e| e["target"] != b_log[0]["target"]),
        "{a_log:#?}"
    );
    assert!(
        !serde_json::to_string(&b_log).unwrap().contains(&mine),
        "tenant b sees nothing of tenant a's agent"
    );
}

backend_tests!(
    mutations_and_refusals_are_recorded_and_reads_are_not,
    the_audit_list_filters_and_pages,
    an_agent_reads_its_own_trail_and_tenants_see_only_their_own,
);
