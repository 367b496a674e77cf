//! Embeddings over real HTTP: the request each API gets, vectors in input order, usage, typed
//! failures through the same transport as chat calls, and Anthropic's lack of an embeddings API.

use agentd_models::{EmbedRequest, ModelError, ProviderKind};
use agentd_testkit::model_server::{scripted_embedding, EMBEDDING_DIMENSIONS};
use agentd_testkit::Reply;
use serde_json::json;

use crate::{setup, setup_with, KEY};

/// Three inputs: the first two differ only in case, so the scripted server embeds them alike.
fn three_texts(dimensions: Option<u32>) -> EmbedRequest {
    EmbedRequest {
        model: "embed-model".into(),
        input: vec![
            "Hello world".into(),
            "hello WORLD".into(),
            "something else entirely".into(),
        ],
        dimensions,
    }
}

/// The path a provider of `kind` posts embeddings to.
fn embed_path(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "/v1/embeddings",
        ProviderKind::Ollama => "/api/embed",
        ProviderKind::Anthropic => unreachable!("Anthropic has no embeddings API"),
        ProviderKind::Local => unreachable!("the local provider makes no HTTP calls"),
    }
}

async fn vectors_come_in_input_order_with_usage(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    // Embeddings leave the chat script alone.
    server.push(Reply::text("for a chat call"));

    let request = three_texts(None);
    let embeddings = provider.embed(request.clone()).await.unwrap();

    let expected: Vec<Vec<f32>> = request
        .input
        .iter()
        .map(|text| scripted_embedding(text))
        .collect();
    assert_eq!(embeddings.vectors, expected);
    assert_eq!(embeddings.vectors[0], embeddings.vectors[1]);
    assert_ne!(embeddings.vectors[0], embeddings.vectors[2]);
    assert!(embeddings
        .vectors
        .iter()
        .all(|vector| vector.len() == EMBEDDING_DIMENSIONS));
    // 2 + 2 + 3 words.
    assert_eq!(embeddings.prompt_tokens, 7);

    let again = provider.embed(request).await.unwrap();
    assert_eq!(again, embeddings, "the same texts embed the same");
    assert_eq!(server.pending(), 1);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, embed_path(kind));
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        requests[0].body,
        json!({
            "model": "embed-model",
            "input": ["Hello world", "hello WORLD", "something else entirely"],
        })
    );
}

#[tokio::test]
async fn openai_vectors_come_in_input_order_with_usage() {
    vectors_come_in_input_order_with_usage(ProviderKind::Openai).await;
}

#[tokio::test]
async fn ollama_vectors_come_in_input_order_with_usage() {
    vectors_come_in_input_order_with_usage(ProviderKind::Ollama).await;
}

#[tokio::test]
async fn dimensions_are_sent_when_set() {
    for kind in [ProviderKind::Openai, ProviderKind::Ollama] {
        let (server, provider) = setup(kind).await;

        provider.embed(three_texts(Some(8))).await.unwrap();

        assert_eq!(
            server.requests()[0].body["dimensions"],
            json!(8),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn anthropic_has_no_embeddings() {
    let (server, provider) = setup(ProviderKind::Anthropic).await;

    let error = provider.embed(three_texts(None)).await.unwrap_err();

    assert_eq!(
        error,
        ModelError::Unsupported("Anthropic has no embeddings API".into())
    );
    assert_eq!(error.error_type(), "provider_unsupported");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn failure_statuses_map_to_typed_errors() {
    for kind in [ProviderKind::Openai, ProviderKind::Ollama] {
        let (server, provider) = setup(kind).await;

        server.fail_embeddings(Some((401, "invalid api key")));
        let error = provider.embed(three_texts(None)).await.unwrap_err();
        assert_eq!(
            error,
            ModelError::Unauthorized("invalid api key".into()),
            "{kind:?}"
        );
        assert_eq!(server.requests().len(), 1, "a refused key is not retried");

        server.fail_embeddings(Some((400, "input too long")));
        let error = provider.embed(three_texts(None)).await.unwrap_err();
        assert_eq!(
            error,
            ModelError::Rejected {
                status: 400,
                message: "input too long".into()
            },
            "{kind:?}"
        );

        server.fail_embeddings(None);
        assert!(provider.embed(three_texts(None)).await.is_ok());
    }
}

#[tokio::test]
async fn server_errors_are_retried_up_to_max_retries() {
    for kind in [ProviderKind::Openai, ProviderKind::Ollama] {
        let (server, provider) = setup_with(kind, |config| config.max_retries = 1).await;
        server.fail_embeddings(Some((503, "overloaded")));

        let error = provider.embed(three_texts(None)).await.unwrap_err();

        assert_eq!(
            error,
            ModelError::Server {
                status: 503,
                message: "overloaded".into()
            },
            "{kind:?}"
        );
        assert_eq!(server.requests().len(), 2, "{kind:?}");
    }
}
