//! Runs whose agent lists an MCP server: the reference server `server-everything` over stdio
//! contributes its tools, namespaced, on both faces; a command outside `tools.mcp.allowed_commands`
//! is refused before the run starts.

use agentd_runtime::Config;
use agentd_testkit::sse::{names, parse};
use agentd_testkit::{backend_tests, spawn_app_with_model_and, Reply, TestDb};
use serde_json::{json, Value};

use crate::assert_problem;

async fn mcp_tools_run_on_both_faces(db: TestDb) {
    let Some(bin) = agentd_testkit::mcp::everything() else {
        return;
    };
    let command = bin.display().to_string();
    let mut config = Config::default();
    config.tools.mcp.allowed_commands = vec![command.clone()];
    let (app, model) = spawn_app_with_model_and(db, config).await;
    let agent = app
        .create_agent_id(&json!({
            "name": "mcp-user",
            "model": "scripted/m",
            "mcp_servers": [{"name": "everything", "command": command, "args": ["stdio"]}],
        }))
        .await;

    // AgentOS face.
    model.push(Reply::tool_call(
        "m1",
        "everything__echo",
        r#"{"message":"hi"}"#,
    ));
    model.push(Reply::text("Echoed"));
    let response = app
        .post_form(&format!("/agents/{agent}/runs"), &[("message", "echo hi")])
        .await;
    let frames = parse(&response.text().await.unwrap());
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
    assert_eq!(frames[4].data["tool"]["tool_name"], "everything__echo");
    assert_eq!(frames[4].data["tool"]["result"], "Echo: hi");
    // The model was offered the server's tools, namespaced, with their schemas.
    let offered = &model.requests()[0].body["tools"];
    let echo = offered
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "everything__echo")
        .expect("the echo tool is offered");
    assert_eq!(echo["function"]["parameters"]["type"], "object");

    // Open Agent API face, reusing the connection.
    model.push(Reply::tool_call(
        "m2",
        "everything__get-sum",
        r#"{"a":2,"b":3}"#,
    ));
    model.push(Reply::text("Five"));
    let response = app
        .post_json(
            &format!("/agents/{agent}/chat"),
            &json!({"messages": [{"role": "user", "content": "add"}]}),
        )
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let frames = parse(&response.text().await.unwrap());
    assert_eq!(
        names(&frames),
        [
            "1 RunStarted",
            "2 RunResponse/ModelRequestStarted",
            "3 RunResponse/ModelRequestCompleted",
            "4 RunResponse/ToolCallStarted",
            "5 RunResponse/ToolCallCompleted",
            "6 RunResponse/ModelRequestStarted",
            "7 RunResponse",
            "8 RunResponse/ModelRequestCompleted",
            "9 RunCompleted"
        ]
    );
    let sum: Value = frames[4].data["tool"]["result"].clone();
    assert!(sum.as_str().unwrap().contains('5'), "{sum}");

    // A command outside the allow-list is refused before anything runs.
    let rogue = app
        .create_agent_id(&json!({
            "name": "rogue",
            "model": "scripted/m",
            "mcp_servers": [{"name": "shell", "command": "/bin/sh", "args": ["-c", "true"]}],
        }))
        .await;
    let response = app
        .post_form(&format!("/agents/{rogue}/runs"), &[("message", "x")])
        .await;
    let problem = assert_problem(response, 409, "conflict").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("allowed_commands"),
        "{problem}"
    );
}

backend_tests!(mcp_tools_run_on_both_faces);
