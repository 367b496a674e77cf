//! agno's own AgentOS client (`agno.client.AgentOSClient`, pinned, [`python::AGNO_CLIENT`]) against the
//! AgentOS face: `tests/python/agentos_client.py` lists and reads agents, runs one with and without a
//! stream, lists the sessions and a session's runs, pauses a run on a client tool and continues it,
//! adds and lists memories, uploads text to the knowledge base and searches it, cancels a background
//! run, and reports what the client parsed. agno
//! validates every answer with its own pydantic models, so a field agentd shapes differently from
//! AgentOS fails the script.
//!
//! Without Python, its `venv` module or the package index the test is skipped with a note, except under
//! `CI=true` (see [`python::venv`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentd_models::{ProviderConfig, ProviderKind};
use agentd_runtime::Config;
use agentd_testkit::{
    backend_tests, python, spawn_app_with, Reply, ScriptedModel, TestApp, TestDb,
};
use serde_json::{json, Value};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/agentos_client.py")
}

async fn run_client(python: &Path, app: &TestApp, params: &Value, scenarios: &[&str]) -> Value {
    python::run_script(
        python,
        &script(),
        &app.url(""),
        &app.admin_key,
        params,
        scenarios,
    )
    .await
}

async fn agno_client_reads_agents_and_runs_them(db: TestDb) {
    let Some(python) = python::venv(python::AGNO_CLIENT) else {
        return;
    };
    let model = ScriptedModel::start().await;
    let mut config = Config::default();
    config.providers.insert(
        "scripted".to_owned(),
        ProviderConfig {
            kind: ProviderKind::Openai,
            base_url: format!("{}/v1", model.url()),
            api_key_env: None,
            path: None,
            connect_timeout_secs: 2,
            read_timeout_secs: 5,
            max_retries: 0,
            models: vec!["gpt-test".to_owned()],
        },
    );
    let app = spawn_app_with(db, config).await;
    let agent = app
        .create_agent_id(&json!({
            "name": "greeter",
            "description": "Greets people.",
            "model": "scripted/gpt-test",
            "instructions": "Greet briefly.",
            "tools": [{"name": "lookup", "client_side": true}],
        }))
        .await;
    model.push(Reply::text("Hello there").usage(12, 3));
    model.push(Reply::text("Hi, streamed").usage(8, 2));
    model.push(Reply::tool_call("call_1", "lookup", "{}"));
    model.push(Reply::text("The answer is 42"));
    model.push(Reply::text(&"word ".repeat(200)).token_delay(Duration::from_millis(50)));

    let params = json!({"agent_id": agent, "user_id": "ada"});
    let report = run_client(
        &python,
        &app,
        &params,
        &[
            "list_agents",
            "get_agent",
            "run",
            "stream",
            "sessions",
            "pause_continue",
            "memories",
            "knowledge",
            "cancel",
        ],
    )
    .await;

    let model_object =
        json!({"id": "scripted/gpt-test", "provider": "scripted", "model": "gpt-test"});
    assert_eq!(
        report["agents"],
        json!([{"id": agent, "name": "greeter", "description": "Greets people.",
                "model": {"id": "scripted/gpt-test", "provider": "scripted"}}]),
        "list_agents parses AgentOS's summary list"
    );
    assert_eq!(report["agent"]["id"], agent);
    assert_eq!(report["agent"]["name"], "greeter");
    let mut detail_model = model_object.clone();
    detail_model.as_object_mut().unwrap().remove("id");
    assert_eq!(
        report["agent"]["model"], detail_model,
        "AgentResponse's ModelResponse"
    );
    assert_eq!(report["agent"]["tools"]["tools"][0]["name"], "lookup");

    let run = &report["run"];
    assert_eq!(run["content"], "Hello there");
    assert_eq!(run["agent_id"], agent);
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(run["input_tokens"], 12);
    assert_eq!(run["output_tokens"], 3);

    let stream = &report["stream"];
    assert_eq!(stream["content"], "Hi, streamed");
    assert_eq!(
        stream["session_id"], run["session_id"],
        "the stream continued the session"
    );
    let events: Vec<&str> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"RunStartedEvent"), "{events:?}");
    assert_eq!(events.last(), Some(&"RunCompletedEvent"), "{events:?}");
    assert!(events.contains(&"RunContentEvent"), "{events:?}");

    assert_eq!(
        report["sessions"],
        json!([{"session_id": run["session_id"], "agent_id": agent, "user_id": "ada"}])
    );
    assert_eq!(
        report["session_detail"],
        json!({"type": "AgentSessionDetailSchema", "session_id": run["session_id"],
               "agent_session_id": run["session_id"], "session_name": "Say hello.",
               "agent_id": agent}),
        "an unnamed session is called by its first message"
    );
    let runs: Vec<&Value> = report["session_runs"].as_array().unwrap().iter().collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["content"], "Hello there");
    assert_eq!(runs[1]["content"], "Hi, streamed");

    // A client tool pauses the run; agno's continue sends the tool back with its result.
    let paused = &report["pause_continue"];
    assert_eq!(paused["paused_status"], "PAUSED", "{paused}");
    assert_eq!(paused["paused_tools"], json!(["lookup"]));
    assert_eq!(paused["continued_run_id"], paused["run_id"]);
    assert_eq!(paused["status"], "COMPLETED");
    assert_eq!(paused["content"], "The answer is 42");
    let requests = model.requests();
    assert!(
        requests
            .iter()
            .any(|request| request.body["messages"]
                .as_array()
                .is_some_and(|messages| messages
                    .iter()
                    .any(|m| m["role"] == "tool" && m["content"].to_string().contains("42")))),
        "the model got the tool's result"
    );

    let memories = &report["memories"];
    assert_eq!(memories["created"]["memory"], "Ada drinks green tea.");
    assert_eq!(memories["created"]["topics"], json!(["food"]));
    assert_eq!(memories["listed"], json!(["Ada drinks green tea."]));
    assert_eq!(memories["total_count"], 1);
    assert!(
        memories["topics"]
            .as_array()
            .unwrap()
            .contains(&json!("food")),
        "{memories}"
    );

    // A background run cancelled through agno ends cancelled.
    assert_eq!(
        report["cancel"]["status"], "CANCELLED",
        "{}",
        report["cancel"]
    );

    let knowledge = &report["knowledge"];
    assert_eq!(knowledge["status"], "completed", "{knowledge}");
    assert_eq!(
        knowledge["results"],
        json!([{"content": "Green tea is brewed at 80 degrees.", "content_id": knowledge["content_id"]}])
    );
}

backend_tests!(agno_client_reads_agents_and_runs_them);
