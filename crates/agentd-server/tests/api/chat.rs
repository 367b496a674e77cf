//! The Open Agent API's face of runs: `POST /agents/{id}/chat`, as JSON and as SSE, over the scripted
//! model: answers, server tools, client-side tool requests continued with tool messages, confirmations,
//! provider failures and limits.

use std::time::Duration;

use agentd_testkit::sse::{names, parse, snapshot, trim_lines, SseFrame};
use agentd_testkit::{backend_tests, spawn_app_with_model, Reply, TestApp, TestDb};
use serde_json::{json, Value};

use crate::assert_problem;

async fn agent(app: &TestApp, tools: Value) -> String {
    app.create_agent_id(&json!({
        "name": "chatter",
        "prompt": "Be brief.",
        "model": "scripted/gpt-test",
        "tools": tools,
    }))
    .await
}

async fn chat_stream(app: &TestApp, agent: &str, body: &Value) -> Vec<SseFrame> {
    let response = app
        .post_json(&format!("/agents/{agent}/chat"), body)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    parse(&response.text().await.unwrap())
}

async fn chat_json(app: &TestApp, agent: &str, body: &Value) -> Value {
    let response = app
        .post_json(&format!("/agents/{agent}/chat"), body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn plain_answer_as_json_and_stream(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::text("Hi you").usage(9, 2));
    let answer = chat_json(
        &app,
        &agent,
        &json!({"messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(
        answer["message"],
        json!({"role": "assistant", "content": "Hi you"})
    );
    assert_eq!(answer["finish_reason"], "stop");
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})
    );
    assert!(answer["run_id"].is_string() && answer["session_id"].is_string());
    let sent = &model.requests()[0].body["messages"];
    assert_eq!(sent[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(sent[1], json!({"role": "user", "content": "hello"}));

    model.push(Reply::text("Hi you").usage(9, 2));
    let frames = chat_stream(
        &app,
        &agent,
        &json!({"messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    let expected = trim_lines(
        r#"
        1 RunStarted {"agent_id":"[..]","model":"gpt-test","run_id":"[..]","session_id":"[..]","type":"RunStarted"}
        2 RunResponse {"event":"ModelRequestStarted","model":"gpt-test","model_provider":"OpenAI","run_id":"[..]","type":"RunResponse"}
        3 RunResponse {"content":"Hi","run_id":"[..]","type":"RunResponse"}
        4 RunResponse {"content":" you","run_id":"[..]","type":"RunResponse"}
        5 RunResponse {"event":"ModelRequestCompleted","input_tokens":9,"model":"gpt-test","model_provider":"OpenAI","output_tokens":2,"run_id":"[..]","time_to_first_token":"[..]","total_tokens":11,"type":"RunResponse"}
        6 RunCompleted {"finish_reason":"stop","message":{"content":"Hi you","role":"assistant"},"run_id":"[..]","session_id":"[..]","type":"RunCompleted","usage":{"completion_tokens":2,"prompt_tokens":9,"total_tokens":11}}
    "#,
    );
    assert_eq!(snapshot(&frames), expected);
}

async fn server_tools_run_inside_the_chat(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(
        &app,
        json!([{"name": "current_time"}, {"name": "http_fetch"}]),
    )
    .await;
    model.push(Reply::tool_calls(&[
        ("t1", "current_time", "{}"),
        ("t2", "current_time", r#"{"utc_offset_minutes": 60}"#),
    ]));
    model.push(Reply::text("Done"));
    let frames = chat_stream(
        &app,
        &agent,
        &json!({"messages": [{"role": "user", "content": "time"}]}),
    )
    .await;
    assert_eq!(
        names(&frames),
        [
            "1 RunStarted",
            "2 RunResponse/ModelRequestStarted",
            "3 RunResponse/ModelRequestCompleted",
            "4 RunResponse/ToolCallStarted",
            "5 RunResponse/ToolCallStarted",
            "6 RunResponse/ToolCallCompleted",
            "7 RunResponse/ToolCallCompleted",
            "8 RunResponse/ModelRequestStarted",
            "9 RunResponse",
            "10 RunResponse/ModelRequestCompleted",
            "11 RunCompleted"
        ]
    );
    assert!(frames[6].data["tool"]["result"]
        .as_str()
        .unwrap()
        .ends_with("+01:00"));
}

async fn tool_request_then_tool_message_continues(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::tool_call("call_9", "lookup", r#"{"q":"rust"}"#));
    let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "Search", "parameters": {"type": "object"}}}]);
    let first = json!({"messages": [{"role": "user", "content": "find rust"}], "tools": tools});
    let frames = chat_stream(&app, &agent, &first).await;
    assert_eq!(
        names(&frames),
        [
            "1 RunStarted",
            "2 RunResponse/ModelRequestStarted",
            "3 RunResponse/ModelRequestCompleted",
            "4 ToolRequest"
        ]
    );
    let request = &frames[3].data;
    assert_eq!(request["tool"], "lookup");
    assert_eq!(request["input"], json!({"q": "rust"}));
    assert_eq!(request["tool_call_id"], "call_9");
    let session = request["session_id"].as_str().unwrap().to_owned();
    let run_id = request["run_id"].as_str().unwrap().to_owned();
    // The model was offered the request's tool.
    assert_eq!(
        model.requests()[0].body["tools"][0]["function"]["name"],
        "lookup"
    );

    model.push(Reply::text("Rust is a language"));
    let second = json!({
        "session_id": session,
        "messages": [
            {"role": "user", "content": "find rust"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"rust\"}"}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "rust-lang.org"}
        ],
        "tools": tools,
    });
    let answer = chat_json(&app, &agent, &second).await;
    assert_eq!(answer["run_id"], run_id, "the paused run continues");
    assert_eq!(answer["message"]["content"], "Rust is a language");
    assert_eq!(answer["finish_reason"], "stop");
    let sent = &model.requests()[1].body["messages"];
    let tool_message = sent
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    assert_eq!(tool_message["content"], "rust-lang.org");
    let run: Value = app
        .get_json(&format!("/agents/{agent}/runs/{run_id}"))
        .await;
    assert_eq!(run["status"], "COMPLETED");
}

async fn confirmation_rejected_through_a_tool_message(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(
        &app,
        json!([{"name": "http_fetch", "requires_confirmation": true}]),
    )
    .await;
    model.push(Reply::tool_call(
        "c1",
        "http_fetch",
        r#"{"url":"http://example.invalid/"}"#,
    ));
    let answer = chat_json(
        &app,
        &agent,
        &json!({"messages": [{"role": "user", "content": "fetch"}]}),
    )
    .await;
    assert_eq!(answer["finish_reason"], "tool_calls");
    assert_eq!(
        answer["message"]["tool_calls"][0]["function"]["name"],
        "http_fetch"
    );
    let run_id = answer["run_id"].as_str().unwrap();
    // An unreadable decision is named.
    let unclear = json!({
        "run_id": run_id,
        "messages": [{"role": "tool", "tool_call_id": "c1", "content": "perhaps"}]
    });
    let response = app
        .post_json(&format!("/agents/{agent}/chat"), &unclear)
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "invalid_field").await;

    model.push(Reply::text("Understood"));
    let reject = json!({
        "run_id": run_id,
        "messages": [{"role": "tool", "tool_call_id": "c1", "content": "{\"confirmed\": false, \"note\": \"no network\"}"}]
    });
    let frames = chat_stream(&app, &agent, &reject).await;
    assert_eq!(
        names(&frames),
        [
            "5 RunResponse/RunContinued",
            "6 RunResponse/ToolCallStarted",
            "7 RunResponse/ToolCallError",
            "8 RunResponse/ModelRequestStarted",
            "9 RunResponse",
            "10 RunResponse/ModelRequestCompleted",
            "11 RunCompleted"
        ]
    );
    assert_eq!(
        frames[2].data["error"],
        "the user rejected this tool call: no network"
    );
    assert_eq!(
        model.requests().len(),
        2,
        "the tool never ran: nothing was fetched"
    );
}

async fn failures_and_limits_end_the_chat(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([{"name": "current_time"}])).await;
    model.push(Reply::status(401, "bad key"));
    let frames = chat_stream(
        &app,
        &agent,
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    let last = &frames.last().unwrap().data;
    assert_eq!(last["type"], "RunError");
    assert_eq!(last["error"]["type"], "provider_unauthorized");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad key"),
        "{last}"
    );

    model.push(Reply::tool_call("a", "current_time", "{}"));
    let answer = chat_json(
        &app,
        &agent,
        &json!({"messages": [{"role": "user", "content": "x"}], "max_iterations": 1}),
    )
    .await;
    assert_eq!(answer["finish_reason"], "error");
    assert!(answer["error"].as_str().unwrap().contains("max_iterations"));

    // A failure mid-stream ends the chat stream with one RunError.
    model.push(Reply::text("half an answer").error_after(1, "stream broke"));
    let frames = chat_stream(
        &app,
        &agent,
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(frames[2].data["content"], "half");
    let last = &frames.last().unwrap().data;
    assert_eq!(last["type"], "RunError");
    assert_eq!(last["error"]["type"], "provider_malformed_response");

    // A cancel mid-stream ends the chat stream with RunCancelled.
    model.push(Reply::text("slow ".repeat(100).as_str()).token_delay(Duration::from_millis(40)));
    let mut response = app
        .post_json(
            &format!("/agents/{agent}/chat"),
            &json!({"messages": [{"role": "user", "content": "x"}], "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    while parse(&body).len() < 3 {
        body.push_str(&String::from_utf8_lossy(
            &response.chunk().await.unwrap().unwrap(),
        ));
    }
    let run_id = parse(&body)[0].data["run_id"].as_str().unwrap().to_owned();
    app.post_json(&format!("/agents/{agent}/runs/{run_id}/cancel"), &json!({}))
        .send()
        .await
        .unwrap();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let frames = parse(&body);
    let last = &frames.last().unwrap().data;
    assert_eq!(last["type"], "RunCancelled");
    assert!(last["content"].as_str().unwrap().starts_with("slow"));
    let terminal = frames
        .iter()
        .filter(|f| {
            matches!(
                f.data["type"].as_str(),
                Some("RunCompleted" | "RunError" | "RunCancelled")
            )
        })
        .count();
    assert_eq!(terminal, 1);

    let bad = app
        .post_json(
            &format!("/agents/{agent}/chat"),
            &json!({"messages": [{"role": "robot", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 422, "invalid_field").await;
    assert_eq!(problem["field"], "messages[0].role");
    let bad = app
        .post_json(
            &format!("/agents/{agent}/chat"),
            &json!({"messages": [{"role": "tool", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 422, "invalid_field").await;
    assert_eq!(problem["field"], "messages[0].tool_call_id");
    let bad = app
        .post_json(&format!("/agents/{agent}/chat"), &json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 422, "invalid_field").await;
}

backend_tests!(
    plain_answer_as_json_and_stream,
    server_tools_run_inside_the_chat,
    tool_request_then_tool_message_continues,
    confirmation_rejected_through_a_tool_message,
    failures_and_limits_end_the_chat,
);
