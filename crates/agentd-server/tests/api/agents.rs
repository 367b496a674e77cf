//! `/agents`: the registry face, on both backends.

use std::collections::HashSet;

use agentd_testkit::{backend_tests, spawn_app, Reply, TestApp, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{assert_all_not_found, assert_problem};

pub(crate) async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.request(Method::POST, path, &app.admin_key)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn put_status(app: &TestApp, id: &str, status: &str) -> reqwest::Response {
    app.request(Method::PUT, &format!("/agents/{id}/status"), &app.admin_key)
        .json(&json!({"status": status}))
        .send()
        .await
        .unwrap()
}

/// An agent in `status`, reached through the API.
pub(crate) async fn agent_in(app: &TestApp, status: &str) -> String {
    let body = if status == "initializing" {
        json!({"name": "remote", "kind": "remote", "agent_url": "http://127.0.0.1:9"})
    } else {
        json!({"name": "local"})
    };
    let id = app.create_agent(&body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let step = match status {
        "initializing" | "idle" => None,
        "paused" => Some(post(app, &format!("/agents/{id}/pause")).await),
        "terminated" => Some(post(app, &format!("/agents/{id}/terminate")).await),
        other => Some(put_status(app, &id, other).await),
    };
    if let Some(response) = step {
        assert_eq!(response.status(), 200, "reaching {status}");
    }
    let agent: Value = app
        .get(&format!("/agents/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agent["status"], status);
    id
}

async fn agents_are_created_from_either_api_shape(db: TestDb) {
    let app = spawn_app(db).await;
    let response = app
        .post_json(
            "/agents",
            &json!({"name": "writer", "model": "gpt-4o-mini", "prompt": "Write well.", "description": "a writer",
                    "tools": [{"name": "search", "description": "web search"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let agent: Value = response.json().await.unwrap();
    assert_eq!(agent["agent_id"], agent["id"]);
    assert!(
        uuid::Uuid::parse_str(agent["id"].as_str().unwrap())
            .unwrap()
            .get_version_num()
            == 7
    );
    assert_eq!(agent["version"], 1);
    assert_eq!(agent["instructions"], "Write well.");
    assert_eq!(agent["status"], "idle", "a local agent is ready at once");
    assert_eq!(agent["kind"], "local");
    assert_eq!(agent["tools"]["tools"][0]["name"], "search");
    assert_eq!(
        agent["model"],
        json!({"id": "gpt-4o-mini", "model": "gpt-4o-mini"}),
        "AgentOS's model object; no provider part in the reference"
    );
    assert_eq!(agent["performance"]["total_runs"], 0);
    assert_eq!(agent["performance"]["error_rate"], 0.0);

    let full = app.create_agent(&json!({"name": "ops", "instructions": "Run ops.", "model": "anthropic/claude-3-5-haiku",
               "mcp_servers": [{"name": "fs", "command": "mcp-fs", "args": ["--root", "/tmp"]},
                               {"name": "web", "url": "http://127.0.0.1:9000/mcp"}],
               "skills": ["triage"], "tags": ["ops", "prod"], "metadata": {"cost_center": 7},
               "team_id": "t1", "owner": "alice"}),
    )
    .await;
    assert_eq!(full["mcp_servers"][1]["url"], "http://127.0.0.1:9000/mcp");
    assert_eq!(full["metadata"]["cost_center"], 7);
    assert_eq!(full["owner"], "alice");

    let remote = app.create_agent(&json!({"name": "far", "kind": "remote", "agent_url": "http://127.0.0.1:9", "health_path": "/healthz"})).await;
    assert_eq!(
        remote["status"], "initializing",
        "a remote agent waits to be heard from"
    );

    let fetched: Value = app
        .get(&format!("/agents/{}", full["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, full);
    assert_eq!(
        full["model"],
        json!({"id": "anthropic/claude-3-5-haiku", "provider": "anthropic", "model": "claude-3-5-haiku"})
    );

    // What an answer carries can be sent back: the model object and AgentOS's tools object.
    let id = agent["id"].as_str().unwrap();
    let patched: Value = app
        .request(Method::PATCH, &format!("/agents/{id}"), &app.admin_key)
        .json(&json!({"model": agent["model"], "tools": agent["tools"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["model"], agent["model"]);
    assert_eq!(patched["tools"], agent["tools"]);
    let patched: Value = app
        .request(Method::PATCH, &format!("/agents/{id}"), &app.admin_key)
        .json(&json!({"model": {"provider": "openai", "model": "gpt-4o"}, "tools": {"tools": [], "tool_call_limit": 3}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["model"]["id"], "openai/gpt-4o");
    assert_eq!(patched["tools"], json!({"tools": []}));
}

async fn bad_specs_name_the_field(db: TestDb) {
    let app = spawn_app(db).await;
    let cases = [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "a", "kind": "cloud"}), "kind"),
        (json!({"name": "a", "kind": "remote"}), "agent_url"),
        (json!({"name": "a", "agent_url": "ftp://x"}), "agent_url"),
        (json!({"name": "a", "model": "openai/"}), "model"),
        (
            json!({"name": "a", "model": {"provider": "openai"}}),
            "model",
        ),
        (json!({"name": "a", "model": 7}), "model"),
        (
            json!({"name": "a", "tools": {"tool_choice": "auto"}}),
            "tools.tools",
        ),
        (
            json!({"name": "a", "tools": {"tools": [{"description": "no name"}]}}),
            "tools.tools[0].name",
        ),
        (
            json!({"name": "a", "tools": [{"name": "t"}, {"name": "t"}]}),
            "tools[1].name",
        ),
        (
            json!({"name": "a", "tools": [{"name": "bad name"}]}),
            "tools[0].name",
        ),
        (
            json!({"name": "a", "tools": [{"description": "no name"}]}),
            "tools[0].name",
        ),
        (
            json!({"name": "a", "mcp_servers": [{"name": "m"}]}),
            "mcp_servers[0]",
        ),
        (json!({"name": "a", "tags": "ops"}), "tags"),
        (
            json!({"name": "a", "health_path": "healthz"}),
            "health_path",
        ),
    ];
    for (body, field) in cases {
        let response = app.post_json("/agents", &body).send().await.unwrap();
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let listed: Value = app
        .get("/agents")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "nothing was half-created"
    );
}

async fn patches_make_versions_and_if_match_refuses_stale_ones(db: TestDb) {
    let app = spawn_app(db).await;
    let id = agent_in(&app, "idle").await;
    let patch = |if_match: Option<&str>, body: Value| {
        let mut request = app
            .request(Method::PATCH, &format!("/agents/{id}"), &app.admin_key)
            .json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    let response = patch(Some("\"1\""), json!({"description": "v2", "tags": ["a"]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let agent: Value = response.json().await.unwrap();
    assert_eq!(
        (agent["version"].clone(), agent["description"].clone()),
        (json!(2), json!("v2"))
    );

    let problem = assert_problem(
        patch(Some("\"1\""), json!({"description": "lost"}))
            .await
            .unwrap(),
        412,
        "precondition_failed",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains('2'),
        "{problem}"
    );
    assert_problem(
        patch(None, json!({"version": 1, "description": "lost"}))
            .await
            .unwrap(),
        412,
        "precondition_failed",
    )
    .await;
    let problem = assert_problem(
        patch(Some("soon"), json!({"description": "x"}))
            .await
            .unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "If-Match");

    let agent: Value = patch(
        None,
        json!({"description": null, "model": "ollama/llama3.1:8b"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(agent["version"], 3);
    assert_eq!(agent["description"], Value::Null);
    let problem = assert_problem(
        patch(None, json!({"tools": [{"name": "x y"}]}))
            .await
            .unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "tools[0].name");

    let versions: Value = app
        .get(&format!("/agents/{id}/versions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let numbers: Vec<u64> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    assert_eq!(versions["data"][1]["description"], "v2");

    assert_eq!(
        post(&app, &format!("/agents/{id}/terminate"))
            .await
            .status(),
        200
    );
    assert_problem(
        patch(None, json!({"description": "late"})).await.unwrap(),
        409,
        "conflict",
    )
    .await;
}

async fn delete_terminates_and_keeps_history(db: TestDb) {
    let app = spawn_app(db).await;
    let id = agent_in(&app, "idle").await;
    let delete = || {
        app.request(Method::DELETE, &format!("/agents/{id}"), &app.admin_key)
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(
        delete().await.unwrap().status(),
        204,
        "deleting again changes nothing"
    );
    let agent: Value = app
        .get(&format!("/agents/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agent["status"], "terminated");
    let listed: Value = app
        .get("/agents")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed.as_array().unwrap().is_empty(),
        "terminated agents are not listed by default"
    );
    let listed: Value = app
        .get("/agents?status=terminated")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    let events: Value = app
        .get(&format!("/agents/{id}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        events["data"].as_array().unwrap().last().unwrap()["to_status"],
        "terminated"
    );
}

async fn lists_filter_and_page(db: TestDb) {
    let app = spawn_app(db).await;
    app.create_agent(
        &json!({"name": "alpha-1", "tags": ["blue"], "team_id": "t1", "owner": "ann"}),
    )
    .await;
    app.create_agent(&json!({"name": "alpha-2", "tags": ["red"], "owner": "bob"}))
        .await;
    app.create_agent(&json!({"name": "beta-1", "tags": ["blue", "red"], "team_id": "t1"}))
        .await;
    let paused = agent_in(&app, "paused").await;
    let names = |body: Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let app = &app;
    let get = |path: &'static str| async move {
        app.get(path)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(names(get("/agents?tag=blue").await), ["alpha-1", "beta-1"]);
    assert_eq!(
        names(get("/agents?name_prefix=alpha").await),
        ["alpha-1", "alpha-2"]
    );
    assert_eq!(names(get("/agents?team_id=t1&tag=red").await), ["beta-1"]);
    assert_eq!(names(get("/agents?owner=bob").await), ["alpha-2"]);
    assert_eq!(get("/agents?status=paused").await[0]["id"], paused.as_str());
    assert_eq!(
        names(get("/agents?health=unknown&name_prefix=beta").await),
        ["beta-1"]
    );
    assert_eq!(names(get("/agents?health=critical").await).len(), 0);
    let problem = assert_problem(
        app.get("/agents?health=fine").send().await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "health");

    // The body is AgentOS's bare array; the next page is in `Link` (the same filters kept) and
    // its cursor in `X-Next-Cursor`.
    let blue = app.get("/agents?tag=blue&limit=1").send().await.unwrap();
    let cursor = blue.headers()["x-next-cursor"].to_str().unwrap().to_owned();
    assert_eq!(
        blue.headers()["link"].to_str().unwrap(),
        format!("</agents?tag=blue&limit=1&cursor={cursor}>; rel=\"next\""),
        "the next page keeps the filters"
    );
    assert_eq!(names(blue.json().await.unwrap()), ["alpha-1"]);
    let all = app.get("/agents?limit=3").send().await.unwrap();
    let cursor_all = all.headers()["x-next-cursor"].to_str().unwrap().to_owned();
    assert_eq!(
        all.headers()["link"].to_str().unwrap(),
        format!("</agents?limit=3&cursor={cursor_all}>; rel=\"next\"")
    );
    assert_eq!(
        all.json::<Value>().await.unwrap().as_array().unwrap().len(),
        3
    );
    let second = app
        .get(&format!("/agents?limit=3&cursor={cursor_all}"))
        .send()
        .await
        .unwrap();
    assert!(
        second.headers().get("link").is_none(),
        "the last page has no next"
    );
    assert!(second.headers().get("x-next-cursor").is_none());
    let second: Value = second.json().await.unwrap();
    assert_eq!(second.as_array().unwrap().len(), 1);
}

async fn paging_visits_each_agent_once_while_others_are_created(db: TestDb) {
    let app = spawn_app(db).await;
    let mut existing = HashSet::new();
    for n in 0..120 {
        existing.insert(
            app.create_agent(&json!({"name": format!("agent {n}")}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let writer = {
        let client = app.client.clone();
        let url = app.url("/agents");
        let key = app.admin_key.clone();
        tokio::spawn(async move {
            for n in 0..60 {
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"name": format!("late {n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };
    let mut seen = Vec::new();
    // Follows the `Link` header, as a generic client would.
    let mut path = "/agents?limit=7".to_owned();
    loop {
        let response = app.get(&path).send().await.unwrap();
        let next = response.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            link[1..link.find('>').unwrap()].to_owned()
        });
        let page: Value = response.json().await.unwrap();
        seen.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned()),
        );
        match next {
            Some(next) => path = next,
            None => break,
        }
    }
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no agent is visited twice");
    assert!(
        existing.iter().all(|id| unique.contains(id)),
        "every agent that existed is visited"
    );
}

async fn unknown_and_foreign_agents_are_404(db: TestDb) {
    let app = spawn_app(db).await;
    let id = agent_in(&app, "idle").await;
    let other = app.create_tenant("tenant-b").await;
    let missing = uuid::Uuid::now_v7().to_string();
    for target in [missing.as_str(), id.as_str()] {
        let key = if target == id {
            other.as_str()
        } else {
            app.admin_key.as_str()
        };
        let calls = [
            (Method::GET, format!("/agents/{target}"), None),
            (
                Method::PATCH,
                format!("/agents/{target}"),
                Some(json!({"description": "x"})),
            ),
            (Method::DELETE, format!("/agents/{target}"), None),
            (Method::GET, format!("/agents/{target}/versions"), None),
            (Method::GET, format!("/agents/{target}/events"), None),
            (Method::POST, format!("/agents/{target}/pause"), None),
            (
                Method::PUT,
                format!("/agents/{target}/status"),
                Some(json!({"status": "busy"})),
            ),
        ];
        assert_all_not_found(&app, key, calls.to_vec()).await;
    }
    let listed: Value = app
        .request(Method::GET, "/agents", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.as_array().unwrap().is_empty());
    let agent: Value = app
        .get(&format!("/agents/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (agent["status"].clone(), agent["version"].clone()),
        (json!("idle"), json!(1)),
        "tenant B changed nothing"
    );
    let problem = assert_problem(
        app.get("/agents/not-a-uuid/events").send().await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "agent_id");
}

async fn per_agent_scopes_reach_one_agent_only(db: TestDb) {
    let app = spawn_app(db).await;
    let mine = agent_in(&app, "idle").await;
    let other = agent_in(&app, "idle").await;
    let read = format!("agents:{mine}:read");
    let write = format!("agents:{mine}:write");
    let (_, key) = app.create_key(&[read.as_str(), write.as_str()]).await;
    let call = |method: Method, path: String| app.request(method, &path, &key).send();

    assert_eq!(
        call(Method::GET, format!("/agents/{mine}"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call(Method::GET, format!("/agents/{mine}/events"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call(Method::POST, format!("/agents/{mine}/pause"))
            .await
            .unwrap()
            .status(),
        200
    );
    let problem = assert_problem(
        call(Method::GET, format!("/agents/{other}")).await.unwrap(),
        403,
        "missing_scope",
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("agents:read") && detail.contains(&format!("agents:{other}:read")),
        "{detail}"
    );
    assert_problem(
        call(Method::POST, format!("/agents/{other}/pause"))
            .await
            .unwrap(),
        403,
        "missing_scope",
    )
    .await;
    assert_problem(
        call(Method::DELETE, format!("/agents/{mine}"))
            .await
            .unwrap(),
        403,
        "missing_scope",
    )
    .await;
    let listed: Value = call(Method::GET, "/agents".to_owned())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()], "a per-agent key lists only its agent");
    let (_, unrelated) = app.create_key(&["teams:read"]).await;
    assert_problem(
        app.request(Method::GET, "/agents", &unrelated)
            .send()
            .await
            .unwrap(),
        403,
        "missing_scope",
    )
    .await;

    let (_, wildcard) = app.create_key(&["agents:*:read"]).await;
    let response = app
        .request(Method::GET, &format!("/agents/{other}"), &wildcard)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let other_agent: Value = app
        .get(&format!("/agents/{other}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        other_agent["status"], "idle",
        "the scoped key changed nothing it may not reach"
    );
}

backend_tests!(
    per_agent_scopes_reach_one_agent_only,
    agents_are_created_from_either_api_shape,
    bad_specs_name_the_field,
    patches_make_versions_and_if_match_refuses_stale_ones,
    delete_terminates_and_keeps_history,
    lists_filter_and_page,
    paging_visits_each_agent_once_while_others_are_created,
    unknown_and_foreign_agents_are_404,
);

/// Each node serves `GET /agents/{id}` from memory; a change made on another node (a new version, a
/// lifecycle move, a finished run's figures) must show there at once. PostgreSQL only: several nodes
/// share a PostgreSQL database, while a SQLite file belongs to one server.
#[tokio::test]
async fn changes_on_one_node_show_on_another() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (first, model) = agentd_testkit::spawn_app_with_model(db).await;
    let second = first.another_node().await;
    let id = first
        .create_agent_id(&json!({"name": "shared", "model": "scripted/gpt-test"}))
        .await;
    let path = format!("/agents/{id}");
    // Both nodes have read (and so cached) the agent.
    assert_eq!(second.get_json(&path).await["version"], 1);
    assert_eq!(first.get_json(&path).await["version"], 1);

    /// Reads on `app` until `check` holds (the announcement crosses in milliseconds), or fails.
    async fn eventually(app: &TestApp, path: &str, check: impl Fn(&Value) -> bool, what: &str) {
        let started = std::time::Instant::now();
        loop {
            let agent = app.get_json(path).await;
            if check(&agent) {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{what}: still {agent}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    let patched = first
        .request(Method::PATCH, &path, &first.admin_key)
        .json(&json!({"description": "changed on the first node"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    eventually(&second, &path, |a| a["version"] == 2, "a new version").await;
    eventually(&first, &path, |a| a["version"] == 2, "its own write").await;

    let paused = post(&second, &format!("/agents/{id}/pause")).await;
    assert_eq!(paused.status(), 200);
    eventually(
        &first,
        &path,
        |a| a["status"] == "paused",
        "a lifecycle move",
    )
    .await;
    assert_eq!(
        post(&first, &format!("/agents/{id}/resume")).await.status(),
        200
    );
    eventually(&second, &path, |a| a["status"] == "idle", "back to idle").await;

    model.push(Reply::text("done"));
    let run = first
        .post_form(
            &format!("/agents/{id}/runs"),
            &[("message", "go"), ("stream", "false")],
        )
        .await;
    assert_eq!(run.status(), 200);
    eventually(
        &second,
        &path,
        |a| a["performance"]["total_runs"] == 1,
        "a finished run's figures",
    )
    .await;
}
