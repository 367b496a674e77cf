//! RFC 9457 problem details: the one error shape of every face. One table maps a stable
//! [`ErrorCode`] to its HTTP status and title; one `IntoResponse` renders it.

use agentd_core::ErrorCode;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The HTTP status and short title of each code.
pub fn status_and_title(code: ErrorCode) -> (StatusCode, &'static str) {
    match code {
        ErrorCode::InvalidJson => (StatusCode::BAD_REQUEST, "Malformed JSON body"),
        ErrorCode::UnsupportedMediaType => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type")
        }
        ErrorCode::InvalidField => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid field"),
        ErrorCode::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
        ErrorCode::MissingCredentials => (StatusCode::UNAUTHORIZED, "Authentication required"),
        ErrorCode::InvalidCredentials => (StatusCode::UNAUTHORIZED, "Invalid credentials"),
        ErrorCode::MissingScope => (StatusCode::FORBIDDEN, "Insufficient permissions"),
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        ErrorCode::RouteNotFound => (StatusCode::NOT_FOUND, "No such route"),
        ErrorCode::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
        ErrorCode::Conflict => (StatusCode::CONFLICT, "Conflict"),
        ErrorCode::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "Precondition failed"),
        ErrorCode::QuotaExceeded => (StatusCode::TOO_MANY_REQUESTS, "Quota exceeded"),
        ErrorCode::LimitExceeded => (StatusCode::FORBIDDEN, "Resource limit exceeded"),
        ErrorCode::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
        ErrorCode::ProviderFailed => (StatusCode::BAD_GATEWAY, "Model provider failed"),
        ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
        ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
    }
}

/// The code for a status produced outside our handlers (by axum or a tower layer).
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::RouteNotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidField,
        StatusCode::BAD_REQUEST => ErrorCode::InvalidJson,
        StatusCode::UNAUTHORIZED => ErrorCode::MissingCredentials,
        StatusCode::FORBIDDEN => ErrorCode::MissingScope,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::PRECONDITION_FAILED => ErrorCode::PreconditionFailed,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::QuotaExceeded,
        StatusCode::BAD_GATEWAY => ErrorCode::ProviderFailed,
        _ => ErrorCode::Internal,
    }
}

/// A problem details body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:agentd:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// The stable machine-readable code, e.g. `invalid_field`.
    pub code: String,
    /// The offending field for bad input: a body path (`scopes[1]`), a query or a path parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>, field: Option<String>) -> Self {
        let (status, title) = status_and_title(code);
        Self {
            kind: format!("urn:agentd:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.as_str().to_owned(),
            field,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let unauthorized = status == StatusCode::UNAUTHORIZED;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The error every handler and extractor returns.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    field: Option<String>,
    /// For rate limits: seconds to wait (`Retry-After`) and the limit (`RateLimit-Limit`).
    retry_after: Option<u64>,
    rate_limit: Option<u32>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// An error with a detail for the client.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            field: None,
            retry_after: None,
            rate_limit: None,
            source: None,
        }
    }

    /// A bad value in `field`.
    pub fn field(code: ErrorCode, field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(code, detail)
        }
    }

    /// The same error for a value nested in field `parent` (its field path is prefixed with it).
    pub fn nested_in(mut self, parent: &str) -> Self {
        self.field = Some(match self.field.as_deref() {
            None | Some("body") => parent.to_owned(),
            Some(path) if path.starts_with('[') => format!("{parent}{path}"),
            Some(path) => format!("{parent}.{path}"),
        });
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<agentd_runtime::Error> for ApiError {
    fn from(error: agentd_runtime::Error) -> Self {
        let code = error.code();
        let field = error.field().map(str::to_owned);
        let detail = error.to_string();
        let retry_after = error.retry_after();
        let rate_limit = match &error {
            agentd_runtime::Error::RateLimited { limit, .. } => Some(*limit),
            _ => None,
        };
        Self {
            code,
            detail,
            field,
            retry_after,
            rate_limit,
            source: Some(Box::new(error)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A 500 or 503 says nothing to the client and everything to the log, once, here.
        let detail = match self.code {
            ErrorCode::Internal | ErrorCode::Unavailable => {
                let mut chain = String::new();
                let mut next: Option<&(dyn std::error::Error + 'static)> =
                    self.source.as_deref().map(|e| e as _);
                while let Some(error) = next {
                    chain.push_str(": ");
                    chain.push_str(&error.to_string());
                    next = error.source();
                }
                tracing::error!(code = %self.code, "request failed{chain}");
                if self.code == ErrorCode::Internal {
                    status_and_title(self.code).1.to_owned()
                } else {
                    self.detail
                }
            }
            _ => self.detail,
        };
        let mut response = Problem::new(self.code, detail, self.field).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let (Some(limit), Some(seconds)) = (self.rate_limit, self.retry_after) {
            headers.insert("ratelimit-limit", HeaderValue::from(limit));
            headers.insert("ratelimit-remaining", HeaderValue::from(0));
            headers.insert("ratelimit-reset", HeaderValue::from(seconds));
        }
        response
    }
}
