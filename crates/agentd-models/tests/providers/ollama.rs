//! The `/api/chat` request: arguments as objects, `role: "tool"` results naming their tool, options.

use agentd_models::ProviderKind;
use agentd_testkit::Reply;
use serde_json::json;

use crate::{base_url, config, conversation, events, path, provider};

#[tokio::test]
async fn request_sends_arguments_as_objects_and_names_tools_in_results() {
    let server = agentd_testkit::ScriptedModel::start().await;
    // A local Ollama has no key: no authorization header.
    let provider = provider(
        &config(
            ProviderKind::Ollama,
            base_url(ProviderKind::Ollama, &server),
        ),
        None,
    );
    server.push(Reply::text("Oslo."));

    events(&provider, conversation()).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, path(ProviderKind::Ollama));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.body,
        json!({
            "model": "test-model",
            "stream": true,
            "options": {"num_predict": 256},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Oslo and Bergen?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_a", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                    {"id": "call_b", "function": {"name": "get_weather", "arguments": {"city": "Bergen"}}},
                ]},
                {"role": "tool", "tool_call_id": "call_a", "tool_name": "get_weather", "content": "12°C"},
                {"role": "tool", "tool_call_id": "call_b", "tool_name": "get_weather", "content": "9°C"},
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
async fn a_key_is_sent_as_bearer_for_a_proxied_ollama() {
    let (server, provider) = crate::setup(ProviderKind::Ollama).await;
    server.push(Reply::text("Hi."));

    events(&provider, crate::ask("Hi")).await;

    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {}", crate::KEY).as_str())
    );
}

#[tokio::test]
async fn sampling_options_go_into_options_with_the_output_limit() {
    let (server, provider) = crate::setup(ProviderKind::Ollama).await;
    server.push(Reply::text("Hi."));

    events(&provider, crate::sampled("Hi")).await;

    let body = &server.requests()[0].body;
    assert_eq!(
        body["options"],
        json!({"num_predict": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["END", "\n\n"]})
    );
    assert!(body.get("temperature").is_none(), "{body}");
}

#[tokio::test]
async fn no_options_are_sent_when_none_are_set() {
    let (server, provider) = crate::setup(ProviderKind::Ollama).await;
    server.push(Reply::text("Hi."));

    events(&provider, crate::ask("Hi")).await;

    let body = &server.requests()[0].body;
    assert!(body.get("options").is_none(), "{body}");
}
