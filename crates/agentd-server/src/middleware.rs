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

use crate::auth::RateSlot;
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

/// Per-face error shapes and rate headers. Every error is produced once, as problem+json; on the
/// OpenAI-compatible face (`/v1/…`) it is re-rendered as OpenAI's `{"error": {message, type, param,
/// code}}` (with 400 for bad input, as OpenAI's clients expect), and on the Ollama-style routes
/// (`/v1/llm/…`) as `{"error": "…"}`. Authenticated responses under a plan with a rate limit carry
/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
pub async fn face_errors_and_rates(mut request: Request, next: Next) -> Response {
    let face = Face::of(request.uri().path());
    let slot = RateSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    if let Some(rate) = slot.take() {
        let headers = response.headers_mut();
        for (name, value) in [
            ("ratelimit-limit", rate.limit as u64),
            ("ratelimit-remaining", rate.remaining as u64),
            ("ratelimit-reset", rate.reset_secs),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if face == Face::Native || !is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let problem: serde_json::Value = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let text = |key: &str| problem.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let code = text("code").unwrap_or_else(|| "internal".to_owned());
    let detail = text("detail").unwrap_or_else(|| "error".to_owned());
    let body = match face {
        Face::Ollama => serde_json::json!({ "error": detail }),
        _ => {
            let field = text("field");
            let (kind, openai_code) = openai_error_kind(&code, field.as_deref());
            serde_json::json!({ "error": {
                "message": detail, "type": kind, "param": field, "code": openai_code,
            }})
        }
    };
    if face == Face::OpenAi && parts.status == axum::http::StatusCode::UNPROCESSABLE_ENTITY {
        parts.status = axum::http::StatusCode::BAD_REQUEST;
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// Which error shape a path's face uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Face {
    Native,
    OpenAi,
    Ollama,
}

impl Face {
    fn of(path: &str) -> Self {
        if path.starts_with("/v1/llm/") {
            Self::Ollama
        } else if path.starts_with("/v1/") {
            Self::OpenAi
        } else {
            Self::Native
        }
    }
}

/// OpenAI's error `type` and `code` for one of our codes.
fn openai_error_kind(code: &str, field: Option<&str>) -> (&'static str, String) {
    match code {
        "missing_credentials" | "invalid_credentials" => {
            ("invalid_request_error", "invalid_api_key".to_owned())
        }
        "missing_scope" => (
            "invalid_request_error",
            "insufficient_permissions".to_owned(),
        ),
        "not_found" if field == Some("model") => {
            ("invalid_request_error", "model_not_found".to_owned())
        }
        "rate_limited" => ("requests", "rate_limit_exceeded".to_owned()),
        "quota_exceeded" => ("insufficient_quota", "insufficient_quota".to_owned()),
        "provider_failed" | "internal" | "unavailable" => ("server_error", code.to_owned()),
        _ => ("invalid_request_error", code.to_owned()),
    }
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
