//! The services' error type. Each variant maps to one stable [`ErrorCode`]; the faces turn it into
//! their wire shape and never decide the code themselves.

use agentd_core::agent::AgentStatus;
use agentd_core::{ErrorCode, Scope};
use agentd_store::StoreError;

/// A service failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no credentials: send `Authorization: Bearer <api key>`")]
    MissingCredentials,
    #[error("invalid credentials: {0}")]
    InvalidCredentials(&'static str),
    #[error("missing scope `{0}`")]
    MissingScope(Scope),
    #[error("{what} cannot grant `{scope}`, which it does not hold itself")]
    Escalation { what: &'static str, scope: Scope },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("cannot {action} an agent that is {current}; {allowed}")]
    IllegalTransition {
        action: String,
        current: AgentStatus,
        allowed: String,
    },
    #[error("the agent is at version {current}, not the version in If-Match")]
    PreconditionFailed { current: String },
    #[error("{resource} quota exceeded: {used} used of {limit}; reset with POST /agents/{{id}}/resources/reset")]
    QuotaExceeded {
        resource: &'static str,
        used: u64,
        limit: u64,
    },
    #[error("{resource} limit exceeded: {wanted} wanted, limit {limit}")]
    LimitExceeded {
        resource: &'static str,
        wanted: u64,
        limit: u64,
    },
    #[error("rate limit of {limit} requests per minute reached; retry in {retry_after_secs} s")]
    RateLimited { limit: u32, retry_after_secs: u64 },
    #[error("the plan allows {limit} runs at once and that many are running; retry when one ends")]
    TooManyRuns { limit: u32 },
    #[error("the plan's {limit} are used up: {used} of {allowed} this month; the allowance renews on {renews_at}")]
    PlanLimit {
        limit: &'static str,
        used: u64,
        allowed: u64,
        renews_at: String,
    },
    #[error("model `{0}` not found: GET /v1/models lists the models and agents")]
    UnknownModel(String),
    #[error("{0}")]
    Provider(#[source] agentd_models::ModelError),
    /// An upload larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// Content of a type the server cannot read.
    #[error("{0}")]
    UnsupportedType(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal: {0}")]
    Internal(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("store failure")]
    Store(#[source] StoreError),
}

impl Error {
    /// Seconds the caller should wait before trying again, for rate limits.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::TooManyRuns { .. } => Some(1),
            Self::Provider(agentd_models::ModelError::RateLimited { retry_after, .. }) => {
                Some(retry_after.map_or(1, |d| d.as_secs().max(1)))
            }
            _ => None,
        }
    }

    /// A bad value in the named field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MissingCredentials => ErrorCode::MissingCredentials,
            Self::InvalidCredentials(_) => ErrorCode::InvalidCredentials,
            Self::MissingScope(_) | Self::Escalation { .. } => ErrorCode::MissingScope,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Invalid { .. } => ErrorCode::InvalidField,
            Self::Conflict(_) | Self::IllegalTransition { .. } => ErrorCode::Conflict,
            Self::PreconditionFailed { .. } => ErrorCode::PreconditionFailed,
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            Self::RateLimited { .. } | Self::TooManyRuns { .. } => ErrorCode::RateLimited,
            Self::PlanLimit { .. } => ErrorCode::QuotaExceeded,
            Self::UnknownModel(_) => ErrorCode::NotFound,
            Self::Provider(agentd_models::ModelError::RateLimited { .. }) => ErrorCode::RateLimited,
            Self::Provider(_) => ErrorCode::ProviderFailed,
            Self::TooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::UnsupportedType(_) => ErrorCode::UnsupportedMediaType,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Config(_) | Self::Internal(_) | Self::Store(_) => ErrorCode::Internal,
        }
    }

    /// The offending field, for input errors (and the limit, for quota errors).
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::QuotaExceeded { resource, .. } | Self::LimitExceeded { resource, .. } => {
                Some(resource)
            }
            Self::PlanLimit { limit, .. } => Some(limit),
            Self::UnknownModel(_) => Some("model"),
            _ => None,
        }
    }
}

impl Error {
    /// A lifecycle action tried from a status it does not start from.
    pub fn action_not_allowed(
        action: impl Into<String>,
        current: AgentStatus,
        allowed_from: &[AgentStatus],
    ) -> Self {
        Self::IllegalTransition {
            action: action.into(),
            current,
            allowed: format!("it is allowed from: {}", list(allowed_from)),
        }
    }

    /// A status change the state machine does not have.
    pub fn status_not_allowed(target: AgentStatus, current: AgentStatus) -> Self {
        Self::IllegalTransition {
            action: format!("set status `{target}` on"),
            current,
            allowed: format!(
                "from {current} the allowed statuses are: {}",
                list(current.allowed_targets())
            ),
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => Self::Conflict(message),
            error if error.is_unavailable() => Self::Unavailable(error),
            error => Self::Store(error),
        }
    }
}

fn list(statuses: &[AgentStatus]) -> String {
    if statuses.is_empty() {
        return "none".to_owned();
    }
    statuses
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
