//! The providers over real HTTP against `agentd_testkit::ScriptedModel`: what they send (the wire
//! request per protocol) and what they make of what comes back (events, typed failures, retries).
//!
//! Behaviour every protocol shares is written once and run per provider with [`per_provider!`]
//! (`common`, `failures`); the request shapes, which differ, have a module per protocol. Embeddings
//! and routes (fallback over several providers) have their own modules.

mod anthropic;
mod common;
mod embeddings;
mod failures;
mod ollama;
mod openai;
mod routes;
mod scripted_server;

use std::sync::Arc;
use std::time::Duration;

use agentd_models::{
    AnthropicProvider, ChatMessage, ModelError, ModelEvent, ModelProvider, ModelRequest,
    OllamaProvider, OpenAiProvider, ProviderConfig, ProviderKind, ToolCall, ToolDefinition,
};
use agentd_testkit::ScriptedModel;
use futures::StreamExt;
use serde_json::json;

/// The API key the providers under test send.
pub const KEY: &str = "sk-test-key";

/// Runs each named `async fn(ProviderKind)` as three tests, `<name>::openai`, `<name>::anthropic` and
/// `<name>::ollama`.
#[macro_export]
macro_rules! per_provider {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn openai() {
                    super::$name(agentd_models::ProviderKind::Openai).await
                }

                #[tokio::test]
                async fn anthropic() {
                    super::$name(agentd_models::ProviderKind::Anthropic).await
                }

                #[tokio::test]
                async fn ollama() {
                    super::$name(agentd_models::ProviderKind::Ollama).await
                }
            }
        )*
    };
}

/// Short timeouts so failure tests stay quick.
pub fn config(kind: ProviderKind, base_url: String) -> ProviderConfig {
    ProviderConfig {
        kind,
        base_url,
        api_key_env: None,
        path: None,
        connect_timeout_secs: 1,
        read_timeout_secs: 2,
        max_retries: 2,
        models: Vec::new(),
    }
}

/// The base URL a provider of `kind` is configured with for the scripted server.
pub fn base_url(kind: ProviderKind, server: &ScriptedModel) -> String {
    match kind {
        ProviderKind::Openai => format!("{}/v1", server.url()),
        ProviderKind::Anthropic | ProviderKind::Ollama => server.url(),
        ProviderKind::Local => unreachable!("the local provider has no base URL"),
    }
}

/// The path a provider of `kind` posts to.
pub fn path(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "/v1/chat/completions",
        ProviderKind::Anthropic => "/v1/messages",
        ProviderKind::Ollama => "/api/chat",
        ProviderKind::Local => unreachable!("the local provider makes no HTTP calls"),
    }
}

pub fn provider(config: &ProviderConfig, api_key: Option<&str>) -> Arc<dyn ModelProvider> {
    let api_key = api_key.map(str::to_owned);
    match config.kind {
        ProviderKind::Openai => Arc::new(OpenAiProvider::new(config, api_key).unwrap()),
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(config, api_key).unwrap()),
        ProviderKind::Ollama => Arc::new(OllamaProvider::new(config, api_key).unwrap()),
        ProviderKind::Local => unreachable!("the HTTP provider tests do not build local ones"),
    }
}

/// A scripted server and a provider of `kind` talking to it with [`KEY`].
pub async fn setup(kind: ProviderKind) -> (ScriptedModel, Arc<dyn ModelProvider>) {
    setup_with(kind, |_| {}).await
}

/// Like [`setup`], with the config adjusted first.
pub async fn setup_with(
    kind: ProviderKind,
    adjust: impl FnOnce(&mut ProviderConfig),
) -> (ScriptedModel, Arc<dyn ModelProvider>) {
    let server = ScriptedModel::start().await;
    let mut config = config(kind, base_url(kind, &server));
    adjust(&mut config);
    let provider = provider(&config, Some(KEY));
    (server, provider)
}

pub fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "The weather in a city.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        }),
    }
}

/// One user message, with the weather tool offered.
pub fn ask(text: &str) -> ModelRequest {
    ModelRequest {
        model: "test-model".into(),
        messages: vec![ChatMessage::User {
            content: text.into(),
        }],
        tools: vec![weather_tool()],
        ..ModelRequest::default()
    }
}

/// One user message with every sampling option set, and no tools.
pub fn sampled(text: &str) -> ModelRequest {
    ModelRequest {
        model: "test-model".into(),
        messages: vec![ChatMessage::User {
            content: text.into(),
        }],
        max_tokens: Some(64),
        temperature: Some(0.2),
        top_p: Some(0.9),
        stop: vec!["END".into(), "\n\n".into()],
        ..ModelRequest::default()
    }
}

pub fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

/// A conversation with every message kind: system, user, an assistant turn with two parallel tool
/// calls, both results, and a user follow-up.
pub fn conversation() -> ModelRequest {
    ModelRequest {
        model: "test-model".into(),
        messages: vec![
            ChatMessage::System {
                content: "Be brief.".into(),
            },
            ChatMessage::User {
                content: "Weather in Oslo and Bergen?".into(),
            },
            ChatMessage::Assistant {
                content: Some("Checking.".into()),
                tool_calls: vec![
                    call("call_a", "get_weather", r#"{"city":"Oslo"}"#),
                    call("call_b", "get_weather", r#"{"city":"Bergen"}"#),
                ],
            },
            ChatMessage::Tool {
                tool_call_id: "call_a".into(),
                content: "12°C".into(),
            },
            ChatMessage::Tool {
                tool_call_id: "call_b".into(),
                content: "9°C".into(),
            },
            ChatMessage::User {
                content: "Thanks. Which is warmer?".into(),
            },
        ],
        tools: vec![weather_tool()],
        max_tokens: Some(256),
        ..ModelRequest::default()
    }
}

/// Everything the stream of a successful start yields.
pub async fn collect(
    provider: &Arc<dyn ModelProvider>,
    request: ModelRequest,
) -> Vec<Result<ModelEvent, ModelError>> {
    let stream = provider.stream(request).await.expect("the call starts");
    tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends")
}

/// The events of a stream that must not fail.
pub async fn events(provider: &Arc<dyn ModelProvider>, request: ModelRequest) -> Vec<ModelEvent> {
    collect(provider, request)
        .await
        .into_iter()
        .map(|item| item.expect("no error in the stream"))
        .collect()
}
