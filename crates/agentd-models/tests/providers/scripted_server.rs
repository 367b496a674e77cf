//! The scripted server's own contract, for what the providers do not reach: non-streaming answers,
//! the default reply, an exhausted script, and the exact embeddings answers and failure bodies.

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

#[tokio::test]
async fn embeddings_answer_in_each_apis_shape_without_taking_a_reply() {
    let server = ScriptedModel::start().await;
    server.push(Reply::text("kept for a chat call"));
    let vector = |text: &str| json!(agentd_testkit::model_server::scripted_embedding(text));

    let (status, openai) = post(
        format!("{}/v1/embeddings", server.url()),
        json!({"model": "e", "input": ["a b", "c"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        openai,
        json!({
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": vector("a b")},
                {"object": "embedding", "index": 1, "embedding": vector("c")},
            ],
            "model": "e",
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        })
    );

    // A lone string is one input.
    let (_, ollama) = post(
        format!("{}/api/embed", server.url()),
        json!({"model": "e", "input": "A  b"}),
    )
    .await;
    assert_eq!(
        ollama,
        json!({"model": "e", "embeddings": [vector("a b")], "prompt_eval_count": 2})
    );

    let (status, bad) = post(
        format!("{}/v1/embeddings", server.url()),
        json!({"model": "e", "input": [1, 2]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(bad["error"]["message"].is_string(), "{bad}");
    assert_eq!(server.requests().len(), 3);
    assert_eq!(server.pending(), 1);
}

#[tokio::test]
async fn scripted_vectors_are_unit_length_and_empty_text_is_zero() {
    let embed = agentd_testkit::model_server::scripted_embedding;
    let vector = embed("The quick brown fox");
    assert_eq!(
        vector.len(),
        agentd_testkit::model_server::EMBEDDING_DIMENSIONS
    );
    let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6, "{norm}");
    assert_eq!(embed("the QUICK brown  fox"), vector);
    assert!(embed(" \t").iter().all(|x| *x == 0.0));
}

#[tokio::test]
async fn failing_embeddings_use_each_apis_error_body() {
    let server = ScriptedModel::start().await;
    server.fail_embeddings(Some((429, "slow down")));

    let (status, openai) = post(
        format!("{}/v1/embeddings", server.url()),
        json!({"model": "e", "input": ["x"]}),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(openai["error"]["message"], "slow down");
    assert!(openai["error"]["type"].is_string(), "{openai}");

    let (status, ollama) = post(
        format!("{}/api/embed", server.url()),
        json!({"model": "e", "input": ["x"]}),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(ollama, json!({"error": "slow down"}));
}
