//! Model providers behind one streaming trait. Only this crate knows vendor LLM APIs.
//!
//! A provider turns a [`ModelRequest`] (provider-neutral messages, tool definitions and sampling
//! options) into a stream of [`ModelEvent`]s: text deltas, complete tool calls, usage and the finish
//! reason; providers whose API has one also turn an [`EmbedRequest`] into [`Embeddings`]. Failures are
//! typed ([`ModelError`]) so the run loop can tell a retryable rate limit from a bad key. Providers are
//! configured by name ([`ProviderConfig`], with the models each one serves) and looked up by model ref
//! `provider/model` or by the name of a route, an ordered list of fallback targets ([`RouteConfig`]),
//! in [`Providers`], which also lists every configured model and route as a catalog ([`CatalogModel`]).
//!
//! The three wire protocols live in [`openai`], [`anthropic`] and [`ollama`]; what they share (the HTTP
//! client, retries before anything is streamed, status → error mapping) is in `http`, and the framing of
//! streamed bodies (server-sent events, NDJSON) with the per-chunk timeout is in `stream`. Routes, which
//! try their targets in order, are in `route`.

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
#[cfg(feature = "local")]
pub mod local;
pub mod ollama;
pub mod openai;
mod route;
mod stream;

pub use anthropic::AnthropicProvider;
#[cfg(feature = "local")]
pub use local::LocalProvider;
pub use ollama::OllamaProvider;
pub use openai::OpenAiProvider;
pub use route::RouteConfig;

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

/// One model call. Options left at their default (`None`, empty) are not sent, so the provider's own
/// defaults apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelRequest {
    /// The model name as the provider knows it (the part after `provider/`).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolDefinition>,
    /// Upper bound on output tokens, if any.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling: only the tokens within this probability mass are considered.
    pub top_p: Option<f32>,
    /// Sequences at which the model stops generating.
    pub stop: Vec<String>,
}

/// One embeddings call: a vector for each input text.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedRequest {
    /// The model name as the provider knows it (the part after `provider/`).
    pub model: String,
    pub input: Vec<String>,
    /// How many dimensions the vectors should have, for models that can shorten them.
    pub dimensions: Option<u32>,
}

/// The answer to an [`EmbedRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// One vector per input text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// The input tokens the provider counted (0 when it reports none).
    pub prompt_tokens: u64,
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
    /// The provider's API has no such call, e.g. embeddings on Anthropic.
    #[error("{0}")]
    Unsupported(String),
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
            Self::Unsupported(_) => "provider_unsupported",
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

    /// Embeds each input text. Providers without an embeddings API keep this default, which fails
    /// with [`ModelError::Unsupported`].
    async fn embed(&self, _request: EmbedRequest) -> Result<Embeddings, ModelError> {
        Err(ModelError::Unsupported(format!(
            "{} has no embeddings API",
            self.display_name()
        )))
    }
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
    /// Sentence embeddings computed in-process from a model folder (`path`), e.g. all-MiniLM-L6-v2.
    /// Embeddings only; needs the `local` cargo feature (on by default).
    Local,
}

/// One configured provider, as in `[providers.<name>]` of `agentd.toml` or
/// `AGENTD_PROVIDERS__<NAME>__KIND` and friends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1`, `https://api.anthropic.com`, `http://127.0.0.1:11434`.
    /// Required by every kind but `local`.
    #[serde(default)]
    pub base_url: String,
    /// The model folder of a `local` provider (`config.json`, `model.safetensors`,
    /// `tokenizer.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
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
    /// The models this provider serves, by the name it knows them under, for the model catalog
    /// ([`Providers::catalog`]). Models not listed can still be called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
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

/// One entry of the model catalog ([`Providers::catalog`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogModel {
    /// The model ref to call it by: `provider/model`, or a route's name.
    pub id: String,
    /// The provider's name, or `agentd` for a route.
    pub owned_by: String,
}

/// What [`CatalogModel::owned_by`] says of a route.
const ROUTE_OWNER: &str = "agentd";

/// The configured providers, by name, with the models each one serves, and the routes over them.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn ModelProvider>>,
    /// The configured `models` of each provider, by provider name.
    models: BTreeMap<String, Vec<String>>,
    /// The fallback provider of each route, by route name.
    routes: BTreeMap<String, Arc<dyn ModelProvider>>,
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
                ProviderKind::Local => local_provider(config).map_err(in_provider)?,
            };
            providers.insert(name.clone(), provider);
            providers.models.insert(name.clone(), config.models.clone());
        }
        Ok(providers)
    }

    /// Adds the routes, each a fallback over its targets (a route of an existing name replaces it).
    /// A route without targets, or with a target that is not `provider/model` of a configured
    /// provider, is a [`ModelError::Config`] naming the route and the target. Routes keep the
    /// providers configured now.
    pub fn with_routes(
        mut self,
        routes: &BTreeMap<String, RouteConfig>,
    ) -> Result<Providers, ModelError> {
        for (name, config) in routes {
            let route = route::FallbackProvider::new(name, config, &self.by_name)?;
            self.routes.insert(name.clone(), Arc::new(route));
        }
        Ok(self)
    }

    /// Adds (or replaces) a provider under `name`, serving no listed models.
    pub fn insert(&mut self, name: impl Into<String>, provider: Arc<dyn ModelProvider>) {
        let name = name.into();
        self.models.remove(&name);
        self.by_name.insert(name, provider);
    }

    /// The configured provider names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Every configured model (`provider/model`, owned by the provider) and every route (by its name,
    /// owned by `agentd`), sorted by id. A route named like a model hides the model, as in
    /// [`resolve`](Self::resolve).
    pub fn catalog(&self) -> Vec<CatalogModel> {
        let mut by_id = BTreeMap::new();
        for (provider, models) in &self.models {
            for model in models {
                let id = format!("{provider}/{model}");
                by_id.insert(id, provider.as_str());
            }
        }
        for route in self.routes.keys() {
            by_id.insert(route.clone(), ROUTE_OWNER);
        }
        by_id
            .into_iter()
            .map(|(id, owned_by)| CatalogModel {
                id,
                owned_by: owned_by.to_owned(),
            })
            .collect()
    }

    /// Finds the provider for a model ref and the model name to call it with. A route of exactly that
    /// name comes first: its fallback provider and the route name (which that provider ignores, each
    /// target having its own model). Otherwise the ref is split as `provider/model`; a ref without `/`
    /// uses the only provider when exactly one is configured.
    pub fn resolve(&self, model_ref: &str) -> Result<(Arc<dyn ModelProvider>, String), ModelError> {
        if let Some(route) = self.routes.get(model_ref) {
            return Ok((route.clone(), model_ref.to_owned()));
        }
        if let Some((name, model)) = model_ref.split_once('/') {
            if let Some(provider) = self.by_name.get(name) {
                return Ok((provider.clone(), model.to_owned()));
            }
        }
        if self.by_name.len() == 1 && !model_ref.is_empty() && !model_ref.contains('/') {
            let provider = self.by_name.values().next().cloned().expect("one provider");
            return Ok((provider, model_ref.to_owned()));
        }
        let names: Vec<&str> = self.names().collect();
        let mut message = format!(
            "model `{model_ref}` names no configured provider; configured: [{}] (write `provider/model`)",
            names.join(", ")
        );
        if !self.routes.is_empty() {
            let routes: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            message.push_str(&format!(" or a route: [{}]", routes.join(", ")));
        }
        Err(ModelError::Config(message))
    }
}

/// The API key of a provider, from the environment variable its config names.
/// A `local` provider from its model folder.
#[cfg(feature = "local")]
fn local_provider(config: &ProviderConfig) -> Result<Arc<dyn ModelProvider>, ModelError> {
    let path = config.path.as_deref().ok_or_else(|| {
        ModelError::Config("a `local` provider needs `path`, its model folder".to_owned())
    })?;
    Ok(Arc::new(LocalProvider::new(path, &config.models)?))
}

#[cfg(not(feature = "local"))]
fn local_provider(_: &ProviderConfig) -> Result<Arc<dyn ModelProvider>, ModelError> {
    Err(ModelError::Config(
        "this agentd was built without the `local` feature, so it cannot run local models"
            .to_owned(),
    ))
}

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
            path: None,
            connect_timeout_secs: 1,
            read_timeout_secs: 1,
            max_retries: 0,
            models: Vec::new(),
        }
    }

    fn routes(routes: &[(&str, &[&str])]) -> BTreeMap<String, RouteConfig> {
        routes
            .iter()
            .map(|(name, targets)| {
                let targets = targets.iter().map(|target| (*target).to_owned()).collect();
                ((*name).to_owned(), RouteConfig { targets })
            })
            .collect()
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

    #[test]
    fn a_route_resolves_by_its_exact_name_to_its_first_targets_provider() {
        let providers = providers(&["openai", "local"])
            .with_routes(&routes(&[
                ("fast", &["local/llama3.2", "openai/gpt-4o-mini"]),
                ("openai/gpt-4o", &["local/llama3.2"]),
            ]))
            .unwrap();

        let (provider, model) = providers.resolve("fast").unwrap();
        assert_eq!((provider.display_name(), model.as_str()), ("local", "fast"));
        // A route named like a model ref wins over the provider it names.
        let (provider, _) = providers.resolve("openai/gpt-4o").unwrap();
        assert_eq!(provider.display_name(), "local");
        let (provider, model) = providers.resolve("openai/gpt-4o-mini").unwrap();
        assert_eq!(
            (provider.display_name(), model.as_str()),
            ("openai", "gpt-4o-mini")
        );

        let Err(ModelError::Config(message)) = providers.resolve("slow") else {
            panic!("an unknown name must not resolve");
        };
        assert!(message.contains("[fast, openai/gpt-4o]"), "{message}");
    }

    #[test]
    fn with_routes_names_the_route_and_the_bad_target() {
        let check = |routes: BTreeMap<String, RouteConfig>, expected: &[&str]| {
            let Err(ModelError::Config(message)) = providers(&["local"]).with_routes(&routes)
            else {
                panic!("{routes:?} must be a config error");
            };
            for part in expected {
                assert!(message.contains(part), "{message} lacks {part}");
            }
        };
        check(routes(&[("empty", &[])]), &["route `empty`", "no targets"]);
        check(
            routes(&[("fast", &["local/a", "remote/b"])]),
            &["route `fast`", "`remote/b`", "[local]"],
        );
        check(
            routes(&[("bare", &["llama3"])]),
            &["route `bare`", "`llama3` is not `provider/model`"],
        );
        check(
            routes(&[("half", &["local/"])]),
            &["route `half`", "`local/` is not `provider/model`"],
        );
    }

    #[test]
    fn the_catalog_lists_configured_models_and_routes_sorted_by_id() {
        let mut configs = BTreeMap::new();
        let mut local = config(ProviderKind::Ollama, None);
        local.models = vec!["qwen3".into(), "llama3.2".into()];
        configs.insert("local".to_owned(), local);
        let mut openai = config(ProviderKind::Openai, None);
        openai.models = vec!["gpt-4o".into()];
        configs.insert("openai".to_owned(), openai);
        configs.insert("bare".to_owned(), config(ProviderKind::Openai, None));
        let providers = Providers::from_config(&configs)
            .unwrap()
            .with_routes(&routes(&[("fast", &["local/qwen3", "openai/gpt-4o"])]))
            .unwrap();

        let entry = |id: &str, owned_by: &str| CatalogModel {
            id: id.into(),
            owned_by: owned_by.into(),
        };
        assert_eq!(
            providers.catalog(),
            vec![
                entry("fast", "agentd"),
                entry("local/llama3.2", "local"),
                entry("local/qwen3", "local"),
                entry("openai/gpt-4o", "openai"),
            ]
        );
        assert!(Providers::empty().catalog().is_empty());
    }

    #[test]
    fn models_are_optional_in_config_and_left_out_when_empty() {
        let parsed: ProviderConfig =
            serde_json::from_value(serde_json::json!({"kind": "ollama", "base_url": "http://x"}))
                .unwrap();
        assert!(parsed.models.is_empty());
        let serialized = serde_json::to_value(&parsed).unwrap();
        assert!(serialized.get("models").is_none(), "{serialized}");
        let route: Result<RouteConfig, _> =
            serde_json::from_value(serde_json::json!({"targets": [], "fallback": true}));
        assert!(route.is_err(), "unknown route fields are refused");
    }

    #[tokio::test]
    async fn embeddings_are_unsupported_by_default() {
        let error = Named("Anthropic")
            .embed(EmbedRequest {
                model: "claude".into(),
                input: vec!["hi".into()],
                dimensions: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            error,
            ModelError::Unsupported("Anthropic has no embeddings API".into())
        );
        assert!(!error.is_retryable());
        assert_eq!(error.error_type(), "provider_unsupported");
    }
}
