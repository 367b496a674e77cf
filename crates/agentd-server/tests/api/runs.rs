//! Runs through AgentOS's face (`/agents/{id}/runs`) over the scripted model: complete event streams
//! compared line by line (ids and times redacted), the non-streaming and background answers, continue,
//! cancel, limits and provider failures.

use std::time::Duration;

use agentd_testkit::sse::{parse, read_frames, snapshot};
use agentd_testkit::{backend_tests, spawn_app_with_model, Reply, ScriptedModel, TestApp, TestDb};
use serde_json::{json, Value};

use crate::assert_problem;

async fn agent(app: &TestApp, tools: Value) -> String {
    app.create_agent_id(&json!({
        "name": "helper",
        "instructions": "Be brief.",
        "model": "scripted/gpt-test",
        "tools": tools,
    }))
    .await
}

/// Posts a run as a form and returns the whole SSE body, parsed.
async fn run_stream(app: &TestApp, agent: &str, form: &[(&str, &str)]) -> Vec<agentd_testkit::sse::SseFrame> {
    let response = app
        .request(reqwest::Method::POST, &format!("/agents/{agent}/runs"), &app.admin_key)
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    parse(&response.text().await.unwrap())
}

fn lines(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

async fn plain_answer_streams_agentos_events(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::text("Hello there").usage(12, 2));
    let frames = run_stream(&app, &agent, &[("message", "hi")]).await;
    let expected = lines(r#"
        1 RunStarted {"agent_id":"[..]","agent_name":"helper","created_at":"[..]","event":"RunStarted","event_index":0,"model":"gpt-test","model_provider":"OpenAI","nested_depth":0,"run_id":"[..]","session_id":"[..]"}
        2 ModelRequestStarted {"agent_id":"[..]","agent_name":"helper","created_at":"[..]","event":"ModelRequestStarted","event_index":1,"model":"gpt-test","model_provider":"OpenAI","nested_depth":0,"run_id":"[..]","session_id":"[..]"}
        3 RunContent {"agent_id":"[..]","agent_name":"helper","content":"Hello","content_type":"str","created_at":"[..]","event":"RunContent","event_index":2,"nested_depth":0,"run_id":"[..]","session_id":"[..]"}
        4 RunContent {"agent_id":"[..]","agent_name":"helper","content":" there","content_type":"str","created_at":"[..]","event":"RunContent","event_index":3,"nested_depth":0,"run_id":"[..]","session_id":"[..]"}
        5 ModelRequestCompleted {"agent_id":"[..]","agent_name":"helper","created_at":"[..]","event":"ModelRequestCompleted","event_index":4,"input_tokens":12,"model":"gpt-test","model_provider":"OpenAI","nested_depth":0,"output_tokens":2,"run_id":"[..]","session_id":"[..]","time_to_first_token":"[..]","total_tokens":14}
        6 RunCompleted {"agent_id":"[..]","agent_name":"helper","content":"Hello there","created_at":"[..]","event":"RunCompleted","event_index":5,"metrics":{"duration":"[..]","input_tokens":12,"output_tokens":2,"time_to_first_token":"[..]","total_tokens":14},"nested_depth":0,"run_id":"[..]","session_id":"[..]"}
    "#);
    assert_eq!(snapshot(&frames), expected);
    // The model saw the instructions and the message.
    let sent = &model.requests()[0].body;
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(sent["messages"][1], json!({"role": "user", "content": "hi"}));
    assert_eq!(sent["model"], "gpt-test");
}

backend_tests!(plain_answer_streams_agentos_events);
