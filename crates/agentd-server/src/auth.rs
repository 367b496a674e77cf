//! Authentication and authorization in the handler's type. A handler that takes
//! `Auth<scopes::KeysRead>` cannot run unless the caller presented a valid key holding `keys:read`;
//! routes without an `Auth` argument are public. The scope each route needs is also written in its
//! OpenAPI `security` entry, and the API tests check the two agree, route by route.
//!
//! Scopes of a resource with ids (`agents:read`) are checked per resource on routes that name one: on
//! `/agents/{agent_id}/…` the key needs `agents:<agent_id>:read`, which `agents:read` and
//! `agents:*:read` also grant. So a key scoped to one agent reaches that agent and no other.

use std::marker::PhantomData;
use std::sync::Arc;

use agentd_core::{ErrorCode, Scope};
use agentd_runtime::{AccessService, Principal, RateStatus, UsageService};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::problem::ApiError;

/// A scope a route requires, as a type.
pub trait RequiredScope {
    /// The scope in AgentOS form.
    const SCOPE: &'static str;
    /// The path parameter that names the resource, for per-resource scopes (`agent_id` for agents).
    const ID_PARAM: Option<&'static str> = None;
    /// A list route: a key holding only per-resource scopes may list, narrowed to those resources.
    const NARROWS_LIST: bool = false;
}

/// The scope marker types: the route → scope table, in one place.
pub mod scopes {
    use super::RequiredScope;

    macro_rules! scope_markers {
        ($($(#[$doc:meta])* $name:ident = $scope:literal $(per $param:literal)?;)*) => {
            $(
                $(#[$doc])*
                pub struct $name;
                impl RequiredScope for $name {
                    const SCOPE: &'static str = $scope;
                    $(const ID_PARAM: Option<&'static str> = Some($param);)?
                }
            )*
            /// Every marker's scope, for tests.
            pub const ALL: &[&str] = &[$($scope),*];
        };
    }

    /// List agents: `agents:read` lists every agent; per-agent read scopes list just those agents.
    pub struct AgentsList;
    impl RequiredScope for AgentsList {
        const SCOPE: &'static str = "agents:read";
        const NARROWS_LIST: bool = true;
    }

    scope_markers! {
        /// List and read the tenant's users.
        UsersRead = "users:read";
        /// Add users and change their names and roles.
        UsersWrite = "users:write";
        /// Remove users.
        UsersDelete = "users:delete";
        /// Read the caller's tenant.
        TenantRead = "tenant:read";
        /// Platform administration (making tenants): the admin scope, in the first tenant.
        PlatformAdmin = "agent_os:admin";
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
        AgentsRead = "agents:read" per "agent_id";
        /// Create agents, change their spec and drive their lifecycle.
        AgentsWrite = "agents:write" per "agent_id";
        /// Terminate agents.
        AgentsDelete = "agents:delete" per "agent_id";
        /// Run agents: start, continue, cancel and follow runs.
        AgentsRun = "agents:run" per "agent_id";
        /// Sign payloads with an agent's Ed25519 identity.
        AgentsSign = "agents:sign" per "agent_id";
        /// Manage an agent's keys: create, list, revoke and rotate them (an agent key holds this for
        /// its own agent by default, so it can rotate itself).
        AgentsKeys = "agents:keys" per "agent_id";
        /// Verify agent signatures (reveals public keys only).
        IdentityVerify = "identity:verify";
        /// List and read sessions and their runs.
        SessionsRead = "sessions:read";
        /// Create, rename and change sessions.
        SessionsWrite = "sessions:write";
        /// Delete sessions with their runs.
        SessionsDelete = "sessions:delete";
        /// List and read user memories, their topics and per-user figures.
        MemoriesRead = "memories:read";
        /// Create and change user memories.
        MemoriesWrite = "memories:write";
        /// Delete user memories.
        MemoriesDelete = "memories:delete";
        /// List, read and search knowledge contents; read the knowledge configuration.
        KnowledgeRead = "knowledge:read";
        /// Upload knowledge contents and change their name, description and metadata.
        KnowledgeWrite = "knowledge:write";
        /// Delete knowledge contents.
        KnowledgeDelete = "knowledge:delete";
        /// List models (and the agents that can be addressed as models).
        ModelsRead = "models:read";
        /// Call models through the gateway (an agent addressed as a model also needs `agents:<id>:run`).
        ModelsRun = "models:run";
        /// Read the tenant's metered usage and plan.
        UsageRead = "usage:read";
        /// Read the tenant's audit log.
        AuditRead = "audit:read";
    }
}

/// An authenticated caller holding the scope `S`.
pub struct Auth<S> {
    pub principal: Principal,
    /// For list routes ([`RequiredScope::NARROWS_LIST`]): when the key holds only per-resource scopes
    /// (`agents:a1:read`), the ids it may see; `None` when it may see every resource.
    pub only: Option<Vec<String>>,
    scope: PhantomData<S>,
}

impl<S, St> FromRequestParts<St> for Auth<S>
where
    S: RequiredScope,
    Arc<AccessService>: FromRef<St>,
    Arc<UsageService>: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let credential = bearer_credential(parts)?;
        let access = Arc::<AccessService>::from_ref(state);
        let principal = access.authenticate(credential).await?;
        if let Some(slot) = parts.extensions.get::<PrincipalSlot>() {
            slot.fill(principal.clone());
        }
        // Every authenticated request counts against the plan's rate, allowed or not.
        let rate = Arc::<UsageService>::from_ref(state)
            .admit(&principal)
            .await?;
        if let (Some(rate), Some(slot)) = (rate, parts.extensions.get::<RateSlot>()) {
            slot.fill(rate);
        }
        let internal = |e: agentd_core::scope::ScopeError| {
            ApiError::new(
                ErrorCode::Internal,
                format!("route scope {}: {e}", S::SCOPE),
            )
        };
        let required = Scope::parse(S::SCOPE).map_err(internal)?;
        let resource_id = match S::ID_PARAM {
            Some(param) => path_param(parts, state, param).await,
            None => None,
        };
        if let Some(id) = &resource_id {
            let (resource, action) = S::SCOPE.split_once(':').unwrap_or((S::SCOPE, ""));
            // An id that is not a valid scope segment cannot name a resource; the path extractor
            // rejects it next, so the resource-wide scope decides here.
            let per_resource =
                Scope::parse(&format!("{resource}:{id}:{action}")).unwrap_or(required.clone());
            if !principal.scopes.allows(&per_resource) {
                return Err(ApiError::new(
                    ErrorCode::MissingScope,
                    format!(
                        "missing scope `{required}` (or `{per_resource}` for this {resource} only)"
                    ),
                ));
            }
        }
        let mut only = None;
        match resource_id {
            None if S::NARROWS_LIST && !principal.scopes.allows(&required) => {
                let ids = per_resource_ids(&principal, S::SCOPE);
                if ids.is_empty() {
                    principal.require(&required)?;
                }
                only = Some(ids);
            }
            None => principal.require(&required)?,
            Some(_) => {}
        }
        Ok(Self {
            principal,
            only,
            scope: PhantomData,
        })
    }
}

/// Where the `Auth` extractor leaves the caller's rate status for the `RateLimit-*` response headers
/// (see `middleware::rate_limit_headers`).
#[derive(Clone, Default)]
pub struct RateSlot(Arc<std::sync::Mutex<Option<RateStatus>>>);

impl RateSlot {
    fn fill(&self, rate: RateStatus) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(rate);
    }

    /// The status left by the extractor, if the route authenticated and a rate applies.
    pub fn take(&self) -> Option<RateStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Where the `Auth` extractor leaves the authenticated principal (before checking its scope, so a
/// 403 is recorded with who was refused) for the audit middleware (see `crate::audit`).
#[derive(Clone, Default)]
pub struct PrincipalSlot(Arc<std::sync::Mutex<Option<Principal>>>);

impl PrincipalSlot {
    fn fill(&self, principal: Principal) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(principal);
    }

    /// The principal left by the extractor, if the route authenticated one.
    pub fn take(&self) -> Option<Principal> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_credential(parts: &Parts) -> Result<&str, ApiError> {
    let Some(header) = parts.headers.get(AUTHORIZATION) else {
        // A browser that logged in holds its JWT in a cookie instead.
        return token_cookie(parts).ok_or(agentd_runtime::Error::MissingCredentials.into());
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

/// The JWT of the login cookie (`agentd_token`), if the request carries one.
fn token_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::routes::login::TOKEN_COOKIE)
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// The resource ids a principal's per-resource scopes name for `scope` (`agents:read` → the `a1` of
/// `agents:a1:read` or `agents:a1:*`).
fn per_resource_ids(principal: &Principal, scope: &str) -> Vec<String> {
    let (resource, action) = scope.split_once(':').unwrap_or((scope, ""));
    principal
        .scopes
        .iter()
        .filter_map(|held| {
            let mut parts = held.as_str().split(':');
            let (res, id, act) = (parts.next()?, parts.next()?, parts.next()?);
            let matches =
                (res == resource || res == "*") && (act == action || act == "*") && id != "*";
            matches.then(|| id.to_owned())
        })
        .collect()
}

/// The raw value of one path parameter of the matched route.
async fn path_param<St: Send + Sync>(parts: &mut Parts, state: &St, name: &str) -> Option<String> {
    let params = axum::extract::RawPathParams::from_request_parts(parts, state)
        .await
        .ok()?;
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
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
