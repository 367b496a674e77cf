//! Routes over real HTTP: two scripted servers behind two providers (`a` speaking OpenAI, `b` Ollama)
//! and the route `fast = ["a/big", "b/small"]`. A retryable failure of `a` hands over to `b`; a final
//! one is the answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use agentd_models::{
    EmbedRequest, ModelError, ModelEvent, ModelProvider, ProviderKind, Providers, RouteConfig,
};
use agentd_testkit::model_server::scripted_embedding;
use agentd_testkit::{Reply, ScriptedModel};

use crate::{ask, base_url, config, events};

struct Route {
    first: ScriptedModel,
    second: ScriptedModel,
    provider: Arc<dyn ModelProvider>,
}

/// The route `fast`, resolved; neither provider retries, so each failure is one request.
async fn route() -> Route {
    let first = ScriptedModel::start().await;
    let second = ScriptedModel::start().await;
    let mut a = config(ProviderKind::Openai, base_url(ProviderKind::Openai, &first));
    a.max_retries = 0;
    let mut b = config(
        ProviderKind::Ollama,
        base_url(ProviderKind::Ollama, &second),
    );
    b.max_retries = 0;
    let providers = BTreeMap::from([("a".to_owned(), a), ("b".to_owned(), b)]);
    let routes = BTreeMap::from([(
        "fast".to_owned(),
        RouteConfig {
            targets: vec!["a/big".into(), "b/small".into()],
        },
    )]);
    let providers = Providers::from_config(&providers)
        .unwrap()
        .with_routes(&routes)
        .unwrap();
    let (provider, model) = providers.resolve("fast").unwrap();
    assert_eq!(model, "fast");
    Route {
        first,
        second,
        provider,
    }
}

/// The route's request: `ask`, with the route's name as the model.
fn fast(text: &str) -> agentd_models::ModelRequest {
    let mut request = ask(text);
    request.model = "fast".into();
    request
}

async fn a_retryable_status_hands_over_to_the_next_target(status: u16) {
    let route = route().await;
    route.first.push(Reply::status(status, "not now"));
    route.first.push(Reply::text("a retry of a would get this"));
    route.second.push(Reply::text("From b"));

    let events = events(&route.provider, fast("Hi")).await;

    assert_eq!(events[0], ModelEvent::Text("From".into()));
    let (first, second) = (route.first.requests(), route.second.requests());
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body["model"], "big");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].body["model"], "small");
    assert_eq!(route.provider.display_name(), "OpenAI");
}

#[tokio::test]
async fn rate_limited_first_target_falls_back() {
    a_retryable_status_hands_over_to_the_next_target(429).await;
}

#[tokio::test]
async fn unavailable_first_target_falls_back() {
    a_retryable_status_hands_over_to_the_next_target(503).await;
}

async fn a_final_status_is_returned_without_trying_the_next(status: u16, expected: ModelError) {
    let route = route().await;
    route.first.push(Reply::status(status, "no"));
    route.second.push(Reply::text("never asked"));

    let error = route.provider.stream(fast("Hi")).await.err();

    assert_eq!(error, Some(expected));
    assert_eq!(route.first.requests().len(), 1);
    assert!(route.second.requests().is_empty());
}

#[tokio::test]
async fn unauthorized_first_target_is_the_answer() {
    a_final_status_is_returned_without_trying_the_next(401, ModelError::Unauthorized("no".into()))
        .await;
}

#[tokio::test]
async fn rejected_request_is_the_answer() {
    let rejected = ModelError::Rejected {
        status: 400,
        message: "no".into(),
    };
    a_final_status_is_returned_without_trying_the_next(400, rejected).await;
}

#[tokio::test]
async fn when_every_target_fails_the_last_error_is_returned() {
    let route = route().await;
    route.first.push(Reply::status(503, "a is down"));
    route.second.push(Reply::status(429, "b is busy"));

    let error = route.provider.stream(fast("Hi")).await.err();

    assert_eq!(
        error,
        Some(ModelError::RateLimited {
            retry_after: None,
            message: "b is busy".into()
        })
    );
    assert_eq!(route.first.requests().len(), 1);
    assert_eq!(route.second.requests().len(), 1);
}

#[tokio::test]
async fn embeddings_fall_back_too() {
    let route = route().await;
    route.first.fail_embeddings(Some((503, "a is down")));
    let request = EmbedRequest {
        model: "fast".into(),
        input: vec!["one two".into()],
        dimensions: None,
    };

    let embeddings = route.provider.embed(request).await.unwrap();

    assert_eq!(embeddings.vectors, vec![scripted_embedding("one two")]);
    assert_eq!(route.first.requests()[0].body["model"], "big");
    let second = route.second.requests();
    assert_eq!(second[0].path, "/api/embed");
    assert_eq!(second[0].body["model"], "small");

    route.first.fail_embeddings(Some((401, "bad key")));
    let error = route
        .provider
        .embed(EmbedRequest {
            model: "fast".into(),
            input: vec!["x".into()],
            dimensions: None,
        })
        .await
        .unwrap_err();
    assert_eq!(error, ModelError::Unauthorized("bad key".into()));
    assert_eq!(route.second.requests().len(), 1);
}
