//! Long-term memory in runs: automatic memory stores what a run taught about its user, and a later
//! run of the same user, in another session, is given it; other users are not.

use agentd_testkit::sse::parse;
use agentd_testkit::{backend_tests, spawn_app_with_model, Reply, TestDb};
use serde_json::{json, Value};

async fn run(app: &agentd_testkit::TestApp, agent: &str, fields: &[(&str, &str)]) -> Value {
    let mut form = vec![("stream", "false")];
    form.extend_from_slice(fields);
    let response = app.post_form(&format!("/agents/{agent}/runs"), &form).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The system messages the model received in its `index`th request.
fn system_text(model: &agentd_testkit::ScriptedModel, index: usize) -> String {
    model.requests()[index].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "system")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn automatic_memory_reaches_the_users_next_session(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = app
        .create_agent_id(&json!({
            "name": "remembers",
            "model": "scripted/m",
            "instructions": "Be kind.",
            "enable_user_memories": true,
            "add_memories_to_context": true,
        }))
        .await;
    let view = app.get_json(&format!("/agents/{agent}")).await;
    assert_eq!(
        view["memory"],
        json!({"automatic": true, "add_to_context": true, "agentic": false})
    );

    // First run: the answer, then the extraction, which finds one fact.
    model.push(Reply::text("Nice to meet you, Ann!").usage(10, 5));
    model.push(Reply::text("```json\n[\"The user's name is Ann.\"]\n```").usage(20, 8));
    let first = run(
        &app,
        &agent,
        &[
            ("message", "Hi, I am Ann."),
            ("session_id", "s1"),
            ("user_id", "ann"),
        ],
    )
    .await;
    assert_eq!(first["status"], "COMPLETED");
    assert_eq!(first["content"], "Nice to meet you, Ann!");
    // The extraction's tokens are the run's too.
    assert_eq!(first["metrics"]["total_tokens"], 43);
    let extraction = &model.requests()[1].body["messages"];
    assert!(
        extraction[1]["content"]
            .as_str()
            .unwrap()
            .contains("user: Hi, I am Ann."),
        "{extraction}"
    );

    // The stream shows the memory update before the run completes.
    let run_id = first["run_id"].as_str().unwrap();
    let events = app
        .get(&format!("/agents/{agent}/runs/{run_id}/events"))
        .send()
        .await
        .unwrap();
    let names: Vec<String> = parse(&events.text().await.unwrap())
        .into_iter()
        .filter_map(|frame| frame.event)
        .collect();
    let tail: Vec<&str> = names
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "MemoryUpdateStarted",
            "MemoryUpdateCompleted",
            "RunCompleted"
        ],
        "{names:?}"
    );

    let memories = app.get_json("/memories?user_id=ann").await;
    assert_eq!(memories["data"][0]["memory"], "The user's name is Ann.");
    assert_eq!(memories["data"][0]["agent_id"], agent.as_str());

    // A later run of Ann, in another session, is told what is known; nothing new is stored.
    model.push(Reply::text("Welcome back, Ann."));
    model.push(Reply::text("[]"));
    let second = run(
        &app,
        &agent,
        &[
            ("message", "Do you know me?"),
            ("session_id", "s2"),
            ("user_id", "ann"),
        ],
    )
    .await;
    assert_eq!(second["content"], "Welcome back, Ann.");
    let system = system_text(&model, 2);
    assert!(system.contains("Be kind."), "{system}");
    assert!(system.contains("The user's name is Ann."), "{system}");
    // The known memory is in the extraction prompt, so the model is not asked to repeat it.
    assert!(system_text(&model, 3).contains("The user's name is Ann."));
    let memories = app.get_json("/memories?user_id=ann").await;
    assert_eq!(memories["data"].as_array().unwrap().len(), 1);

    // Another user is told nothing about Ann.
    model.push(Reply::text("Hello, stranger."));
    model.push(Reply::text("not json at all"));
    let other = run(
        &app,
        &agent,
        &[
            ("message", "Hello"),
            ("session_id", "s3"),
            ("user_id", "bob"),
        ],
    )
    .await;
    assert_eq!(other["status"], "COMPLETED");
    assert!(!system_text(&model, 4).contains("Ann"));
    let bobs = app.get_json("/memories?user_id=bob").await;
    assert_eq!(bobs["data"], json!([]));
}

async fn runs_without_a_user_or_without_memory_make_no_memory_call(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let remembering = app
        .create_agent_id(
            &json!({"name": "r", "model": "scripted/m", "memory": {"automatic": true}}),
        )
        .await;
    let forgetful = app
        .create_agent_id(&json!({"name": "f", "model": "scripted/m"}))
        .await;
    model.push(Reply::text("one"));
    run(&app, &remembering, &[("message", "hi")]).await;
    model.push(Reply::text("two"));
    run(&app, &forgetful, &[("message", "hi"), ("user_id", "ann")]).await;
    assert_eq!(model.requests().len(), 2, "no extraction request");

    // A failing extraction does not fail the run.
    model.push(Reply::text("three"));
    model.push(Reply::status(500, "boom"));
    let done = run(&app, &remembering, &[("message", "hi"), ("user_id", "ann")]).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["content"], "three");

    // The settings can be changed, and bad ones are refused.
    let patched = app
        .request(
            reqwest::Method::PATCH,
            &format!("/agents/{forgetful}"),
            &app.admin_key,
        )
        .json(&json!({"memory": {"add_to_context": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(
        patched["memory"],
        json!({"automatic": false, "add_to_context": true, "agentic": false})
    );
    let bad = app
        .post_json(
            "/agents",
            &json!({"name": "x", "memory": {"automatic": "yes"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
}

async fn optimizing_merges_a_users_memories_with_the_model(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    for (text, topics) in [
        ("The user's name is Ann.", json!(["identity"])),
        ("Ann likes green tea.", json!(["food"])),
        ("Ann likes green tea a lot.", json!(["food"])),
    ] {
        let created = app
            .post_json(
                "/memories",
                &json!({"memory": text, "user_id": "ann", "topics": topics}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    app.post_json(
        "/memories",
        &json!({"memory": "Bob is tall.", "user_id": "bob"}),
    )
    .send()
    .await
    .unwrap();

    // A dry run shows the merge and changes nothing.
    model.push(Reply::text("Ann likes green tea.").usage(30, 6));
    let dry: Value = app
        .post_json(
            "/optimize-memories",
            &json!({"user_id": "ann", "model": "scripted:m", "apply": false}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dry["applied"], false, "{dry}");
    assert_eq!(dry["memories_before"], 3);
    assert_eq!(dry["memories_after"], 1);
    let ann = app.get_json("/memories?user_id=ann").await;
    assert_eq!(ann["data"].as_array().unwrap().len(), 3);
    let prompt = &model.requests()[0].body["messages"][1]["content"];
    assert!(
        prompt
            .as_str()
            .unwrap()
            .contains("- Ann likes green tea a lot."),
        "{prompt}"
    );

    model.push(Reply::text("Ann, the user, likes green tea.").usage(30, 8));
    let applied: Value = app
        .post_json(
            "/optimize-memories",
            &json!({"user_id": "ann", "model": "scripted/m"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(applied["applied"], true, "{applied}");
    assert!(applied["tokens_after"].as_u64().unwrap() < applied["tokens_before"].as_u64().unwrap());
    assert!(applied["reduction_percentage"].as_f64().unwrap() > 0.0);
    let ann = app.get_json("/memories?user_id=ann").await;
    let texts: Vec<&str> = ann["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["memory"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Ann, the user, likes green tea."]);
    let mut topics: Vec<&str> = ann["data"][0]["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    topics.sort_unstable();
    assert_eq!(topics, ["food", "identity"]);
    // Bob's memories are untouched; the model calls are metered.
    assert_eq!(
        app.get_json("/memories?user_id=bob").await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let usage = app.get_json("/account/usage").await;
    assert_eq!(usage["prompt_tokens"], 60, "{usage}");
    assert_eq!(usage["by_model"][0]["id"], "scripted/m");

    // An unknown model is named.
    let unknown = app
        .post_json(
            "/optimize-memories",
            &json!({"user_id": "ann", "model": "nope/x"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

async fn agentic_memory_lets_the_model_keep_its_users_memories(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = app
        .create_agent_id(
            &json!({"name": "keeper", "model": "scripted/m", "enable_agentic_memory": true}),
        )
        .await;
    let bobs: Value = app
        .post_json(
            "/memories",
            &json!({"memory": "Bob is tall.", "user_id": "bob"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bobs_id = bobs["memory_id"].as_str().unwrap().to_owned();

    model.push(Reply::tool_call(
        "c1",
        "add_memory",
        r#"{"memory": "The user is vegan.", "topics": ["food"]}"#,
    ));
    model.push(Reply::text("Noted."));
    let first = run(
        &app,
        &agent,
        &[("message", "I am vegan."), ("user_id", "ann")],
    )
    .await;
    assert_eq!(first["content"], "Noted.");
    let requests = model.requests();
    let tools: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["add_memory", "update_memory", "delete_memory"]);
    let ann = app.get_json("/memories?user_id=ann").await;
    assert_eq!(ann["data"][0]["memory"], "The user is vegan.");
    assert_eq!(ann["data"][0]["topics"], json!(["food"]));
    let id = ann["data"][0]["memory_id"].as_str().unwrap().to_owned();

    // The next run sees the memory with its id, changes it, and cannot touch another user's.
    model.push(Reply::tool_call(
        "c2",
        "update_memory",
        &json!({"memory_id": id, "memory": "The user is vegetarian."}).to_string(),
    ));
    model.push(Reply::tool_call(
        "c3",
        "delete_memory",
        &json!({"memory_id": bobs_id}).to_string(),
    ));
    model.push(Reply::text("Updated."));
    run(
        &app,
        &agent,
        &[("message", "Actually I eat eggs."), ("user_id", "ann")],
    )
    .await;
    assert!(system_text(&model, 2).contains(&format!("[{id}] The user is vegan.")));
    let tool_results: Vec<String> = model.requests()[4].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        tool_results.iter().any(|r| r.contains("has no memory")),
        "{tool_results:?}"
    );
    assert_eq!(
        app.get_json("/memories?user_id=ann").await["data"][0]["memory"],
        "The user is vegetarian."
    );
    assert_eq!(
        app.get_json("/memories?user_id=bob").await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Without a user there are no memory tools.
    model.push(Reply::text("Hi."));
    run(&app, &agent, &[("message", "hello")]).await;
    assert!(model.requests()[5].body["tools"]
        .as_array()
        .is_none_or(|t| t.is_empty()));
}

backend_tests!(
    agentic_memory_lets_the_model_keep_its_users_memories,
    optimizing_merges_a_users_memories_with_the_model,
    automatic_memory_reaches_the_users_next_session,
    runs_without_a_user_or_without_memory_make_no_memory_call,
    a_signed_in_user_runs_as_themselves,
);

/// A signed-in user's run is theirs: the run's user is them without naming it, their memories (and
/// only theirs) reach the model, and naming another user is refused.
async fn a_signed_in_user_runs_as_themselves(db: TestDb) {
    let (app, model) = spawn_app_with_model(db).await;
    let agent = app
        .create_agent_id(&json!({
            "name": "remembers",
            "model": "scripted/m",
            "add_memories_to_context": true,
        }))
        .await;
    let (ann, token) = app.signed_in_user("ann@example.com", "member").await;
    for (user_id, text) in [
        (ann.as_str(), "Ann drinks tea."),
        ("bob", "Bob drinks coffee."),
    ] {
        let response = app
            .post_json("/memories", &json!({"memory": text, "user_id": user_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    model.push(Reply::text("Tea it is."));
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/agents/{agent}/runs"),
            &token,
        )
        .form(&[("message", "What do I drink?"), ("stream", "false")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["user_id"], ann.as_str(), "{run}");
    let system = system_text(&model, 0);
    assert!(system.contains("Ann drinks tea."), "{system}");
    assert!(!system.contains("coffee"), "{system}");

    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/agents/{agent}/runs"),
            &token,
        )
        .form(&[
            ("message", "And Bob?"),
            ("stream", "false"),
            ("user_id", "bob"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(model.requests().len(), 1, "the refused run called no model");
}
