//! Model providers behind one streaming trait. Only this crate knows vendor LLM APIs.
//!
//! A provider turns a [`ModelRequest`] (provider-neutral messages and tool definitions) into a stream
//! of [`ModelEvent`]s: text deltas, complete tool calls, usage and the finish reason. Failures are
//! typed ([`ModelError`]) so the run loop can tell a retryable rate limit from a bad key. Providers are
//! configured by name ([`ProviderConfig`]) and looked up by model ref `provider/model` ([`Providers`]).
//!
//! The three wire protocols live in [`openai`], [`anthropic`] and [`ollama`]; what they share (the HTTP
//! client, retries before anything is streamed, status → error mapping) is in `http`, and the framing of
//! streamed bodies (server-sent events, NDJSON) with the per-chunk timeout is in `stream`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use agentd_core::run::{ChatMessage, ToolCall, Usage};
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod anthropic;
mod http;
pub mod ollama;
pub mod openai;
mod stream;

pub use anthropic::AnthropicProvider;
pub use ollama::OllamaProvider;
pub use openai::OpenAiProvider;

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

/// One model call.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRequest {
    /// The model name as the provider knows it (the part after `provider/`).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolDefinition>,
    /// Upper bound on output tokens, if any.
    pub max_tokens: Option<u32>,
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A complete answer.
    Stop,
    /// The output token limit was reached.
    Length,
    /// The model wants tools called.
    ToolCalls,
    /// Anything else the provider reported, verbatim.
    Other(String),
}

/// What a model stream yields. Tool calls are yielded whole, once their arguments are complete; text
/// arrives as deltas. A well-formed stream ends with exactly one `Finished`.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelEvent {
    Text(String),
    ToolCall(ToolCall),
    Usage(Usage),
    Finished(FinishReason),
}

/// A model's answer as a stream.
pub type ModelStream = BoxStream<'static, Result<ModelEvent, ModelError>>;

/// Why a model call failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The provider could not be reached.
    #[error("cannot reach the model provider: {0}")]
    Connect(String),
    /// The provider refused the credentials (401/403).
    #[error("the model provider refused the credentials: {0}")]
    Unauthorized(String),
    /// Too many requests (429); `retry_after` is the provider's hint.
    #[error("the model provider is rate limiting: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// The provider failed (5xx).
    #[error("the model provider failed with status {status}: {message}")]
    Server { status: u16, message: String },
    /// The provider rejected the request (another 4xx), e.g. an unknown model.
    #[error("the model provider rejected the request with status {status}: {message}")]
    Rejected { status: u16, message: String },
    /// The response could not be understood, or the stream broke off or reported an error mid-way.
    #[error("the model provider's response broke off or was malformed: {0}")]
    Malformed(String),
    /// No answer (or no next chunk) within the configured time.
    #[error("the model provider did not answer within {0:?}")]
    Timeout(Duration),
    /// The model ref names no configured provider, or the provider is misconfigured.
    #[error("{0}")]
    Config(String),
}

impl ModelError {
    /// Whether sending the same request again may succeed. The run loop (and the adapters, before any
    /// output was streamed) retry only these.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout(_)
        )
    }

    /// A stable snake_case name of the failure, used as `error_type` in `RunError` events.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Connect(_) => "provider_unreachable",
            Self::Unauthorized(_) => "provider_unauthorized",
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::Server { .. } => "provider_failed",
            Self::Rejected { .. } => "provider_rejected",
            Self::Malformed(_) => "provider_malformed_response",
            Self::Timeout(_) => "provider_timeout",
            Self::Config(_) => "provider_not_configured",
        }
    }
}

/// A model provider.
#[async_trait]
pub trait ModelProvider: Send + Sync {
    /// The provider's display name for events (`model_provider`), e.g. `OpenAI`.
    fn display_name(&self) -> &str;
    /// Starts a model call. Errors before the first event (connection, status) are returned here;
    /// errors later arrive in the stream.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError>;
}

/// Which wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI chat completions: OpenAI, vLLM, llama.cpp, LM Studio, Ollama's `/v1`, OpenRouter…
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Ollama's native `/api/chat`.
    Ollama,
}

/// One configured provider, as in `[providers.<name>]` of `agentd.toml` or
/// `AGENTD_PROVIDERS__<NAME>__KIND` and friends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1`, `https://api.anthropic.com`, `http://127.0.0.1:11434`.
    pub base_url: String,
    /// The environment variable holding the API key (read at start; the key itself is never stored in
    /// config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Seconds to wait for a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the response to start, and then between two chunks of a stream.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// How many times a failed call is retried (with exponential backoff, honouring `Retry-After`)
    /// while nothing has been streamed yet.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_connect_timeout() -> u64 {
    10
}

fn default_read_timeout() -> u64 {
    120
}

fn default_max_retries() -> u32 {
    2
}

/// The configured providers, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn ModelProvider>>,
}

impl Providers {
    /// No providers.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds every configured provider. The API key is read from the environment variable named by
    /// `api_key_env`, when set; a variable that is missing (or empty) is a [`ModelError::Config`] naming
    /// it, as is an unusable `base_url`.
    pub fn from_config(
        configs: &BTreeMap<String, ProviderConfig>,
    ) -> Result<Providers, ModelError> {
        let mut providers = Self::empty();
        for (name, config) in configs {
            let in_provider =
                |err: ModelError| ModelError::Config(format!("provider `{name}`: {err}"));
            let api_key = read_api_key(name, config)?;
            let provider: Arc<dyn ModelProvider> = match config.kind {
                ProviderKind::Openai => {
                    Arc::new(OpenAiProvider::new(config, api_key).map_err(in_provider)?)
                }
                ProviderKind::Anthropic => {
                    Arc::new(AnthropicProvider::new(config, api_key).map_err(in_provider)?)
                }
                ProviderKind::Ollama => {
                    Arc::new(OllamaProvider::new(config, api_key).map_err(in_provider)?)
                }
            };
            providers.insert(name.clone(), provider);
        }
        Ok(providers)
    }

    /// Adds (or replaces) a provider under `name`.
    pub fn insert(&mut self, name: impl Into<String>, provider: Arc<dyn ModelProvider>) {
        self.by_name.insert(name.into(), provider);
    }

    /// The configured provider names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Splits a model ref `provider/model` and finds the provider. A ref without `/` uses the only
    /// provider when exactly one is configured.
    pub fn resolve(&self, model_ref: &str) -> Result<(Arc<dyn ModelProvider>, String), ModelError> {
        if let Some((name, model)) = model_ref.split_once('/') {
            if let Some(provider) = self.by_name.get(name) {
                return Ok((provider.clone(), model.to_owned()));
            }
        }
        if self.by_name.len() == 1 && !model_ref.is_empty() {
            let provider = self.by_name.values().next().cloned().expect("one provider");
            let model = model_ref.split_once('/').map_or(model_ref, |(_, m)| m);
            if !model_ref.contains('/') {
                return Ok((provider, model.to_owned()));
            }
        }
        let names: Vec<&str> = self.names().collect();
        Err(ModelError::Config(format!(
            "model `{model_ref}` names no configured provider; configured: [{}] (write `provider/model`)",
            names.join(", ")
        )))
    }
}

/// The API key of a provider, from the environment variable its config names.
fn read_api_key(name: &str, config: &ProviderConfig) -> Result<Option<String>, ModelError> {
    let Some(variable) = &config.api_key_env else {
        return Ok(None);
    };
    match std::env::var(variable) {
        Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_owned())),
        Ok(_) => Err(ModelError::Config(format!(
            "provider `{name}`: the environment variable `{variable}` (api_key_env) is empty"
        ))),
        Err(std::env::VarError::NotPresent) => Err(ModelError::Config(format!(
            "provider `{name}`: the environment variable `{variable}` (api_key_env) is not set"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(ModelError::Config(format!(
            "provider `{name}`: the environment variable `{variable}` (api_key_env) is not valid UTF-8"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider that is never called: resolution only looks at names.
    struct Named(&'static str);

    #[async_trait]
    impl ModelProvider for Named {
        fn display_name(&self) -> &str {
            self.0
        }

        async fn stream(&self, _request: ModelRequest) -> Result<ModelStream, ModelError> {
            Err(ModelError::Config("not callable".into()))
        }
    }

    fn providers(names: &[&'static str]) -> Providers {
        let mut providers = Providers::empty();
        for name in names {
            providers.insert(*name, Arc::new(Named(name)));
        }
        providers
    }

    fn config(kind: ProviderKind, api_key_env: Option<&str>) -> ProviderConfig {
        ProviderConfig {
            kind,
            base_url: "http://127.0.0.1:9".into(),
            api_key_env: api_key_env.map(str::to_owned),
            connect_timeout_secs: 1,
            read_timeout_secs: 1,
            max_retries: 0,
        }
    }

    #[test]
    fn resolve_splits_provider_and_model() {
        let providers = providers(&["openai", "local"]);
        let (provider, model) = providers.resolve("local/llama3.2:3b").unwrap();
        assert_eq!(provider.display_name(), "local");
        assert_eq!(model, "llama3.2:3b");
        // Only the first `/` separates: OpenRouter-style models keep theirs.
        let (provider, model) = providers.resolve("openai/meta/llama-3").unwrap();
        assert_eq!(provider.display_name(), "openai");
        assert_eq!(model, "meta/llama-3");
    }

    #[test]
    fn resolve_without_a_provider_needs_exactly_one() {
        let (provider, model) = providers(&["only"]).resolve("gpt-4o").unwrap();
        assert_eq!(
            (provider.display_name(), model.as_str()),
            ("only", "gpt-4o")
        );

        let Err(error) = providers(&["a", "b"]).resolve("gpt-4o") else {
            panic!("two providers and no prefix must not resolve");
        };
        let ModelError::Config(message) = error else {
            panic!("expected a config error, got {error:?}");
        };
        assert!(message.contains("[a, b]"), "{message}");
        assert!(providers(&["only"]).resolve("other/gpt-4o").is_err());
        assert!(providers(&["only"]).resolve("").is_err());
        assert!(Providers::empty().resolve("x/y").is_err());
    }

    #[test]
    fn from_config_builds_each_kind_with_its_display_name() {
        let variable = "AGENTD_MODELS_UNIT_TEST_KEY_PRESENT";
        std::env::set_var(variable, "sk-unit");
        let configs = BTreeMap::from([
            (
                "oai".to_owned(),
                config(ProviderKind::Openai, Some(variable)),
            ),
            (
                "claude".to_owned(),
                config(ProviderKind::Anthropic, Some(variable)),
            ),
            ("local".to_owned(), config(ProviderKind::Ollama, None)),
        ]);
        let providers = Providers::from_config(&configs).unwrap();
        assert_eq!(
            providers.names().collect::<Vec<_>>(),
            vec!["claude", "local", "oai"]
        );
        let name = |model_ref: &str| {
            providers
                .resolve(model_ref)
                .unwrap()
                .0
                .display_name()
                .to_owned()
        };
        assert_eq!(name("oai/gpt-4o"), "OpenAI");
        assert_eq!(name("claude/claude-sonnet"), "Anthropic");
        assert_eq!(name("local/llama3"), "Ollama");
    }

    #[test]
    fn from_config_names_a_missing_key_variable_and_a_bad_url() {
        let variable = "AGENTD_MODELS_UNIT_TEST_KEY_MISSING";
        std::env::remove_var(variable);
        let configs = BTreeMap::from([(
            "oai".to_owned(),
            config(ProviderKind::Openai, Some(variable)),
        )]);
        let Err(ModelError::Config(message)) = Providers::from_config(&configs) else {
            panic!("a missing key variable must be a config error");
        };
        assert!(
            message.contains(variable) && message.contains("oai"),
            "{message}"
        );

        let mut bad_url = config(ProviderKind::Ollama, None);
        bad_url.base_url = "not a url".into();
        let configs = BTreeMap::from([("local".to_owned(), bad_url)]);
        let Err(ModelError::Config(message)) = Providers::from_config(&configs) else {
            panic!("a bad base_url must be a config error");
        };
        assert!(
            message.contains("not a url") && message.contains("local"),
            "{message}"
        );
    }
}
