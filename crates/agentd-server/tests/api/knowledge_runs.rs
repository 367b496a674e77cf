//! The knowledge base in runs: the `search_knowledge` tool (agentic RAG), chunks given up front
//! (`add_to_context`), and the searches reported as references in `RunCompleted`.

use agentd_testkit::sse::parse;
use agentd_testkit::{backend_tests, spawn_app_with_model, Reply, TestDb};
use serde_json::{json, Value};

use crate::knowledge::completed;

const VAULT: &str = "The vault under the old mill opens with the password tangerine. \
                     It was built in 1887 by the miller's guild.";

/// The `RunCompleted` event of a run, from its event stream.
async fn completed_event(app: &agentd_testkit::TestApp, agent: &str, run_id: &str) -> Value {
    let events = app
        .get(&format!("/agents/{agent}/runs/{run_id}/events"))
        .send()
        .await
        .unwrap();
    let frames = parse(&events.text().await.unwrap());
    let last = frames.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("RunCompleted"));
    last.data.clone()
}

async fn agents_search_their_knowledge_and_report_references(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    completed(
        &app,
        json!({"text": VAULT, "name": "vault notes", "metadata": {"kind": "lore"}}),
    )
    .await;
    completed(
        &app,
        json!({"text": "Bread is baked at dawn in the mill.", "name": "bakery"}),
    )
    .await;

    // Agentic RAG: the model calls search_knowledge and answers from what it returns.
    let searcher = app
        .create_agent_id(
            &json!({"name": "librarian", "model": "scripted/m", "search_knowledge": true}),
        )
        .await;
    model.push(Reply::tool_call(
        "k1",
        "search_knowledge",
        r#"{"query": "vault password"}"#,
    ));
    model.push(Reply::text("The password is tangerine."));
    let response = app
        .post_form(
            &format!("/agents/{searcher}/runs"),
            &[("message", "How do I open the vault?"), ("stream", "false")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["content"], "The password is tangerine.");
    let requests = model.requests();
    let tools: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["search_knowledge"]);
    let tool_message = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool result reaches the model");
    let passage = tool_message["content"].as_str().unwrap();
    assert!(
        passage.contains("tangerine") && passage.contains("(vault notes)"),
        "{passage}"
    );
    assert!(!passage.contains("Bread"), "{passage}");

    let done = completed_event(&app, &searcher, run["run_id"].as_str().unwrap()).await;
    let references = &done["references"];
    assert_eq!(references.as_array().unwrap().len(), 1, "{done}");
    assert_eq!(references[0]["query"], "vault password");
    assert_eq!(references[0]["references"][0]["name"], "vault notes");
    assert_eq!(references[0]["references"][0]["meta_data"]["kind"], "lore");
    assert!(references[0]["references"][0]["content"]
        .as_str()
        .unwrap()
        .contains("tangerine"));

    // Classic RAG: the best chunks come before the question, with no tool.
    let reader = app
        .create_agent_id(&json!({
            "name": "reader", "model": "scripted/m", "instructions": "Be brief.",
            "knowledge": {"add_to_context": true, "max_results": 1}
        }))
        .await;
    model.push(Reply::text("tangerine"));
    let response = app
        .post_form(
            &format!("/agents/{reader}/runs"),
            &[
                ("message", "What is the vault password?"),
                ("stream", "false"),
            ],
        )
        .await;
    let run: Value = response.json().await.unwrap();
    let sent = &model.requests()[2].body;
    assert!(
        sent["tools"].as_array().is_none_or(|t| t.is_empty()),
        "{sent}"
    );
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[0]["content"], "Be brief.");
    let context = messages[1]["content"].as_str().unwrap();
    assert!(context.contains("tangerine"), "{context}");
    let done = completed_event(&app, &reader, run["run_id"].as_str().unwrap()).await;
    assert_eq!(
        done["references"][0]["query"],
        "What is the vault password?"
    );
    assert_eq!(
        done["references"][0]["references"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // An agent without knowledge settings reports no references and gets no tool.
    let plain = app
        .create_agent_id(&json!({"name": "plain", "model": "scripted/m"}))
        .await;
    model.push(Reply::text("hi"));
    let response = app
        .post_form(
            &format!("/agents/{plain}/runs"),
            &[("message", "vault?"), ("stream", "false")],
        )
        .await;
    let run: Value = response.json().await.unwrap();
    let done = completed_event(&app, &plain, run["run_id"].as_str().unwrap()).await;
    assert!(done.get("references").is_none(), "{done}");
    let view = app.get_json(&format!("/agents/{reader}")).await;
    assert_eq!(
        view["knowledge"],
        json!({"search": false, "add_to_context": true, "max_results": 1})
    );
}

async fn another_tenants_knowledge_never_reaches_a_run(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    completed(&app, json!({"text": VAULT, "name": "vault notes"})).await;
    let other = app.create_tenant("other").await;
    let response = app
        .request(reqwest::Method::POST, "/agents", &other)
        .json(&json!({"name": "snoop", "model": "scripted/m", "knowledge": {"search": true, "add_to_context": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let snoop: Value = response.json().await.unwrap();
    let snoop = snoop["id"].as_str().unwrap();
    model.push(Reply::tool_call(
        "k1",
        "search_knowledge",
        r#"{"query": "vault password"}"#,
    ));
    model.push(Reply::text("I do not know."));
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/agents/{snoop}/runs"),
            &other,
        )
        .form(&[("message", "vault password?"), ("stream", "false")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for request in model.requests() {
        assert!(
            !request.body.to_string().contains("tangerine"),
            "{}",
            request.body
        );
    }
}

backend_tests!(
    agents_search_their_knowledge_and_report_references,
    another_tenants_knowledge_never_reaches_a_run,
);
