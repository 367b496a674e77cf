//! The services' error type. Each variant maps to one stable [`ErrorCode`]; the faces turn it into
//! their wire shape and never decide the code themselves.

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
    #[error("configuration: {0}")]
    Config(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("store failure")]
    Store(#[source] StoreError),
}

impl Error {
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
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Config(_) | Self::Store(_) => ErrorCode::Internal,
        }
    }

    /// The offending field, for input errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
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
