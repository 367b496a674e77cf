//! Routes: a model name that stands for an ordered list of `provider/model` targets, tried in turn.
//!
//! A route is a [`ModelProvider`] of its own ([`FallbackProvider`]), so callers resolve and call it like
//! any provider. Each target is called with its own model name; the request's is ignored. A target that
//! fails before answering (the `Err` of `stream()`/`embed()`, after that provider's own retries) with a
//! retryable error ([`ModelError::is_retryable`]: unreachable, rate limited, 5xx, timeout) hands over
//! to the next; any other error (a bad key, a rejected request) is the route's answer at once, since
//! the next target would most likely reject the same request. Once a stream has started the route is
//! committed to that target: a break mid-stream is the caller's to handle.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{EmbedRequest, Embeddings, ModelError, ModelProvider, ModelRequest, ModelStream};

/// One configured route, as in `[routes.<name>]` of `agentd.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The `provider/model` refs to try, in order.
    pub targets: Vec<String>,
}

/// One target of a route: a configured provider and the model to call on it.
struct Target {
    /// The ref as configured, `provider/model`, for log lines.
    reference: String,
    model: String,
    provider: Arc<dyn ModelProvider>,
}

/// A route as a provider: tries its targets in order (see the module documentation).
pub(crate) struct FallbackProvider {
    route: String,
    /// Never empty.
    targets: Vec<Target>,
}

impl FallbackProvider {
    /// The route `name` over the configured `providers`. Fails when the route has no targets or a
    /// target is not `provider/model` of a configured provider.
    pub(crate) fn new(
        name: &str,
        config: &RouteConfig,
        providers: &BTreeMap<String, Arc<dyn ModelProvider>>,
    ) -> Result<Self, ModelError> {
        if name.trim().is_empty() {
            return Err(ModelError::Config("a route needs a name".into()));
        }
        if config.targets.is_empty() {
            return Err(ModelError::Config(format!(
                "route `{name}` has no targets (write `targets = [\"provider/model\", …]`)"
            )));
        }
        let targets = config
            .targets
            .iter()
            .map(|reference| target(name, reference, providers))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            route: name.to_owned(),
            targets,
        })
    }

    /// Calls each target in turn until one answers; the last failure when none does.
    async fn first_answer<'a, T, F, Fut>(&'a self, call: F) -> Result<T, ModelError>
    where
        F: Fn(&'a Target) -> Fut,
        Fut: Future<Output = Result<T, ModelError>>,
    {
        let (last, earlier) = self.targets.split_last().expect("a route has targets");
        for target in earlier {
            let error = match call(target).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            if !error.is_retryable() {
                return Err(error);
            }
            tracing::debug!(
                route = %self.route,
                target = %target.reference,
                error = %error,
                "route target failed before answering; trying the next"
            );
        }
        call(last).await
    }
}

/// Parses one `provider/model` target of route `route`.
fn target(
    route: &str,
    reference: &str,
    providers: &BTreeMap<String, Arc<dyn ModelProvider>>,
) -> Result<Target, ModelError> {
    let configured = || providers.keys().cloned().collect::<Vec<_>>().join(", ");
    let Some((name, model)) = reference.split_once('/').filter(|(_, m)| !m.is_empty()) else {
        return Err(ModelError::Config(format!(
            "route `{route}`: target `{reference}` is not `provider/model`"
        )));
    };
    let Some(provider) = providers.get(name) else {
        return Err(ModelError::Config(format!(
            "route `{route}`: target `{reference}` names no configured provider; configured: [{}]",
            configured()
        )));
    };
    Ok(Target {
        reference: reference.to_owned(),
        model: model.to_owned(),
        provider: provider.clone(),
    })
}

#[async_trait]
impl ModelProvider for FallbackProvider {
    /// The first target's provider: events name the provider the route prefers.
    fn display_name(&self) -> &str {
        self.targets[0].provider.display_name()
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        self.first_answer(|target| {
            let request = ModelRequest {
                model: target.model.clone(),
                ..request.clone()
            };
            target.provider.stream(request)
        })
        .await
    }

    async fn embed(&self, request: EmbedRequest) -> Result<Embeddings, ModelError> {
        self.first_answer(|target| {
            let request = EmbedRequest {
                model: target.model.clone(),
                ..request.clone()
            };
            target.provider.embed(request)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{FinishReason, ModelEvent};

    /// A provider that answers from a script of results and records the models it was called with.
    struct Scripted {
        name: &'static str,
        answers: Mutex<Vec<Result<(), ModelError>>>,
        models: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(name: &'static str, answers: Vec<Result<(), ModelError>>) -> Arc<Self> {
            Arc::new(Self {
                name,
                answers: Mutex::new(answers),
                models: Mutex::new(Vec::new()),
            })
        }

        fn answer(&self, model: String) -> Result<(), ModelError> {
            self.models.lock().unwrap().push(model);
            self.answers.lock().unwrap().remove(0)
        }

        fn models(&self) -> Vec<String> {
            self.models.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl ModelProvider for Scripted {
        fn display_name(&self) -> &str {
            self.name
        }

        async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
            self.answer(request.model)?;
            let events = vec![Ok(ModelEvent::Finished(FinishReason::Stop))];
            Ok(Box::pin(futures::stream::iter(events)))
        }

        async fn embed(&self, request: EmbedRequest) -> Result<Embeddings, ModelError> {
            self.answer(request.model)?;
            Ok(Embeddings {
                vectors: vec![vec![1.0]; request.input.len()],
                prompt_tokens: 1,
            })
        }
    }

    fn route(targets: &[&str], providers: &[(&str, Arc<Scripted>)]) -> FallbackProvider {
        let providers = providers
            .iter()
            .map(|(name, provider)| {
                let provider: Arc<dyn ModelProvider> = provider.clone();
                ((*name).to_owned(), provider)
            })
            .collect();
        let config = RouteConfig {
            targets: targets.iter().map(|target| (*target).to_owned()).collect(),
        };
        FallbackProvider::new("fast", &config, &providers).unwrap()
    }

    fn overloaded() -> ModelError {
        ModelError::Server {
            status: 503,
            message: "overloaded".into(),
        }
    }

    #[tokio::test]
    async fn a_retryable_failure_hands_over_and_each_target_gets_its_own_model() {
        let first = Scripted::new("First", vec![Err(overloaded()), Err(overloaded())]);
        let second = Scripted::new("Second", vec![Ok(()), Ok(())]);
        let route = route(
            &["a/big", "b/small"],
            &[("a", first.clone()), ("b", second.clone())],
        );

        let request = ModelRequest {
            model: "fast".into(),
            ..ModelRequest::default()
        };
        assert!(route.stream(request).await.is_ok());
        let embedded = route
            .embed(EmbedRequest {
                model: "fast".into(),
                input: vec!["x".into()],
                dimensions: None,
            })
            .await
            .unwrap();

        assert_eq!(embedded.vectors.len(), 1);
        assert_eq!(first.models(), ["big", "big"]);
        assert_eq!(second.models(), ["small", "small"]);
        assert_eq!(route.display_name(), "First");
    }

    #[tokio::test]
    async fn a_final_failure_is_returned_at_once_and_the_last_failure_when_all_fail() {
        let refused = ModelError::Unauthorized("bad key".into());
        let first = Scripted::new("First", vec![Err(refused.clone()), Err(overloaded())]);
        let limited = ModelError::RateLimited {
            retry_after: None,
            message: "slow down".into(),
        };
        let second = Scripted::new("Second", vec![Err(limited.clone())]);
        let route = route(
            &["a/big", "b/small"],
            &[("a", first.clone()), ("b", second.clone())],
        );

        let error = route.stream(ModelRequest::default()).await.err();
        assert_eq!(error, Some(refused));
        assert!(second.models().is_empty());

        let error = route.stream(ModelRequest::default()).await.err();
        assert_eq!(error, Some(limited));
        assert_eq!(second.models(), ["small"]);
    }
}
