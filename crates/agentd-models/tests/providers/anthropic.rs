//! The Messages request: top-level system, tool results as blocks of one user turn, `max_tokens`,
//! tools as `input_schema`, and the `x-api-key` and `anthropic-version` headers.

use agentd_models::ProviderKind;
use agentd_testkit::Reply;
use serde_json::json;

use crate::{ask, conversation, events, path, setup, KEY};

#[tokio::test]
async fn request_moves_system_up_and_merges_tool_results_into_one_user_turn() {
    let (server, provider) = setup(ProviderKind::Anthropic).await;
    server.push(Reply::text("Oslo."));

    events(&provider, conversation()).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, path(ProviderKind::Anthropic));
    assert_eq!(request.header("x-api-key"), Some(KEY));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.body,
        json!({
            "model": "test-model",
            "max_tokens": 256,
            "stream": true,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Weather in Oslo and Bergen?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Bergen"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_a", "content": "12°C"},
                    {"type": "tool_result", "tool_use_id": "call_b", "content": "9°C"},
                    {"type": "text", "text": "Thanks. Which is warmer?"},
                ]},
            ],
            "tools": [{
                "name": "get_weather",
                "description": "The weather in a city.",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }],
        })
    );
}

#[tokio::test]
async fn max_tokens_defaults_to_4096_and_no_system_is_left_out() {
    let (server, provider) = setup(ProviderKind::Anthropic).await;
    server.push(Reply::text("Hi."));

    events(&provider, ask("Hi")).await;

    let body = &server.requests()[0].body;
    assert_eq!(body["max_tokens"], 4096);
    assert!(body.get("system").is_none(), "{body}");
    assert_eq!(body["messages"], json!([{"role": "user", "content": "Hi"}]));
}

#[tokio::test]
async fn sampling_options_are_sent_and_stop_becomes_stop_sequences() {
    let (server, provider) = setup(ProviderKind::Anthropic).await;
    server.push(Reply::text("Hi."));

    events(&provider, crate::sampled("Hi")).await;

    let body = &server.requests()[0].body;
    assert_eq!(body["temperature"], json!(0.2));
    assert_eq!(body["top_p"], json!(0.9));
    assert_eq!(body["stop_sequences"], json!(["END", "\n\n"]));
    assert_eq!(body["max_tokens"], json!(64));
    assert!(body.get("stop").is_none(), "{body}");
}

#[tokio::test]
async fn unset_sampling_options_are_left_out() {
    let (server, provider) = setup(ProviderKind::Anthropic).await;
    server.push(Reply::text("Hi."));

    events(&provider, ask("Hi")).await;

    let body = &server.requests()[0].body;
    for option in ["temperature", "top_p", "stop_sequences"] {
        assert!(body.get(option).is_none(), "{body}");
    }
}
