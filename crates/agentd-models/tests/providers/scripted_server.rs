//! The scripted server's own contract, for what the providers do not reach: non-streaming answers,
//! the default reply and an exhausted script.

use agentd_testkit::{Reply, ScriptedModel};
use serde_json::{json, Value};

async fn post(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn non_streaming_answers_have_each_protocols_shape() {
    let server = ScriptedModel::start().await;
    server.push(Reply::tool_call("call_1", "get_weather", r#"{"city":"Oslo"}"#).usage(7, 3));
    server.push(Reply::text("Hi there"));
    server.push(Reply::tool_call("call_2", "get_time", r#"{"zone":"UTC"}"#));

    let (status, openai) = post(
        format!("{}/v1/chat/completions", server.url()),
        json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(openai["object"], "chat.completion");
    assert_eq!(openai["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        openai["choices"][0]["message"]["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"})
    );
    assert_eq!(
        openai["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    );

    let (_, anthropic) = post(
        format!("{}/v1/messages", server.url()),
        json!({"model": "m", "max_tokens": 10, "messages": []}),
    )
    .await;
    assert_eq!(
        anthropic["content"],
        json!([{"type": "text", "text": "Hi there"}])
    );
    assert_eq!(anthropic["stop_reason"], "end_turn");

    let (_, ollama) = post(
        format!("{}/api/chat", server.url()),
        json!({"model": "m", "messages": [], "stream": false}),
    )
    .await;
    assert_eq!(ollama["done"], true);
    assert_eq!(
        ollama["message"]["tool_calls"][0]["function"],
        json!({"name": "get_time", "arguments": {"zone": "UTC"}})
    );
    assert_eq!(server.requests().len(), 3);
    assert_eq!(server.pending(), 0);
}

#[tokio::test]
async fn an_empty_script_answers_the_default_or_500() {
    let server = ScriptedModel::start().await;
    let url = format!("{}/v1/messages", server.url());

    let (status, body) = post(url.clone(), json!({"model": "m"})).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["message"], "script exhausted");

    server.set_default(Reply::text("again"));
    for _ in 0..2 {
        let (status, body) = post(url.clone(), json!({"model": "m"})).await;
        assert_eq!(status, 200);
        assert_eq!(body["content"][0]["text"], "again");
    }
    assert_eq!(server.requests().len(), 3);
}
