//! Stable error codes. Every failure that reaches a client carries one; the server maps each code to an
//! HTTP status in one table, so the codes are the contract and statuses follow from them.

use std::fmt;

/// A stable, machine-readable error code. The text form (`as_str`) never changes once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request body is not syntactically valid JSON.
    InvalidJson,
    /// The body has the wrong content type.
    UnsupportedMediaType,
    /// A field (body, query or path) has a value of the wrong type or outside its allowed set.
    InvalidField,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// No credentials were presented.
    MissingCredentials,
    /// Credentials were presented but are unknown, expired or malformed.
    InvalidCredentials,
    /// The principal lacks a scope the operation requires.
    MissingScope,
    /// The addressed resource does not exist (or belongs to another tenant).
    NotFound,
    /// No route matches the path.
    RouteNotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request conflicts with the current state of the resource.
    Conflict,
    /// An `If-Match` precondition (a version) no longer holds.
    PreconditionFailed,
    /// A quota that refills (API calls) is used up: retry after a reset.
    QuotaExceeded,
    /// A hard resource limit (storage, memory…) would be exceeded.
    LimitExceeded,
    /// Too many requests in the plan's window: retry after the time in `Retry-After`.
    RateLimited,
    /// A model provider failed, could not be reached or refused the call.
    ProviderFailed,
    /// A dependency (the database) is unavailable.
    Unavailable,
    /// Something failed inside the server; details are in the log, never in the response.
    Internal,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 18] = [
        Self::InvalidJson,
        Self::UnsupportedMediaType,
        Self::InvalidField,
        Self::PayloadTooLarge,
        Self::MissingCredentials,
        Self::InvalidCredentials,
        Self::MissingScope,
        Self::NotFound,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::PreconditionFailed,
        Self::QuotaExceeded,
        Self::LimitExceeded,
        Self::RateLimited,
        Self::ProviderFailed,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The code's wire form, e.g. `invalid_field`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidField => "invalid_field",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidCredentials => "invalid_credentials",
            Self::MissingScope => "missing_scope",
            Self::NotFound => "not_found",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::QuotaExceeded => "quota_exceeded",
            Self::LimitExceeded => "limit_exceeded",
            Self::RateLimited => "rate_limited",
            Self::ProviderFailed => "provider_failed",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
