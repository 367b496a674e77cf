//! Typed failures, retries before anything is streamed, and none after.

use std::time::{Duration, Instant};

use agentd_models::{ModelError, ModelEvent, ProviderKind};
use agentd_testkit::Reply;
use futures::StreamExt;

use crate::{ask, base_url, collect, config, events, provider, setup, setup_with, KEY};

crate::per_provider!(
    connection_refused_is_connect,
    unauthorized_is_not_retried,
    rejected_request_is_not_retried,
    rate_limit_waits_for_retry_after_then_succeeds,
    server_errors_are_retried_then_succeed,
    server_errors_beyond_max_retries_fail,
    mid_stream_break_is_malformed_and_not_retried,
    mid_stream_error_is_malformed,
    no_response_times_out,
    stalled_stream_times_out,
);

async fn connection_refused_is_connect(kind: ProviderKind) {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let server_url = format!("http://127.0.0.1:{port}");
    let mut config = config(kind, server_url.clone());
    if kind == ProviderKind::Openai {
        config.base_url = format!("{server_url}/v1");
    }
    config.max_retries = 1;
    let provider = provider(&config, Some(KEY));

    let error = provider.stream(ask("Hi")).await.err().expect("no server");

    assert!(matches!(error, ModelError::Connect(_)), "{error:?}");
    assert_eq!(error.error_type(), "provider_unreachable");
}

async fn unauthorized_is_not_retried(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    server.push(Reply::status(401, "invalid x-api-key"));
    server.push(Reply::text("never sent"));

    let error = provider.stream(ask("Hi")).await.err().expect("refused");

    assert_eq!(error, ModelError::Unauthorized("invalid x-api-key".into()));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.pending(), 1);
}

async fn rejected_request_is_not_retried(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    server.push(Reply::status(404, "model 'nope' not found"));

    let error = provider.stream(ask("Hi")).await.err().expect("rejected");

    assert_eq!(
        error,
        ModelError::Rejected {
            status: 404,
            message: "model 'nope' not found".into()
        }
    );
    assert_eq!(server.requests().len(), 1);
}

async fn rate_limit_waits_for_retry_after_then_succeeds(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    server.push(Reply::status(429, "slow down").retry_after(1));
    server.push(Reply::text("Hello"));
    let started = Instant::now();

    let events = events(&provider, ask("Hi")).await;

    let waited = started.elapsed();
    assert_eq!(events[0], ModelEvent::Text("Hello".into()));
    assert_eq!(server.requests().len(), 2);
    // The hint (1 s), not the first backoff step (200 ms).
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

async fn server_errors_are_retried_then_succeed(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    server.push(Reply::status(500, "boom"));
    server.push(Reply::status(503, "overloaded"));
    server.push(Reply::text("Recovered"));

    let events = events(&provider, ask("Hi")).await;

    assert_eq!(events[0], ModelEvent::Text("Recovered".into()));
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    // Every attempt sends the same request.
    assert_eq!(requests[0].body, requests[2].body);
}

async fn server_errors_beyond_max_retries_fail(kind: ProviderKind) {
    let (server, provider) = setup_with(kind, |config| config.max_retries = 1).await;
    server.push(Reply::status(500, "first"));
    server.push(Reply::status(502, "second"));
    server.push(Reply::text("too late"));

    let error = provider.stream(ask("Hi")).await.err().expect("fails");

    assert_eq!(
        error,
        ModelError::Server {
            status: 502,
            message: "second".into()
        }
    );
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.pending(), 1);
}

async fn mid_stream_break_is_malformed_and_not_retried(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    server.push(Reply::text("Hello brave new world").break_after(2));
    server.push(Reply::text("a retry would get this"));

    let items = collect(&provider, ask("Hi")).await;

    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0], Ok(ModelEvent::Text("Hello".into())));
    assert_eq!(items[1], Ok(ModelEvent::Text(" brave".into())));
    assert!(
        matches!(items[2], Err(ModelError::Malformed(_))),
        "{items:?}"
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.pending(), 1);
}

async fn mid_stream_error_is_malformed(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    server.push(Reply::text("Hello world").error_after(1, "model overloaded"));

    let items = collect(&provider, ask("Hi")).await;

    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok(ModelEvent::Text("Hello".into())));
    let Err(ModelError::Malformed(message)) = &items[1] else {
        panic!("expected Malformed, got {items:?}");
    };
    assert!(message.contains("model overloaded"), "{message}");
}

async fn no_response_times_out(kind: ProviderKind) {
    let (server, provider) = setup_with(kind, |config| {
        config.read_timeout_secs = 1;
        config.max_retries = 0;
    })
    .await;
    server.push(Reply::hang());
    let started = Instant::now();

    let error = provider.stream(ask("Hi")).await.err().expect("times out");

    assert_eq!(error, ModelError::Timeout(Duration::from_secs(1)));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 1);
}

async fn stalled_stream_times_out(kind: ProviderKind) {
    let (server, provider) = setup_with(kind, |config| config.read_timeout_secs = 1).await;
    server.push(Reply::text("Hello").token_delay(Duration::from_secs(3)));
    server.push(Reply::text("a retry would get this"));

    let mut stream = provider
        .stream(ask("Hi"))
        .await
        .expect("headers arrive at once");
    let started = Instant::now();
    let first = stream.next().await;

    assert_eq!(
        first,
        Some(Err(ModelError::Timeout(Duration::from_secs(1))))
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stream.next().await, None);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn base_url_with_trailing_slash_works() {
    let server = agentd_testkit::ScriptedModel::start().await;
    let config = config(
        ProviderKind::Openai,
        format!("{}/", base_url(ProviderKind::Openai, &server)),
    );
    server.push(Reply::text("Hi"));
    let provider = provider(&config, None);

    let events = events(&provider, ask("Hi")).await;

    assert_eq!(events[0], ModelEvent::Text("Hi".into()));
    assert_eq!(server.requests()[0].path, "/v1/chat/completions");
    assert_eq!(server.requests()[0].header("authorization"), None);
}
