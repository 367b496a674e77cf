//! The official OpenAI Python SDK (pinned, [`python::OPENAI_SDK`]) against the OpenAI-compatible face:
//! `tests/python/openai_sdk.py` runs scenarios with the SDK and reports what it saw as JSON; these tests
//! queue the scripted model's replies, run it, and check its report, what the model received, and
//! `GET /account/usage`. Covered: the model list, chat completions plain and streamed (assembled by the
//! SDK's stream helper), a client tool round trip, embeddings as base64 and floats, an agent addressed
//! as `agent/<id>` (a text answer, and a client tool that pauses the run until the result comes back in
//! the same session), every error the SDK must raise as its own exception type, and the plan's limits.
//!
//! Without Python, its `venv` module or the package index the tests are skipped with a note, except
//! under `CI=true` (see [`python::venv`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentd_models::{ProviderConfig, ProviderKind};
use agentd_runtime::config::PlanConfig;
use agentd_runtime::Config;
use agentd_testkit::model_server::scripted_embedding;
use agentd_testkit::{
    backend_tests, python, spawn_app_with, Reply, ScriptedModel, TestApp, TestDb,
};
use serde_json::{json, Value};

/// The model the gateway lists and the agent uses.
const MODEL: &str = "scripted/gpt-test";
/// A provider nobody listens for.
const DOWN_MODEL: &str = "down/gpt-test";
/// An agent that does not exist, addressed as a model.
const UNKNOWN_AGENT: &str = "agent/0190b9a5-8a59-7000-8000-000000000000";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_sdk.py")
}

fn provider(base_url: String, models: &[&str], max_retries: u32) -> ProviderConfig {
    ProviderConfig {
        kind: ProviderKind::Openai,
        base_url,
        api_key_env: None,
        path: None,
        connect_timeout_secs: 2,
        read_timeout_secs: 5,
        max_retries,
        models: models.iter().map(|m| (*m).to_owned()).collect(),
    }
}

/// A server whose provider `scripted` lists `gpt-test` and whose provider `down` points at a closed
/// port, on `plan` (the default plan's limits).
async fn spawn(db: TestDb, plan: PlanConfig) -> (TestApp, ScriptedModel) {
    let model = ScriptedModel::start().await;
    let mut config = Config::default();
    config.providers.insert(
        "scripted".to_owned(),
        provider(format!("{}/v1", model.url()), &["gpt-test"], 1),
    );
    // Port 1 is privileged and unused: connections are refused at once.
    config.providers.insert(
        "down".to_owned(),
        provider("http://127.0.0.1:1/v1".to_owned(), &[], 0),
    );
    config.plans.insert("default".to_owned(), plan);
    (spawn_app_with(db, config).await, model)
}

/// Runs the script's `scenarios` against `app` with `key` and `params`; returns its report.
async fn run_sdk(
    python: &Path,
    app: &TestApp,
    key: &str,
    params: &Value,
    scenarios: &[&str],
) -> Value {
    python::run_script(python, &script(), &app.url("/v1"), key, params, scenarios).await
}

/// Requests and tokens, as `/account/usage` shows them.
fn figures(requests: u64, prompt: u64, completion: u64) -> Value {
    json!({
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// The usages the SDK returned in `scenarios`, added up as `/account/usage` counts them: one request
/// per usage.
fn sdk_usage(report: &Value, scenarios: &[&str]) -> Value {
    let mut requests = 0;
    let (mut prompt, mut completion) = (0, 0);
    for usage in report["usages"].as_array().expect("usages") {
        if !scenarios.contains(&usage["scenario"].as_str().unwrap()) {
            continue;
        }
        let number = |name: &str| usage[name].as_u64().unwrap();
        assert_eq!(
            number("total_tokens"),
            number("prompt_tokens") + number("completion_tokens"),
            "{usage}"
        );
        requests += 1;
        prompt += number("prompt_tokens");
        completion += number("completion_tokens");
    }
    figures(requests, prompt, completion)
}

/// The figures of `entries` (`by_key`, `by_agent`, `by_model`) for `id`.
fn entry(entries: &Value, id: &str) -> Value {
    let found = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["id"] == id)
        .unwrap_or_else(|| panic!("no usage for {id} in {entries}"));
    let mut figures = found.clone();
    figures.as_object_mut().unwrap().remove("id");
    figures
}

fn totals(usage: &Value) -> Value {
    json!({
        "requests": usage["requests"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
    })
}

fn chat_requests(model: &ScriptedModel) -> Vec<Value> {
    model
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/chat/completions")
        .map(|request| request.body)
        .collect()
}

const WEATHER_PARAMETERS: &str =
    r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"#;

async fn sdk_uses_models_agents_and_sees_its_usage(db: TestDb) {
    let Some(python) = python::venv(&[python::OPENAI_SDK]) else {
        return;
    };
    let (app, model) = spawn(db, PlanConfig::default()).await;
    let parameters: Value = serde_json::from_str(WEATHER_PARAMETERS).unwrap();
    let agent = app
        .create_agent_id(&json!({
            "name": "helper",
            "model": MODEL,
            "instructions": "Answer briefly.",
            "tools": [{"name": "get_weather", "client_side": true, "parameters": parameters}],
        }))
        .await;
    // Running the agent as a model takes its run scope besides `models:run`.
    let run_agent = format!("agents:{agent}:run");
    let (user_key_id, user_key) = app
        .create_key(&["models:read", "models:run", &run_agent])
        .await;
    // The errors run with a key of their own, so the user key's usage is exactly what the SDK saw.
    let (failing_key_id, failing_key) = app
        .create_key(&["models:read", "models:run", "agents:run"])
        .await;

    // The model's replies, in the order the scenarios ask for them (embeddings take none).
    model.push(Reply::text("Hello there").usage(12, 3)); // chat
    model.push(Reply::text("Once upon a time").usage(7, 4)); // stream
    model.push(Reply::tool_call("call_1", "get_weather", r#"{"city":"Oslo"}"#).usage(20, 5));
    model.push(Reply::text("It is 12 degrees in Oslo").usage(30, 6));
    model.push(Reply::text("Hi").usage(4, 1)); // completion
    model.push(Reply::text("One two three").usage(2, 3));
    model.push(Reply::text("Hi, I am the helper").usage(9, 5)); // agent_text
    model.push(Reply::tool_call("call_w", "get_weather", r#"{"city":"Oslo"}"#).usage(11, 2));
    model.push(Reply::text("Sunny in Oslo").usage(15, 3));
    // provider_down: the first try and its one retry; then the broken stream.
    model.push(Reply::status(503, "upstream overloaded"));
    model.push(Reply::status(503, "upstream overloaded"));
    model.push(Reply::text("one two three").error_after(1, "the model fell over"));

    let texts = ["the quick brown fox", "lazy dogs sleep"];
    let answered = [
        "models",
        "chat",
        "stream",
        "tool_round_trip",
        "completion",
        "embeddings",
        "agent_text",
        "agent_tool",
    ];
    let failing = [
        "unknown_model",
        "bad_key",
        "bad_input",
        "provider_down",
        "mid_stream_error",
    ];
    let params = json!({
        "model": MODEL,
        "agent": agent,
        "listed": [MODEL, format!("agent/{agent}")],
        "tool_result": "12 degrees",
        "texts": texts,
        "unknown_models": ["nobody/gpt-test", UNKNOWN_AGENT],
        "failing_models": [MODEL, DOWN_MODEL],
        "keys": failing.iter().map(|name| (*name, failing_key.as_str())).collect::<BTreeMap<_, _>>(),
    });
    let scenarios: Vec<&str> = answered.iter().chain(&failing).copied().collect();
    let report = run_sdk(&python, &app, &user_key, &params, &scenarios).await;
    assert_eq!(report["sdk_version"], "3.54.0");
    assert_eq!(model.pending(), 0, "every scripted reply was asked for");
    let sent = chat_requests(&model);
    check_model_answers(&report, &sent, &parameters, &texts);
    check_agent_answers(&app, &report, &sent, &agent).await;
    check_errors(&report);

    // Usage: what the SDK was told, per key and in total. The failing key's only metered call is
    // the stream that broke (no tokens); it is metered when the stream is dropped, so it is waited for.
    let expected_user = sdk_usage(&report, &answered);
    let expected_failing = figures(1, 0, 0);
    let usage = wait_for_usage(&app, 2).await;
    assert_eq!(
        entry(&usage["by_key"], &user_key_id),
        expected_user,
        "{usage}"
    );
    assert_eq!(
        entry(&usage["by_key"], &failing_key_id),
        expected_failing,
        "{usage}"
    );
    assert_eq!(usage["by_key"].as_array().unwrap().len(), 2, "{usage}");
    let sum = |name: &str| {
        expected_user[name].as_u64().unwrap() + expected_failing[name].as_u64().unwrap()
    };
    assert_eq!(
        totals(&usage),
        figures(
            sum("requests"),
            sum("prompt_tokens"),
            sum("completion_tokens")
        ),
        "{usage}"
    );
    assert_eq!(
        entry(&usage["by_agent"], &agent),
        sdk_usage(&report, &["agent_text", "agent_tool"]),
        "{usage}"
    );
    assert_eq!(
        usage["plan"],
        json!({"name": "default", "requests_per_minute": null, "monthly_tokens": null})
    );

    // Last, as it fails today: an agent id that names no agent is an unknown model like any other
    // (OpenAI's `model_not_found` on `param: model`), not the native API's bare `not_found`.
    let unknown_agent = &report["unknown_model"][UNKNOWN_AGENT];
    assert_eq!(unknown_agent["status"], 404, "{unknown_agent}");
    assert_eq!(unknown_agent["code"], "model_not_found", "{unknown_agent}");
    assert_eq!(unknown_agent["param"], "model", "{unknown_agent}");
}

/// Provider models through the SDK: the list, chat (plain, streamed, with the client's tool), text
/// completions and embeddings; `sent` holds the chat requests the model received.
fn check_model_answers(report: &Value, sent: &[Value], parameters: &Value, texts: &[&str]) {
    // The model list: the configured model and the agent, by name.
    let models = &report["models"];
    assert_eq!(models["agent_name"], "helper");
    assert!(
        !models["ids"]
            .as_array()
            .unwrap()
            .contains(&json!(DOWN_MODEL)),
        "a provider lists only its configured models: {models}"
    );

    let chat = &report["chat"];
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["role"], "assistant");
    assert_eq!(chat["content"], "Hello there");
    assert_eq!(chat["finish_reason"], "stop");
    assert_eq!(
        chat["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    );

    // Streamed: assembled by the SDK with nothing doubled.
    let stream = &report["stream"];
    assert_eq!(stream["role"], "assistant");
    assert_eq!(stream["content"], "Once upon a time");
    // The role rides on the first content delta, as OpenAI sends it.
    assert_eq!(stream["deltas"], json!(["Once", " upon", " a", " time"]));
    assert_eq!(stream["finish_reason"], "stop");
    assert_eq!(stream["tool_calls"], json!([]));
    assert_eq!(stream["usage"]["total_tokens"], 11);

    // The client's tool: offered to the model, its call assembled whole, its result sent back.
    let round_trip = &report["tool_round_trip"];
    assert_eq!(round_trip["role"], "assistant");
    assert_eq!(
        round_trip["tool_calls"],
        json!([{"id": "call_1", "type": "function", "name": "get_weather", "arguments": r#"{"city":"Oslo"}"#}])
    );
    assert_eq!(round_trip["finish_reason"], "tool_calls");
    // A tool-call-only answer has no content: the first delta carries the role with `content: null`.
    assert!(round_trip["content"].is_null(), "{round_trip}");
    assert_eq!(round_trip["answer"], "It is 12 degrees in Oslo");
    assert_eq!(round_trip["answer_finish_reason"], "stop");
    assert_eq!(sent[2]["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent[2]["tools"][0]["function"]["parameters"], *parameters);
    let messages = sent[3]["messages"].as_array().unwrap();
    let assistant = messages.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(assistant["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        assistant["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], "call_1");
    assert_eq!(tool["content"], "12 degrees");

    // The legacy text completions.
    let completion = &report["completion"];
    assert_eq!(completion["object"], "text_completion");
    assert_eq!(completion["text"], "Hi");
    assert_eq!(completion["finish_reason"], "stop");
    assert_eq!(completion["streamed_text"], "One two three");
    assert_eq!(completion["streamed_usage"]["total_tokens"], 5);
    assert_eq!(
        sent[4]["messages"],
        json!([{"role": "user", "content": "Say hi"}])
    );

    // Embeddings: the same vectors as base64 (the SDK's default) and as floats.
    let embeddings = &report["embeddings"];
    let vectors = embeddings["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), texts.len());
    for (vector, text) in vectors.iter().zip(texts) {
        let got: Vec<f32> = vector
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got, scripted_embedding(text), "the vector of {text:?}");
    }
    assert_eq!(
        embeddings["usage"],
        json!({"prompt_tokens": 7, "total_tokens": 7})
    );
}

/// The agent addressed as `agent/<id>`: a streamed answer, and a client tool that pauses the run
/// until its result comes back in the same session.
async fn check_agent_answers(app: &TestApp, report: &Value, sent: &[Value], agent: &str) {
    // The agent as a model: its instructions, a streamed answer.
    let agent_text = &report["agent_text"];
    assert_eq!(agent_text["model"], format!("agent/{agent}"));
    assert_eq!(agent_text["role"], "assistant");
    assert_eq!(agent_text["content"], "Hi, I am the helper");
    assert_eq!(agent_text["finish_reason"], "stop");
    assert_eq!(agent_text["usage"]["total_tokens"], 14);
    assert_eq!(
        sent[6]["messages"][0],
        json!({"role": "system", "content": "Answer briefly."})
    );

    // The agent's client tool pauses the run; the result in the same session continues it.
    let agent_tool = &report["agent_tool"];
    let session = agent_tool["session"].as_str().unwrap();
    assert_eq!(agent_tool["continued_session"], session);
    assert_eq!(agent_tool["paused_role"], "assistant");
    assert_eq!(agent_tool["paused_finish_reason"], "tool_calls");
    assert_eq!(
        agent_tool["tool_calls"],
        json!([{"id": "call_w", "type": "function", "name": "get_weather", "arguments": r#"{"city":"Oslo"}"#}])
    );
    assert_eq!(agent_tool["content"], "Sunny in Oslo");
    assert_eq!(agent_tool["finish_reason"], "stop");
    let messages = sent[8]["messages"].as_array().unwrap();
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], "call_w");
    assert_eq!(tool["content"], "12 degrees");
    let sessions = app.get_json(&format!("/sessions/{session}")).await;
    assert_eq!(sessions["agent_id"], agent, "{sessions}");
}

/// Errors: OpenAI's shape, the right status, the SDK's own exception type.
fn check_errors(report: &Value) {
    let unknown = &report["unknown_model"]["nobody/gpt-test"];
    assert_eq!(unknown["status"], 404);
    assert_eq!(unknown["code"], "model_not_found");
    assert_eq!(unknown["param"], "model");
    assert_eq!(unknown["type"], "invalid_request_error");
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("nobody/gpt-test"),
        "{unknown}"
    );
    assert_eq!(
        report["unknown_model"][UNKNOWN_AGENT]["exception"],
        "NotFoundError"
    );
    let bad_key = &report["bad_key"];
    assert_eq!(bad_key["status"], 401);
    assert_eq!(bad_key["code"], "invalid_api_key");
    let bad_input = &report["bad_input"];
    assert_eq!(bad_input["status"], 400);
    assert_eq!(bad_input["param"], "temperature");
    for failing_model in [MODEL, DOWN_MODEL] {
        let down = &report["provider_down"][failing_model];
        assert_eq!(down["status"], 502, "{failing_model}: {down}");
        assert_eq!(down["code"], "provider_failed", "{failing_model}: {down}");
        assert_eq!(down["type"], "server_error", "{failing_model}: {down}");
    }
    let broken = &report["mid_stream_error"];
    assert_eq!(broken["exception"], "APIError");
    assert_eq!(
        broken["status"],
        Value::Null,
        "raised mid-stream, after the 200"
    );
    assert_eq!(broken["content_before"], "one");
    assert!(
        broken["message"]
            .as_str()
            .unwrap()
            .contains("the model fell over"),
        "{broken}"
    );
}

/// `/account/usage` once `by_key` has `keys` entries (a call broken off is metered a moment later).
async fn wait_for_usage(app: &TestApp, keys: usize) -> Value {
    let mut usage = Value::Null;
    for _ in 0..50 {
        usage = app.get_json("/account/usage").await;
        if usage["by_key"]
            .as_array()
            .is_some_and(|by_key| by_key.len() >= keys)
        {
            return usage;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    usage
}

async fn sdk_sees_rate_and_token_limits(db: TestDb) {
    let Some(python) = python::venv(&[python::OPENAI_SDK]) else {
        return;
    };
    let plan = PlanConfig {
        requests_per_minute: Some(3),
        monthly_tokens: Some(10),
        concurrent_runs: None,
    };
    let (app, model) = spawn(db, plan).await;
    // Rates are counted per key: each scenario has its own, and the admin key makes three requests.
    let (_, rate_key) = app.create_key(&["models:read"]).await;
    let (quota_key_id, quota_key) = app.create_key(&["models:run"]).await;
    model.push(Reply::text("Twelve tokens").usage(8, 4));
    let params = json!({
        "model": MODEL,
        "requests_per_minute": 3,
        "keys": {"rate_limit": rate_key, "monthly_tokens": quota_key},
    });
    let report = run_sdk(
        &python,
        &app,
        &rate_key,
        &params,
        &["rate_limit", "monthly_tokens"],
    )
    .await;

    let rate = &report["rate_limit"];
    assert_eq!(rate["allowed"], 3);
    assert_eq!(rate["status"], 429);
    assert_eq!(rate["code"], "rate_limit_exceeded");
    let retry_after: u64 = rate["retry_after"]
        .as_str()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{rate}");

    let quota = &report["monthly_tokens"];
    assert_eq!(quota["first_total_tokens"], 12);
    assert_eq!(quota["status"], 429);
    assert_eq!(quota["code"], "insufficient_quota");
    assert_eq!(quota["type"], "insufficient_quota");
    assert_eq!(
        chat_requests(&model).len(),
        1,
        "the refused call never reached the model"
    );

    let usage = app.get_json("/account/usage").await;
    assert_eq!(
        usage["plan"],
        json!({"name": "default", "requests_per_minute": 3, "monthly_tokens": 10})
    );
    assert_eq!(
        entry(&usage["by_key"], &quota_key_id),
        sdk_usage(&report, &["monthly_tokens"])
    );
    assert_eq!(totals(&usage), figures(1, 8, 4));
}

backend_tests!(
    sdk_uses_models_agents_and_sees_its_usage,
    sdk_sees_rate_and_token_limits
);
