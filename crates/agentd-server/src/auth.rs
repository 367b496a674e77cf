//! Authentication and authorization in the handler's type. A handler that takes
//! `Auth<scopes::KeysRead>` cannot run unless the caller presented a valid key holding `keys:read`;
//! routes without an `Auth` argument are public. The scope each route needs is also written in its
//! OpenAPI `security` entry, and the API tests check the two agree, route by route.

use std::marker::PhantomData;
use std::sync::Arc;

use agentd_core::{ErrorCode, Scope};
use agentd_runtime::{AccessService, Principal};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::problem::ApiError;

/// A scope a route requires, as a type.
pub trait RequiredScope {
    /// The scope in AgentOS form.
    const SCOPE: &'static str;
}

/// The scope marker types: the route → scope table, in one place.
pub mod scopes {
    use super::RequiredScope;

    macro_rules! scope_markers {
        ($($(#[$doc:meta])* $name:ident = $scope:literal;)*) => {
            $(
                $(#[$doc])*
                pub struct $name;
                impl RequiredScope for $name {
                    const SCOPE: &'static str = $scope;
                }
            )*
            /// Every marker's scope, for tests.
            pub const ALL: &[&str] = &[$($scope),*];
        };
    }

    scope_markers! {
        /// Read the server configuration.
        ConfigRead = "config:read";
        /// Scrape Prometheus metrics.
        MetricsRead = "metrics:read";
        /// List and read API keys.
        KeysRead = "keys:read";
        /// Create API keys.
        KeysWrite = "keys:write";
        /// Delete API keys.
        KeysDelete = "keys:delete";
        /// List and read agents, their versions and events.
        AgentsRead = "agents:read";
        /// Create agents, change their spec and drive their lifecycle.
        AgentsWrite = "agents:write";
        /// Terminate agents.
        AgentsDelete = "agents:delete";
    }
}

/// An authenticated caller holding the scope `S`.
pub struct Auth<S> {
    pub principal: Principal,
    scope: PhantomData<S>,
}

impl<S, St> FromRequestParts<St> for Auth<S>
where
    S: RequiredScope,
    Arc<AccessService>: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let credential = bearer_credential(parts)?;
        let access = Arc::<AccessService>::from_ref(state);
        let principal = access.authenticate(credential).await?;
        let required = Scope::parse(S::SCOPE).map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("route scope {}: {e}", S::SCOPE),
            )
        })?;
        principal.require(&required)?;
        Ok(Self {
            principal,
            scope: PhantomData,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_credential(parts: &Parts) -> Result<&str, ApiError> {
    let Some(header) = parts.headers.get(AUTHORIZATION) else {
        return Err(agentd_runtime::Error::MissingCredentials.into());
    };
    let value = header.to_str().map_err(|_| {
        agentd_runtime::Error::InvalidCredentials("the Authorization header is not text")
    })?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(agentd_runtime::Error::InvalidCredentials(
            "use `Authorization: Bearer <api key>`",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_scope_is_a_valid_scope() {
        for scope in super::scopes::ALL {
            agentd_core::Scope::parse(scope).unwrap_or_else(|e| panic!("{scope}: {e}"));
        }
    }
}
