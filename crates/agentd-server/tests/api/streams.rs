//! Complete event streams of every kind of run, on both run faces: AgentOS's `/agents/{id}/runs`
//! and the Open Agent API's `/agents/{id}/chat`. Each stream is compared whole, frame by frame (ids,
//! times and the scripted model's address redacted), with a snapshot in `snapshots/` that both
//! backends share, so SQLite and PostgreSQL must also give the very same streams.
//!
//! To update after an intended change: `INSTA_UPDATE=always cargo test -p agentd-server --test api
//! streams`, then review the diff of `snapshots/`.

use agentd_runtime::Config;
use agentd_testkit::sse::{parse, snapshot, SseFrame};
use agentd_testkit::{
    backend_tests, spawn_app_with_model_and, Reply, ScriptedModel, TestApp, TestDb,
};
use serde_json::{json, Value};

/// The two faces a run is rendered by.
#[derive(Clone, Copy)]
enum Face {
    /// `POST /agents/{id}/runs` (form fields), continued at `/runs/{run_id}/continue`.
    AgentOs,
    /// `POST /agents/{id}/chat` with `Accept: text/event-stream`, continued with tool messages.
    Chat,
}

impl Face {
    fn name(self) -> &'static str {
        match self {
            Face::AgentOs => "agentos",
            Face::Chat => "chat",
        }
    }
}

struct Scene {
    app: TestApp,
    model: ScriptedModel,
    agent: String,
    face: Face,
}

impl Scene {
    async fn new(db: TestDb, face: Face, tools: Value) -> Scene {
        Self::with_spec(db, face, json!({"tools": tools}), Config::default()).await
    }

    /// An agent named `streamer` on `scripted/gpt-test`, with `extra` merged into its spec.
    async fn with_spec(db: TestDb, face: Face, extra: Value, config: Config) -> Scene {
        let (app, model) = spawn_app_with_model_and(db, config).await;
        let mut spec = json!({
            "name": "streamer",
            "instructions": "Be brief.",
            "model": "scripted/gpt-test",
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let agent = app.create_agent_id(&spec).await;
        Scene {
            app,
            model,
            agent,
            face,
        }
    }

    /// Starts a run with `message` and reads its stream to the end. `extra` are more form fields
    /// (AgentOS) or body fields (chat), such as limits.
    async fn run(&self, message: &str, extra: &[(&str, &str)]) -> Vec<SseFrame> {
        let response = self.start(message, extra).await;
        assert_eq!(response.status(), 200);
        parse(&response.text().await.unwrap())
    }

    async fn start(&self, message: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        match self.face {
            Face::AgentOs => {
                let mut form = vec![("message", message)];
                form.extend_from_slice(extra);
                self.app
                    .post_form(&format!("/agents/{}/runs", self.agent), &form)
                    .await
            }
            Face::Chat => {
                let mut body = json!({"messages": [{"role": "user", "content": message}]});
                for (name, value) in extra {
                    let value = serde_json::from_str(value).unwrap_or(json!(value));
                    body[*name] = value;
                }
                self.chat(&body).await
            }
        }
    }

    async fn chat(&self, body: &Value) -> reqwest::Response {
        self.app
            .post_json(&format!("/agents/{}/chat", self.agent), body)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap()
    }

    /// Continues the paused run that `paused` (its last frame) ended with, giving each pending tool
    /// call `answer`: a result for a client-side tool, a decision for a confirmation.
    async fn resolve(&self, paused: &[SseFrame], answer: Resolution) -> Vec<SseFrame> {
        let last = &paused.last().expect("a paused stream").data;
        let run_id = last["run_id"].as_str().unwrap();
        let response = match self.face {
            Face::AgentOs => {
                let tools: Vec<Value> = last["tools"]
                    .as_array()
                    .expect("RunPaused names its tools")
                    .iter()
                    .map(|tool| {
                        let mut tool = tool.clone();
                        match &answer {
                            Resolution::Result(result) => tool["result"] = json!(result),
                            Resolution::Reject(note) => {
                                tool["confirmed"] = json!(false);
                                tool["confirmation_note"] = json!(note);
                            }
                        }
                        tool
                    })
                    .collect();
                self.app
                    .post_form(
                        &format!("/agents/{}/runs/{run_id}/continue", self.agent),
                        &[("tools", json!(tools).to_string().as_str())],
                    )
                    .await
            }
            Face::Chat => {
                let call_id = last["tool_call_id"]
                    .as_str()
                    .expect("ToolRequest's call id");
                let content = match &answer {
                    Resolution::Result(result) => (*result).to_owned(),
                    Resolution::Reject(note) => {
                        json!({"confirmed": false, "note": note}).to_string()
                    }
                };
                self.chat(&json!({
                    "run_id": run_id,
                    "messages": [{"role": "tool", "tool_call_id": call_id, "content": content}],
                }))
                .await
            }
        };
        assert_eq!(response.status(), 200);
        parse(&response.text().await.unwrap())
    }

    /// Asserts the stream against the snapshot `<face>_<scene>`, the scripted model's address shown
    /// as `[model]`; and that a stream ends with exactly one terminal event, or with a pause.
    fn assert_stream(&self, scene: &str, frames: &[SseFrame]) {
        let terminal = frames
            .iter()
            .filter(|frame| {
                let kind = frame.event.as_deref().or(frame.data["type"].as_str());
                matches!(kind, Some("RunCompleted" | "RunError" | "RunCancelled"))
            })
            .count();
        let last = frames.last().expect("a stream with frames");
        let last = last.event.as_deref().or(last.data["type"].as_str());
        let paused = matches!(last, Some("RunPaused" | "ToolRequest"));
        assert_eq!(
            terminal,
            usize::from(!paused),
            "{scene}: one terminal event, or a pause"
        );
        let text = snapshot(frames).replace(&self.model.url(), "[model]");
        insta::assert_snapshot!(format!("{}_{scene}", self.face.name()), text);
    }
}

enum Resolution {
    Result(&'static str),
    Reject(&'static str),
}

async fn plain_answer(db: TestDb, face: Face) {
    let scene = Scene::new(db, face, json!([])).await;
    scene.model.push(Reply::text("Hello there").usage(12, 2));
    let frames = scene.run("hi", &[]).await;
    scene.assert_stream("plain_answer", &frames);
}

async fn tool_call(db: TestDb, face: Face) {
    let scene = Scene::new(db, face, json!([{"name": "http_fetch"}])).await;
    let page = format!("{}/no-such-page", scene.model.url());
    scene.model.push(Reply::tool_call(
        "call_1",
        "http_fetch",
        &json!({"url": page}).to_string(),
    ));
    scene.model.push(Reply::text("Done"));
    let frames = scene.run("fetch it", &[]).await;
    scene.assert_stream("tool_call", &frames);
}

async fn parallel_tool_calls(db: TestDb, face: Face) {
    let scene = Scene::new(db, face, json!([{"name": "http_fetch"}])).await;
    let url = scene.model.url();
    scene.model.push(Reply::tool_calls(&[
        (
            "call_a",
            "http_fetch",
            &json!({"url": format!("{url}/a")}).to_string(),
        ),
        (
            "call_b",
            "http_fetch",
            &json!({"url": format!("{url}/b")}).to_string(),
        ),
    ]));
    scene.model.push(Reply::text("Both done"));
    let frames = scene.run("fetch both", &[]).await;
    scene.assert_stream("parallel_tool_calls", &frames);
}

async fn mcp_tool_call(db: TestDb, face: Face) {
    let Some(bin) = agentd_testkit::mcp::everything() else {
        return;
    };
    let command = bin.display().to_string();
    let mut config = Config::default();
    config.tools.mcp.allowed_commands = vec![command.clone()];
    let spec = json!({
        "mcp_servers": [{"name": "everything", "command": command, "args": ["stdio"]}],
    });
    let scene = Scene::with_spec(db, face, spec, config).await;
    scene.model.push(Reply::tool_call(
        "m1",
        "everything__echo",
        r#"{"message":"hi"}"#,
    ));
    scene.model.push(Reply::text("Echoed"));
    let frames = scene.run("echo hi", &[]).await;
    scene.assert_stream("mcp_tool_call", &frames);
}

async fn client_tool_pause_and_continue(db: TestDb, face: Face) {
    let tools =
        json!([{"name": "get_weather", "client_side": true, "parameters": {"type": "object"}}]);
    let scene = Scene::new(db, face, tools).await;
    scene.model.push(Reply::tool_call(
        "call_w",
        "get_weather",
        r#"{"city":"Oslo"}"#,
    ));
    let paused = scene.run("weather?", &[]).await;
    scene.assert_stream("client_tool_pause", &paused);
    scene.model.push(Reply::text("It is sunny"));
    let continued = scene
        .resolve(&paused, Resolution::Result("12 degrees, sunny"))
        .await;
    scene.assert_stream("client_tool_continue", &continued);
}

async fn confirmation_pause_and_reject(db: TestDb, face: Face) {
    let tools = json!([{"name": "http_fetch", "requires_confirmation": true}]);
    let scene = Scene::new(db, face, tools).await;
    scene.model.push(Reply::tool_call(
        "call_c",
        "http_fetch",
        r#"{"url":"http://example.invalid/"}"#,
    ));
    let paused = scene.run("fetch", &[]).await;
    scene.assert_stream("confirmation_pause", &paused);
    scene.model.push(Reply::text("Understood"));
    let rejected = scene.resolve(&paused, Resolution::Reject("not now")).await;
    scene.assert_stream("confirmation_reject", &rejected);
    assert_eq!(
        scene
            .model
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/chat/completions")
            .count(),
        2,
        "the rejected tool never ran"
    );
}

async fn cancel_mid_stream(db: TestDb, face: Face) {
    let scene = Scene::new(db, face, json!([])).await;
    // One word, then the model goes quiet with its stream open: the cancel lands mid-stream.
    scene
        .model
        .push(Reply::text("Partial answer that never ends").stall_after(1));
    let mut response = scene.start("talk", &[]).await;
    assert_eq!(response.status(), 200);
    let mut body = String::new();
    while parse(&body).len() < 3 {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let run_id = parse(&body)[0].data["run_id"].as_str().unwrap().to_owned();
    let cancelled = scene
        .app
        .post_json(
            &format!("/agents/{}/runs/{run_id}/cancel", scene.agent),
            &json!({}),
        )
        .send()
        .await
        .unwrap();
    assert!(cancelled.status().is_success(), "{}", cancelled.status());
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    scene.assert_stream("cancel_mid_stream", &parse(&body));
}

async fn provider_failure_mid_stream(db: TestDb, face: Face) {
    let scene = Scene::new(db, face, json!([])).await;
    scene
        .model
        .push(Reply::text("partial answer here").error_after(1, "upstream exploded"));
    let frames = scene.run("hi", &[]).await;
    scene.assert_stream("provider_failure_mid_stream", &frames);
}

async fn iteration_limit(db: TestDb, face: Face) {
    let scene = Scene::new(db, face, json!([{"name": "http_fetch"}])).await;
    let url = scene.model.url();
    for (id, path) in [("c1", "one"), ("c2", "two")] {
        scene.model.push(Reply::tool_call(
            id,
            "http_fetch",
            &json!({"url": format!("{url}/{path}")}).to_string(),
        ));
    }
    let frames = scene.run("loop", &[("max_iterations", "2")]).await;
    scene.assert_stream("iteration_limit", &frames);
}

/// Each scene on each face and backend, as a test of its own, so a failure names all three.
macro_rules! on_both_faces {
    ($($agentos:ident, $chat:ident => $scene:ident;)*) => {
        $(
            async fn $agentos(db: TestDb) {
                $scene(db, Face::AgentOs).await
            }
            async fn $chat(db: TestDb) {
                $scene(db, Face::Chat).await
            }
        )*
        backend_tests!($($agentos, $chat),*);
    };
}

on_both_faces! {
    agentos_plain_answer, chat_plain_answer => plain_answer;
    agentos_tool_call, chat_tool_call => tool_call;
    agentos_parallel_tool_calls, chat_parallel_tool_calls => parallel_tool_calls;
    agentos_mcp_tool_call, chat_mcp_tool_call => mcp_tool_call;
    agentos_client_tool_pause_and_continue, chat_client_tool_pause_and_continue => client_tool_pause_and_continue;
    agentos_confirmation_pause_and_reject, chat_confirmation_pause_and_reject => confirmation_pause_and_reject;
    agentos_cancel_mid_stream, chat_cancel_mid_stream => cancel_mid_stream;
    agentos_provider_failure_mid_stream, chat_provider_failure_mid_stream => provider_failure_mid_stream;
    agentos_iteration_limit, chat_iteration_limit => iteration_limit;
}
