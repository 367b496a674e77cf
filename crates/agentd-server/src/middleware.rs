//! Cross-cutting request handling: request ids, the per-request log span, metrics, problem+json for
//! errors produced outside handlers, and turning panics into a 500 that loses no detail in the log.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use agentd_core::ErrorCode;

use crate::metrics::Metrics;
use crate::problem::{code_for_status, Problem, PROBLEM_JSON};

/// The request id header, honoured when a client sends a sane one and echoed on every response.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request, for handlers that want it.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// Assigns the request id, opens the request's log span, and records metrics and a log line when the
/// response is ready.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|value| is_acceptable_request_id(value.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
                .unwrap_or(HeaderValue::from_static("invalid"))
        });
    request
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = request_id.to_str().unwrap_or_default(),
        method = %method,
        path = request.uri().path(),
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "request finished"
        );
    });
    metrics.record(
        method.as_str(),
        route.as_deref().unwrap_or("unmatched"),
        status.as_u16(),
        elapsed,
    );
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id);
    response
}

/// Request ids come from clients, so only short, printable ones are kept; others are replaced.
fn is_acceptable_request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Rewrites error responses that carry no JSON (axum's bare 405, a layer's plain-text 413) into
/// problem+json, keeping their status and headers.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // Handlers answer errors in JSON: problem+json, or a documented JSON body such as `/health`'s 503.
    let is_json = response.headers().get(CONTENT_TYPE).is_some_and(|value| {
        let value = value.as_bytes();
        value.starts_with(PROBLEM_JSON.as_bytes()) || value.starts_with(b"application/json")
    });
    if is_json {
        return response;
    }
    let (parts, _body) = response.into_parts();
    let code = code_for_status(status);
    let detail = match code {
        ErrorCode::MethodNotAllowed => format!("this route does not accept {method}"),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut problem = Problem::new(code, detail, None);
    problem.status = status.as_u16();
    let mut rewritten = problem.into_response();
    *rewritten.status_mut() = status;
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// Renders a caught panic as a 500 problem and logs what panicked.
pub fn panic_to_problem(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    Problem::new(ErrorCode::Internal, "Internal server error", None).into_response()
}

/// The answer for paths no route matches.
pub async fn route_not_found(request: Request) -> Response {
    Problem::new(
        ErrorCode::RouteNotFound,
        format!(
            "no route for {} {}",
            request.method(),
            agentd_core::redact::redact(request.uri().path())
        ),
        None,
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;
    use tower_http::catch_panic::CatchPanicLayer;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_bare_500_problem() {
        async fn explode() -> &'static str {
            panic!("secret internals")
        }
        let app = Router::new()
            .route("/boom", get(explode))
            .layer(CatchPanicLayer::custom(panic_to_problem));
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("\"code\":\"internal\""), "{text}");
        assert!(!text.contains("secret internals"), "{text}");
    }
}
