//! The gateway over raw HTTP: plans (requests per minute with `RateLimit-*` headers, monthly tokens
//! over runs and gateway calls), each face's error shape, the Ollama-style `/v1/llm/*` routes,
//! AgentOS's `GET /models` and `/account/usage` with runs attributed to the key that started them.
//! (The OpenAI SDK itself drives `/v1` in `openai_sdk.rs`.)

use agentd_runtime::config::PlanConfig;
use agentd_runtime::Config;
use agentd_testkit::{
    backend_tests, spawn_app_with_model, spawn_app_with_model_and, Reply, TestDb,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::assert_problem;

fn plan(requests_per_minute: Option<u32>, monthly_tokens: Option<u64>) -> Config {
    let mut config = Config::default();
    config.plans.insert(
        "default".to_owned(),
        PlanConfig {
            requests_per_minute,
            monthly_tokens,
            concurrent_runs: None,
        },
    );
    config
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn requests_per_minute_are_limited_per_key_with_headers(db: TestDb) {
    let (app, _model) = spawn_app_with_model_and(db, plan(Some(3), None)).await;
    let (_, other_key) = app.create_key(&["agents:read"]).await; // 1st request of the admin key
    for remaining in [1, 0] {
        let response = app.get("/agents").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            header(&response, "ratelimit-remaining"),
            Some(remaining.to_string())
        );
        let reset: u64 = header(&response, "ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
    }
    // Native face: problem+json with Retry-After.
    let refused = app.get("/agents").send().await.unwrap();
    let retry: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        header(&refused, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    let body = assert_problem(refused, 429, "rate_limited").await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("3 requests per minute"));
    // The OpenAI face: OpenAI's error shape.
    let refused = app.get("/v1/models").send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(header(&refused, "retry-after").is_some());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    // Another key has its own window; public routes are not counted.
    let response = app
        .request(Method::GET, "/agents", &other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "ratelimit-remaining").as_deref(),
        Some("2")
    );
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(header(&health, "ratelimit-limit").is_none());
}

async fn monthly_tokens_cover_runs_and_gateway_calls(db: TestDb) {
    let (app, model) = spawn_app_with_model_and(db, plan(None, Some(20))).await;
    let agent = app
        .create_agent_id(&json!({"name": "counter", "model": "scripted/gpt"}))
        .await;
    model.push(Reply::text("one").usage(8, 4));
    let run = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[("message", "hi"), ("stream", "false")],
        )
        .await;
    assert_eq!(run.status(), 200);
    model.push(Reply::text("two").usage(6, 3));
    let call = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "scripted/gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    // 21 of 20 tokens used: both faces refuse, each in its own shape, and the model is not called.
    let calls_before = model.requests().len();
    let refused = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "scripted/gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(body["error"]["param"], "monthly_tokens");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("21 of 20"),
        "{body}"
    );
    let refused = app
        .post_form(&format!("/agents/{agent}/runs"), &[("message", "hi")])
        .await;
    let problem = assert_problem(refused, 429, "quota_exceeded").await;
    assert_eq!(problem["field"], "monthly_tokens");
    assert_eq!(model.requests().len(), calls_before);
    let usage = app.get_json("/account/usage").await;
    assert_eq!(usage["plan"]["monthly_tokens"], 20);
    assert_eq!(usage["total_tokens"], 21);
}

async fn account_usage_attributes_runs_and_calls_to_keys_agents_and_models(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = app
        .create_agent_id(&json!({"name": "worker", "model": "scripted/agent-model"}))
        .await;
    let (key_id, key) = app.create_key(&["agents:run", "models:run"]).await;
    model.push(Reply::text("from a run").usage(10, 5));
    let run = app
        .request(Method::POST, &format!("/agents/{agent}/runs"), &key)
        .form(&[("message", "hi"), ("stream", "false")])
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 200);
    model.push(Reply::text("direct").usage(3, 2));
    let call = app
        .request(Method::POST, "/v1/completions", &key)
        .json(&json!({"model": "scripted/direct", "prompt": "say it"}))
        .send()
        .await
        .unwrap();
    let call: Value = call.json().await.unwrap();
    assert_eq!(call["object"], "text_completion");
    assert_eq!(call["choices"][0]["text"], "direct");
    assert_eq!(call["usage"]["total_tokens"], 5);

    let usage = app.get_json("/account/usage").await;
    assert_eq!(usage["requests"], 2);
    assert_eq!(usage["prompt_tokens"], 13);
    assert_eq!(usage["completion_tokens"], 7);
    assert_eq!(usage["total_tokens"], 20);
    assert_eq!(usage["plan"]["name"], "default");
    assert_eq!(usage["plan"]["requests_per_minute"], Value::Null);
    assert_eq!(
        usage["by_key"],
        json!([{"id": key_id, "requests": 2, "prompt_tokens": 13, "completion_tokens": 7, "total_tokens": 20}])
    );
    assert_eq!(
        usage["by_agent"],
        json!([{"id": agent, "requests": 1, "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}])
    );
    let models: Vec<&str> = usage["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["scripted/agent-model", "scripted/direct"]);
    // A period without anything, and a bad one.
    let empty = app
        .get_json("/account/usage?start=2020-01-01T00:00:00Z&end=2020-02-01T00:00:00Z")
        .await;
    assert_eq!(empty["requests"], 0);
    assert_eq!(empty["by_key"], json!([]));
    let bad = app
        .get("/account/usage?start=2020-02-01T00:00:00Z&end=2020-01-01T00:00:00Z")
        .send()
        .await
        .unwrap();
    assert_problem(bad, 422, "invalid_field").await;
    // Another tenant sees none of it.
    let other = app.create_tenant("elsewhere").await;
    let theirs: Value = app
        .request(Method::GET, "/account/usage", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["requests"], 0);
    // The scope is usage:read.
    let response = app
        .request(Method::GET, "/account/usage", &key)
        .send()
        .await
        .unwrap();
    assert_problem(response, 403, "missing_scope").await;
}

async fn ndjson(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn ollama_style_routes_generate_chat_and_embed(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    // generate streams NDJSON by default, ending with the counts.
    model.push(Reply::text("Hello there").usage(4, 2));
    let lines = ndjson(
        app.post_json(
            "/v1/llm/generate",
            &json!({"model": "scripted/llama", "prompt": "greet", "system": "be kind",
                    "options": {"temperature": 0.5, "num_predict": 20}}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let text: String = lines
        .iter()
        .map(|l| l["response"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello there");
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], 4);
    assert_eq!(last["eval_count"], 2);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    let sent = model.requests().last().unwrap().body.clone();
    assert_eq!(sent["model"], "llama");
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["max_tokens"], 20);
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "be kind"})
    );

    // chat without streaming: one object, with tool calls as Ollama writes them.
    model.push(Reply::tool_call("c1", "lookup", r#"{"q":"x"}"#).usage(5, 1));
    let answer: Value = app
        .post_json(
            "/v1/llm/chat",
            &json!({"model": "scripted/llama", "stream": false,
                    "messages": [{"role": "user", "content": "find x"}],
                    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["done"], true);
    assert_eq!(answer["message"]["role"], "assistant");
    assert_eq!(
        answer["message"]["tool_calls"],
        json!([{"function": {"name": "lookup", "arguments": {"q": "x"}}}])
    );

    // embed.
    let embedded: Value = app
        .post_json(
            "/v1/llm/embed",
            &json!({"model": "scripted/embedder", "input": ["a b", "c"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(embedded["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(embedded["prompt_eval_count"], 3);

    // Errors are Ollama's `{"error": "…"}`.
    let unknown = app
        .post_json(
            "/v1/llm/generate",
            &json!({"model": "nowhere/x", "prompt": "hi"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("nowhere/x"),
        "{body}"
    );
    let usage = app.get_json("/account/usage").await;
    assert_eq!(usage["requests"], 3);
    assert_eq!(usage["total_tokens"], 6 + 6 + 3);
}

async fn openai_face_errors_are_openai_shaped(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let missing = app.client.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let bad = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "scripted/x", "messages": "no"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["param"], "messages");

    let hot = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "scripted/x", "temperature": 3, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(hot.status(), 400);
    let body: Value = hot.json().await.unwrap();
    assert_eq!(body["error"]["param"], "temperature");

    model.push(Reply::status(400, "no such model upstream"));
    let rejected = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "scripted/x", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 502);
    let body: Value = rejected.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");

    let no_route = app.get("/v1/nothing").send().await.unwrap();
    assert_eq!(no_route.status(), 404);
    let body: Value = no_route.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_not_found");
}

async fn agentos_models_lists_what_agents_use(db: TestDb) {
    let (app, _model) = spawn_app_with_model(db).await;
    for (name, model) in [
        ("a", "scripted/gpt"),
        ("b", "scripted/gpt"),
        ("c", "other/llama"),
    ] {
        app.create_agent(&json!({"name": name, "model": model}))
            .await;
    }
    let models = app.get_json("/models").await;
    assert_eq!(
        models,
        json!([{"id": "gpt", "provider": "scripted"}, {"id": "llama", "provider": "other"}])
    );
}

async fn concurrent_runs_are_limited_per_principal(db: TestDb) {
    let mut config = plan(None, None);
    config.plans.get_mut("default").unwrap().concurrent_runs = Some(1);
    let (app, model) = spawn_app_with_model_and(db, config).await;
    let agent = app
        .create_agent_id(&json!({"name": "busy", "model": "scripted/m"}))
        .await;
    let start = |key: String| {
        let app = &app;
        let path = format!("/agents/{agent}/runs");
        async move {
            app.request(Method::POST, &path, &key)
                .form(&[
                    ("message", "hi"),
                    ("stream", "false"),
                    ("background", "true"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    model.push(Reply::hang());
    let first = start(app.admin_key.clone()).await;
    assert!(first.status().is_success(), "{}", first.status());
    let first: Value = first.json().await.unwrap();
    let run_id = first["run_id"].as_str().unwrap().to_owned();

    let refused = start(app.admin_key.clone()).await;
    assert!(header(&refused, "retry-after").is_some());
    let body = assert_problem(refused, 429, "rate_limited").await;
    assert!(
        body["detail"].as_str().unwrap().contains("1 runs at once"),
        "{body}"
    );

    // Another principal has places of its own.
    let (_, other) = app.create_key(&["agents:run", "agents:read"]).await;
    model.push(Reply::text("done"));
    let other_run = start(other).await;
    assert!(other_run.status().is_success(), "{}", other_run.status());

    // When the first run ends, its place is free again.
    let cancelled = app
        .request(
            Method::POST,
            &format!("/agents/{agent}/runs/{run_id}/cancel"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert!(cancelled.status().is_success(), "{}", cancelled.status());
    model.push(Reply::text("again"));
    let mut status = 0;
    for _ in 0..50 {
        let response = start(app.admin_key.clone()).await;
        status = response.status().as_u16();
        if status != 429 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!((200..300).contains(&status), "{status}");
}

backend_tests!(
    concurrent_runs_are_limited_per_principal,
    requests_per_minute_are_limited_per_key_with_headers,
    monthly_tokens_cover_runs_and_gateway_calls,
    account_usage_attributes_runs_and_calls_to_keys_agents_and_models,
    ollama_style_routes_generate_chat_and_embed,
    openai_face_errors_are_openai_shaped,
    agentos_models_lists_what_agents_use,
);
