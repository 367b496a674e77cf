//! The chat completions request: messages, tools, sampling options, streaming flags and the bearer
//! key.

use agentd_models::ProviderKind;
use agentd_testkit::Reply;
use serde_json::json;

use crate::{conversation, events, path, setup, KEY};

#[tokio::test]
async fn request_maps_every_message_kind_and_asks_for_a_stream_with_usage() {
    let (server, provider) = setup(ProviderKind::Openai).await;
    server.push(Reply::text("Oslo."));

    events(&provider, conversation()).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, path(ProviderKind::Openai));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        request.body,
        json!({
            "model": "test-model",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 256,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Oslo and Bergen?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "call_b", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Bergen\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "12°C"},
                {"role": "tool", "tool_call_id": "call_b", "content": "9°C"},
                {"role": "user", "content": "Thanks. Which is warmer?"},
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }}],
        })
    );
}

#[tokio::test]
async fn no_tools_and_no_limit_are_left_out() {
    let (server, provider) = setup(ProviderKind::Openai).await;
    server.push(Reply::text("Hi."));
    let mut request = crate::ask("Hi");
    request.tools.clear();

    events(&provider, request).await;

    let body = &server.requests()[0].body;
    assert!(body.get("tools").is_none(), "{body}");
    assert!(body.get("max_tokens").is_none(), "{body}");
    for option in ["temperature", "top_p", "stop"] {
        assert!(body.get(option).is_none(), "{body}");
    }
}

#[tokio::test]
async fn sampling_options_are_top_level_fields() {
    let (server, provider) = setup(ProviderKind::Openai).await;
    server.push(Reply::text("Hi."));

    events(&provider, crate::sampled("Hi")).await;

    let body = &server.requests()[0].body;
    assert_eq!(body["temperature"], json!(0.2));
    assert_eq!(body["top_p"], json!(0.9));
    assert_eq!(body["stop"], json!(["END", "\n\n"]));
    assert_eq!(body["max_tokens"], json!(64));
}
