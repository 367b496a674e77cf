//! Runs through AgentOS's face (`/agents/{id}/runs`) over the scripted model: complete event streams
//! compared line by line (ids and times redacted), the non-streaming and background answers, continue,
//! cancel, limits and provider failures.

use std::time::Duration;

use agentd_testkit::sse::{names, parse, read_frames, snapshot, trim_lines};
use agentd_testkit::{backend_tests, spawn_app_with_model, Reply, TestApp, TestDb};
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
async fn run_stream(
    app: &TestApp,
    agent: &str,
    form: &[(&str, &str)],
) -> Vec<agentd_testkit::sse::SseFrame> {
    let response = app.post_form(&format!("/agents/{agent}/runs"), form).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    parse(&response.text().await.unwrap())
}

async fn plain_answer_streams_agentos_events(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::text("Hello there").usage(12, 2));
    let frames = run_stream(&app, &agent, &[("message", "hi")]).await;
    let expected = trim_lines(
        r#"
        1 RunStarted {"agent_id":"[..]","agent_name":"helper","created_at":"[..]","event":"RunStarted","event_index":0,"model":"gpt-test","model_provider":"OpenAI","nested_depth":0,"run_id":"[..]","session_id":"[..]"}
        2 ModelRequestStarted {"agent_id":"[..]","agent_name":"helper","created_at":"[..]","event":"ModelRequestStarted","event_index":1,"model":"gpt-test","model_provider":"OpenAI","nested_depth":0,"run_id":"[..]","session_id":"[..]"}
        3 RunContent {"agent_id":"[..]","agent_name":"helper","content":"Hello","content_type":"str","created_at":"[..]","event":"RunContent","event_index":2,"nested_depth":0,"run_id":"[..]","session_id":"[..]"}
        4 RunContent {"agent_id":"[..]","agent_name":"helper","content":" there","content_type":"str","created_at":"[..]","event":"RunContent","event_index":3,"nested_depth":0,"run_id":"[..]","session_id":"[..]"}
        5 ModelRequestCompleted {"agent_id":"[..]","agent_name":"helper","created_at":"[..]","event":"ModelRequestCompleted","event_index":4,"input_tokens":12,"model":"gpt-test","model_provider":"OpenAI","nested_depth":0,"output_tokens":2,"run_id":"[..]","session_id":"[..]","time_to_first_token":"[..]","total_tokens":14}
        6 RunCompleted {"agent_id":"[..]","agent_name":"helper","content":"Hello there","created_at":"[..]","event":"RunCompleted","event_index":5,"metrics":{"duration":"[..]","input_tokens":12,"output_tokens":2,"time_to_first_token":"[..]","total_tokens":14},"nested_depth":0,"run_id":"[..]","session_id":"[..]"}
    "#,
    );
    assert_eq!(snapshot(&frames), expected);
    // The model saw the instructions and the message.
    let sent = &model.requests()[0].body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": "hi"})
    );
    assert_eq!(sent["model"], "gpt-test");
}

/// The chat completion requests the model received (the scripted server also serves `http_fetch`).
fn model_calls(model: &agentd_testkit::ScriptedModel) -> Vec<Value> {
    model
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .map(|r| r.body)
        .collect()
}

fn fetch_tool() -> Value {
    json!([{ "name": "http_fetch" }])
}

async fn tool_call_runs_a_server_tool(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, fetch_tool()).await;
    let page = format!("{}/no-such-page", model.url());
    model.push(Reply::tool_call(
        "call_1",
        "http_fetch",
        &json!({"url": page}).to_string(),
    ));
    model.push(Reply::text("Done"));
    let frames = run_stream(&app, &agent, &[("message", "fetch it")]).await;
    assert_eq!(
        names(&frames),
        [
            "1 RunStarted",
            "2 ModelRequestStarted",
            "3 ModelRequestCompleted",
            "4 ToolCallStarted",
            "5 ToolCallCompleted",
            "6 ModelRequestStarted",
            "7 RunContent",
            "8 ModelRequestCompleted",
            "9 RunCompleted"
        ]
    );
    let completed = &frames[4].data;
    assert_eq!(completed["tool"]["tool_call_id"], "call_1");
    assert_eq!(completed["tool"]["tool_name"], "http_fetch");
    assert_eq!(completed["tool"]["tool_args"]["url"], page);
    assert_eq!(completed["tool"]["tool_call_error"], false);
    assert!(completed["tool"]["result"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 404"));
    assert!(completed["content"]
        .as_str()
        .unwrap()
        .starts_with("http_fetch(url="));
    // The second model call saw the tool result, answering the call by id.
    let calls = model_calls(&model);
    let second = &calls[1]["messages"];
    let messages = second.as_array().unwrap();
    let tool_message = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool_message["tool_call_id"], "call_1");
    assert!(tool_message["content"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 404"));
}

async fn parallel_tool_calls_run_together(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(
        &app,
        json!([{ "name": "http_fetch" }, { "name": "current_time" }]),
    )
    .await;
    let page = format!("{}/a", model.url());
    model.push(Reply::tool_calls(&[
        ("call_a", "http_fetch", &json!({"url": page}).to_string()),
        ("call_b", "current_time", "{}"),
    ]));
    model.push(Reply::text("Both done"));
    let frames = run_stream(&app, &agent, &[("message", "go")]).await;
    assert_eq!(
        names(&frames),
        [
            "1 RunStarted",
            "2 ModelRequestStarted",
            "3 ModelRequestCompleted",
            "4 ToolCallStarted",
            "5 ToolCallStarted",
            "6 ToolCallCompleted",
            "7 ToolCallCompleted",
            "8 ModelRequestStarted",
            "9 RunContent",
            "10 RunContent",
            "11 ModelRequestCompleted",
            "12 RunCompleted"
        ]
    );
    assert_eq!(frames[5].data["tool"]["tool_call_id"], "call_a");
    assert_eq!(frames[6].data["tool"]["tool_call_id"], "call_b");
    let now = frames[6].data["tool"]["result"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(now).is_ok(), "{now}");
    let requests = model_calls(&model);
    let tool_ids: Vec<&str> = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(tool_ids, ["call_a", "call_b"]);
}

async fn client_tool_pauses_and_continue_resumes(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(
        &app,
        json!([{ "name": "get_weather", "client_side": true, "parameters": {"type": "object"} }]),
    )
    .await;
    model.push(Reply::tool_call(
        "call_w",
        "get_weather",
        r#"{"city":"Oslo"}"#,
    ));
    let frames = run_stream(&app, &agent, &[("message", "weather?")]).await;
    assert_eq!(
        names(&frames),
        [
            "1 RunStarted",
            "2 ModelRequestStarted",
            "3 ModelRequestCompleted",
            "4 RunPaused"
        ]
    );
    let paused = &frames[3].data;
    let run_id = paused["run_id"].as_str().unwrap().to_owned();
    let mut tool = paused["tools"][0].clone();
    assert_eq!(tool["tool_name"], "get_weather");
    assert_eq!(tool["tool_args"], json!({"city": "Oslo"}));
    assert_eq!(tool["external_execution_required"], true);
    let run = app
        .get(&format!("/agents/{agent}/runs/{run_id}"))
        .send()
        .await
        .unwrap();
    let run: Value = run.json().await.unwrap();
    assert_eq!(run["status"], "PAUSED");

    // Continuing without the result names what is missing.
    let response = app
        .post_form(
            &format!("/agents/{agent}/runs/{run_id}/continue"),
            &[("tools", "[]")],
        )
        .await;
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "tools");

    tool["result"] = json!("12 degrees, sunny");
    model.push(Reply::text("It is sunny"));
    let response = app
        .post_form(
            &format!("/agents/{agent}/runs/{run_id}/continue"),
            &[("tools", json!([tool]).to_string().as_str())],
        )
        .await;
    assert_eq!(response.status(), 200);
    let frames = parse(&response.text().await.unwrap());
    assert_eq!(
        names(&frames),
        [
            "5 RunContinued",
            "6 ToolCallStarted",
            "7 ToolCallCompleted",
            "8 ModelRequestStarted",
            "9 RunContent",
            "10 RunContent",
            "11 RunContent",
            "12 ModelRequestCompleted",
            "13 RunCompleted"
        ]
    );
    assert_eq!(frames[2].data["tool"]["result"], "12 degrees, sunny");
    assert_eq!(frames[2].data["run_id"], run_id);
    let sent = model.requests()[1].body["messages"].clone();
    let tool_message = sent
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()
        .clone();
    assert_eq!(tool_message["content"], "12 degrees, sunny");

    // A finished run cannot continue.
    let response = app
        .post_form(
            &format!("/agents/{agent}/runs/{run_id}/continue"),
            &[("tools", "[]")],
        )
        .await;
    assert_problem(response, 409, "conflict").await;
}

async fn confirmation_pause_and_reject(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(
        &app,
        json!([{ "name": "current_time", "requires_confirmation": true }]),
    )
    .await;
    model.push(Reply::tool_call("call_t", "current_time", "{}"));
    let frames = run_stream(&app, &agent, &[("message", "time?")]).await;
    let paused = &frames.last().unwrap().data;
    assert_eq!(paused["event"], "RunPaused");
    assert_eq!(
        paused["content"],
        "I have tools to execute, but I need confirmation."
    );
    let mut tool = paused["tools"][0].clone();
    assert_eq!(tool["requires_confirmation"], true);
    let run_id = paused["run_id"].as_str().unwrap().to_owned();
    tool["confirmed"] = json!(false);
    tool["confirmation_note"] = json!("not now");
    model.push(Reply::text("Okay."));
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/agents/{agent}/runs/{run_id}/continue"),
            &app.admin_key,
        )
        .json(&json!({ "tools": [tool] }))
        .send()
        .await
        .unwrap();
    let frames = parse(&response.text().await.unwrap());
    assert_eq!(
        names(&frames),
        [
            "5 RunContinued",
            "6 ToolCallStarted",
            "7 ToolCallError",
            "8 ModelRequestStarted",
            "9 RunContent",
            "10 ModelRequestCompleted",
            "11 RunCompleted"
        ]
    );
    assert_eq!(
        frames[2].data["error"],
        "the user rejected this tool call: not now"
    );
    assert_eq!(frames[2].data["tool"]["confirmed"], false);
    let tool_message = model.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()
        .clone();
    assert_eq!(
        tool_message["content"],
        "Error: the user rejected this tool call: not now"
    );
}

async fn cancel_stops_a_streaming_run_promptly(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    let long = "word ".repeat(200);
    model.push(Reply::text(&long).token_delay(Duration::from_millis(50)));
    let response = app
        .post_form(&format!("/agents/{agent}/runs"), &[("message", "talk")])
        .await;
    let mut response = response;
    let mut body = String::new();
    while parse(&body).len() < 4 {
        let chunk = response.chunk().await.unwrap().unwrap();
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let run_id = parse(&body)[0].data["run_id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let cancelled = app
        .request(
            reqwest::Method::POST,
            &format!("/agents/{agent}/runs/{run_id}/cancel"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(400),
        "the stream ended {waited:?} after the cancel"
    );
    let frames = parse(&body);
    let terminal: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.event.as_deref())
        .filter(|e| matches!(*e, "RunCompleted" | "RunCancelled" | "RunError"))
        .collect();
    assert_eq!(terminal, ["RunCancelled"]);
    let last = &frames.last().unwrap().data;
    assert!(last["content"].as_str().unwrap().starts_with("word word"));
    let run: Value = app
        .get_json(&format!("/agents/{agent}/runs/{run_id}"))
        .await;
    assert_eq!(run["status"], "CANCELLED");
    // Cancelling again leaves it as it is.
    let again = app
        .request(
            reqwest::Method::POST,
            &format!("/agents/{agent}/runs/{run_id}/cancel"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "CANCELLED");
}

async fn provider_failure_mid_stream_ends_with_run_error(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::text("partial answer here").error_after(1, "upstream exploded"));
    let frames = run_stream(&app, &agent, &[("message", "hi")]).await;
    let names = names(&frames);
    assert_eq!(names.first().unwrap(), "1 RunStarted");
    assert!(names.last().unwrap().ends_with("RunError"), "{names:?}");
    let error = &frames.last().unwrap().data;
    assert_eq!(error["error_type"], "provider_malformed_response");
    assert!(
        error["content"]
            .as_str()
            .unwrap()
            .contains("upstream exploded"),
        "{error}"
    );
    let run_id = error["run_id"].as_str().unwrap();
    let run: Value = app
        .get_json(&format!("/agents/{agent}/runs/{run_id}"))
        .await;
    assert_eq!(run["status"], "ERROR");
    assert!(run["error"].as_str().unwrap().contains("upstream exploded"));
}

async fn iteration_limit_ends_the_run(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([{ "name": "current_time" }])).await;
    model.push(Reply::tool_call("c1", "current_time", "{}"));
    model.push(Reply::tool_call("c2", "current_time", "{}"));
    let frames = run_stream(
        &app,
        &agent,
        &[("message", "loop"), ("max_iterations", "2")],
    )
    .await;
    assert_eq!(
        names(&frames),
        [
            "1 RunStarted",
            "2 ModelRequestStarted",
            "3 ModelRequestCompleted",
            "4 ToolCallStarted",
            "5 ToolCallCompleted",
            "6 ModelRequestStarted",
            "7 ModelRequestCompleted",
            "8 ToolCallStarted",
            "9 ToolCallCompleted",
            "10 RunError"
        ]
    );
    assert_eq!(frames[9].data["error_type"], "iteration_limit_reached");
    assert_eq!(model.requests().len(), 2);
}

async fn non_streaming_and_background_runs(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::text("Plain reply").usage(5, 2));
    let response = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[
                ("message", "hi"),
                ("stream", "false"),
                ("session_id", "s1"),
                ("user_id", "u1"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(run["content"], "Plain reply");
    assert_eq!(run["session_id"], "s1");
    assert_eq!(run["user_id"], "u1");
    assert_eq!(run["model"], "gpt-test");
    assert_eq!(run["model_provider"], "scripted");
    assert_eq!(run["metrics"]["total_tokens"], 7);

    // JSON bodies work too; the session's history reaches the model.
    model.push(Reply::text("Second reply"));
    let response = app
        .post_json(
            &format!("/agents/{agent}/runs"),
            &json!({"message": "again", "stream": false, "session_id": "s1"}),
        )
        .send()
        .await
        .unwrap();
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["content"], "Second reply");
    let sent = &model.requests()[1].body["messages"];
    let roles: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(sent[2]["content"], "Plain reply");

    // Background: 202 at once, then the events can be joined.
    model.push(Reply::text("Later"));
    let response = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[
                ("message", "bg"),
                ("stream", "false"),
                ("background", "true"),
            ],
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["status"], "PENDING");
    let run_id = accepted["run_id"].as_str().unwrap();
    let events = app
        .get(&format!("/agents/{agent}/runs/{run_id}/events"))
        .send()
        .await
        .unwrap();
    let frames = parse(&events.text().await.unwrap());
    assert_eq!(
        frames.last().unwrap().event.as_deref(),
        Some("RunCompleted")
    );
    assert_eq!(frames.first().unwrap().id.as_deref(), Some("1"));

    // The runs are listed by session.
    let listed: Value = app
        .get_json(&format!("/agents/{agent}/runs?session_id=s1"))
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
}

async fn bad_run_requests_are_named(db: TestDb) {
    let (app, _model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    let path = format!("/agents/{agent}/runs");
    let response = app.post_form(&path, &[("stream", "false")]).await;
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "message");
    let response = app
        .post_form(&path, &[("message", "x"), ("stream", "maybe")])
        .await;
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "stream");
    let response = app
        .post_form(&path, &[("message", "x"), ("session_id", "bad id!")])
        .await;
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "session_id");
    let response = app
        .post_form(&path, &[("message", "x"), ("tools", "[{\"name\": 5}]")])
        .await;
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "tools[0].name");
    // An agent without a usable model, an unknown agent, a paused agent.
    let no_model = app.create_agent_id(&json!({"name": "nomodel"})).await;
    let response = app
        .post_form(&format!("/agents/{no_model}/runs"), &[("message", "x")])
        .await;
    assert_problem(response, 409, "conflict").await;
    let unknown = app
        .create_agent_id(&json!({"name": "elsewhere", "model": "nowhere/m"}))
        .await;
    let response = app
        .post_form(&format!("/agents/{unknown}/runs"), &[("message", "x")])
        .await;
    let problem = assert_problem(response, 409, "conflict").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("scripted"),
        "{problem}"
    );
    let response = app
        .post_form(
            &format!("/agents/{}/runs", uuid::Uuid::now_v7()),
            &[("message", "x")],
        )
        .await;
    assert_problem(response, 404, "not_found").await;
    app.post_json(&format!("/agents/{agent}/pause"), &json!({}))
        .send()
        .await
        .unwrap();
    let response = app.post_form(&path, &[("message", "x")]).await;
    assert_problem(response, 409, "conflict").await;
}

async fn reconnect_gets_each_missed_event_once(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::text("one two three four five six").token_delay(Duration::from_millis(30)));
    let response = app
        .post_form(&format!("/agents/{agent}/runs"), &[("message", "count")])
        .await;
    let first = read_frames(response, 4).await;
    assert_eq!(first.len(), 4);
    let run_id = first[0].data["run_id"].as_str().unwrap().to_owned();
    // Reconnect while the run is going, from event 4.
    let response = app
        .get(&format!("/agents/{agent}/runs/{run_id}/events"))
        .header("Last-Event-ID", "4")
        .send()
        .await
        .unwrap();
    let rest = parse(&response.text().await.unwrap());
    let ids: Vec<u64> = rest
        .iter()
        .map(|f| f.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&5));
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(rest.last().unwrap().event.as_deref(), Some("RunCompleted"));
    let all = first.len() + rest.len();

    // After the run has finished, and through AgentOS's /resume.
    let response = app
        .post_form(
            &format!("/agents/{agent}/runs/{run_id}/resume"),
            &[("last_event_index", "1")],
        )
        .await;
    let resumed = parse(&response.text().await.unwrap());
    assert_eq!(resumed.first().unwrap().id.as_deref(), Some("3"));
    assert_eq!(resumed.len(), all - 2);

    // And from a freshly restarted server.
    let app = app.restart().await;
    let response = app
        .get(&format!("/agents/{agent}/runs/{run_id}/events"))
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    let replayed = parse(&response.text().await.unwrap());
    assert_eq!(replayed.len(), all - 2);
    assert_eq!(replayed.first().unwrap().id.as_deref(), Some("3"));
    assert_eq!(
        replayed.last().unwrap().event.as_deref(),
        Some("RunCompleted")
    );
    let response = app
        .get(&format!("/agents/{agent}/runs/{run_id}/events"))
        .header("Last-Event-ID", "x")
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "invalid_field").await;
}

async fn restart_ends_runs_left_in_flight(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::hang());
    let response = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[
                ("message", "hang"),
                ("stream", "false"),
                ("background", "true"),
            ],
        )
        .await;
    let accepted: Value = response.json().await.unwrap();
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let app = app.restart().await;
    let run: Value = app
        .get_json(&format!("/agents/{agent}/runs/{run_id}"))
        .await;
    assert_eq!(run["status"], "ERROR");
    let response = app
        .get(&format!("/agents/{agent}/runs/{run_id}/events"))
        .send()
        .await
        .unwrap();
    let frames = parse(&response.text().await.unwrap());
    let last = frames.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("RunError"));
    assert_eq!(last.data["error_type"], "server_restarted");
    let terminals = frames
        .iter()
        .filter(|f| {
            matches!(
                f.event.as_deref(),
                Some("RunCompleted" | "RunCancelled" | "RunError")
            )
        })
        .count();
    assert_eq!(terminals, 1);
}

async fn session_policy_reject_and_enqueue(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    let created = app
        .post_json(
            "/sessions",
            &json!({"session_id": "busy", "agent_id": agent, "policy": "reject"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    model.push(Reply::text("slow answer").token_delay(Duration::from_millis(200)));
    let first = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[
                ("message", "one"),
                ("session_id", "busy"),
                ("stream", "false"),
                ("background", "true"),
            ],
        )
        .await;
    assert_eq!(first.status(), 202);
    let second = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[("message", "two"), ("session_id", "busy")],
        )
        .await;
    let problem = assert_problem(second, 409, "conflict").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("reject"),
        "{problem}"
    );

    // Under the default policy the second run waits for the first, then sees it in its history.
    model.push(Reply::text("first").token_delay(Duration::from_millis(100)));
    model.push(Reply::text("second"));
    let one = app
        .request(
            reqwest::Method::POST,
            &format!("/agents/{agent}/runs"),
            &app.admin_key,
        )
        .form(&[
            ("message", "one"),
            ("session_id", "queue"),
            ("stream", "false"),
            ("background", "true"),
        ])
        .send();
    let one = one.await.unwrap();
    assert_eq!(one.status(), 202);
    let two = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[
                ("message", "two"),
                ("session_id", "queue"),
                ("stream", "false"),
            ],
        )
        .await;
    let two: Value = two.json().await.unwrap();
    assert_eq!(two["status"], "COMPLETED");
    let last_request = model.requests().last().unwrap().body.clone();
    let contents: Vec<&str> = last_request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        contents.contains(&"one") && contents.contains(&"two"),
        "{contents:?}"
    );
}

async fn runs_are_tenant_scoped(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([])).await;
    model.push(Reply::text("mine"));
    let run: Value = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[
                ("message", "hi"),
                ("stream", "false"),
                ("session_id", "private"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let run_id = run["run_id"].as_str().unwrap();
    let other = app.create_tenant("other").await;
    crate::assert_all_not_found(
        &app,
        &other,
        vec![
            (
                reqwest::Method::GET,
                format!("/agents/{agent}/runs/{run_id}"),
                None,
            ),
            (
                reqwest::Method::GET,
                format!("/agents/{agent}/runs/{run_id}/events"),
                None,
            ),
            (
                reqwest::Method::POST,
                format!("/agents/{agent}/runs/{run_id}/cancel"),
                None,
            ),
            (
                reqwest::Method::POST,
                format!("/agents/{agent}/runs/{run_id}/continue"),
                Some(json!({"tools": []})),
            ),
            (
                reqwest::Method::POST,
                format!("/agents/{agent}/runs"),
                Some(json!({"message": "x"})),
            ),
            (reqwest::Method::GET, "/sessions/private".to_owned(), None),
            (
                reqwest::Method::GET,
                format!("/sessions/private/runs/{run_id}"),
                None,
            ),
            (
                reqwest::Method::DELETE,
                "/sessions/private".to_owned(),
                None,
            ),
        ],
    )
    .await;
    let listed: Value = app
        .request(reqwest::Method::GET, "/sessions", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["meta"]["total_count"], 0);
}

async fn token_and_time_limits_end_the_run(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = agent(&app, json!([{ "name": "current_time" }])).await;
    model.push(Reply::tool_call("c1", "current_time", "{}").usage(40, 20));
    let frames = run_stream(&app, &agent, &[("message", "x"), ("max_tokens", "50")]).await;
    let last = &frames.last().unwrap().data;
    assert_eq!(last["event"], "RunError");
    assert_eq!(last["error_type"], "token_limit_reached");
    assert!(
        last["content"].as_str().unwrap().contains("60 tokens"),
        "{last}"
    );

    model.push(Reply::text("slow ".repeat(50).as_str()).token_delay(Duration::from_millis(100)));
    let started = std::time::Instant::now();
    let frames = run_stream(&app, &agent, &[("message", "x"), ("max_seconds", "1")]).await;
    let elapsed = started.elapsed();
    let last = &frames.last().unwrap().data;
    assert_eq!(last["error_type"], "time_limit_reached", "{last}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

async fn interrupt_policy_cancels_the_run_in_progress(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = app
        .create_agent_id(&json!({"name": "i", "model": "scripted/m"}))
        .await;
    app.post_json(
        "/sessions",
        &json!({"session_id": "talk", "agent_id": agent, "policy": "interrupt"}),
    )
    .send()
    .await
    .unwrap();
    model.push(Reply::text("long ".repeat(100).as_str()).token_delay(Duration::from_millis(50)));
    model.push(Reply::text("new answer"));
    let first: Value = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[
                ("message", "one"),
                ("session_id", "talk"),
                ("stream", "false"),
                ("background", "true"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second: Value = app
        .post_form(
            &format!("/agents/{agent}/runs"),
            &[
                ("message", "two"),
                ("session_id", "talk"),
                ("stream", "false"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["status"], "COMPLETED");
    assert_eq!(second["content"], "new answer");
    let first_id = first["run_id"].as_str().unwrap();
    let first: Value = app
        .get_json(&format!("/agents/{agent}/runs/{first_id}"))
        .await;
    assert_eq!(first["status"], "CANCELLED");
}

backend_tests!(
    token_and_time_limits_end_the_run,
    interrupt_policy_cancels_the_run_in_progress,
    plain_answer_streams_agentos_events,
    tool_call_runs_a_server_tool,
    parallel_tool_calls_run_together,
    client_tool_pauses_and_continue_resumes,
    confirmation_pause_and_reject,
    cancel_stops_a_streaming_run_promptly,
    provider_failure_mid_stream_ends_with_run_error,
    iteration_limit_ends_the_run,
    non_streaming_and_background_runs,
    bad_run_requests_are_named,
    reconnect_gets_each_missed_event_once,
    restart_ends_runs_left_in_flight,
    session_policy_reject_and_enqueue,
    runs_are_tenant_scoped,
);
