//! The audit middleware: one place that records requests in the audit log, so no handler has to.
//!
//! After the handler has answered, [`record_requests`] records every request whose method changes
//! something (anything but GET, HEAD and OPTIONS; except the high-rate routine calls in
//! [`ROUTINE_POSTS`]: heartbeats, model calls, signature checks) and every 401 or 403 whatever the
//! method, as an `agentd_core::audit::AuditRecord`:
//!
//! - **actor**: the principal the `Auth` extractor authenticated (it leaves it in a
//!   [`PrincipalSlot`], as it leaves the rate status in a `RateSlot`), as `key:<id>` or `user:<id>`;
//!   `anonymous` when there was none. The entry goes to that principal's tenant chain, or to the
//!   platform chain (the nil tenant id) when no tenant is known (no key, an unknown key).
//! - **action**: the method and the matched route template, `POST /keys/{key_id}`, with an `{action}`
//!   parameter filled in, as in `POST /agents/{agent_id}/pause` (`POST (no route)` when no route
//!   matched).
//! - **target**: the request path, which carries the route's parameters (`/agents/0190…/pause`),
//!   redacted like a log line.
//! - **agent**: the route's `agent_id` parameter, else the agent an agent-bound key acts for.
//! - **status and outcome** of the response, the **client address** (the connection's peer when the
//!   server provides `ConnectInfo`, else the first `X-Forwarded-For` address), and the **request id**.
//!
//! A handler can shape or add an entry by putting an [`AuditEvent`] in its response's extensions
//! (`response.extensions_mut().insert(event)`): its fields replace the defaults above, and a response
//! that carries one is recorded even for a GET. Creations name what they made this way
//! (`AuditEvent::created`); logins, which arrive as a GET with no principal (a magic link's
//! `GET /auth/link/verify`, an OAuth callback), name the action, the user and the tenant:
//! `AuditEvent::named("auth.login").by(tenant_id, Subject::User(user_id))`.
//!
//! Recording is a channel send to `AuditService`, whose background appender writes batches.

use std::net::SocketAddr;
use std::sync::Arc;

use agentd_core::audit::{platform_tenant, AuditOutcome, AuditRecord, ANONYMOUS};
use agentd_core::{AgentId, AuditId, TenantId};
use agentd_runtime::{AuditService, Subject};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::PrincipalSlot;
use crate::middleware::RequestId;

/// POST routes that change no tenant state worth a trail and are called at high rates: heartbeats
/// (recorded in the agent's health), model calls (metered in `model_calls`) and signature checks.
/// They are recorded only when refused (401/403).
const ROUTINE_POSTS: &[&str] = &[
    "/agents/{agent_id}/heartbeat",
    "/identity/verify",
    "/knowledge/search",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/llm/generate",
    "/v1/llm/chat",
    "/v1/llm/embed",
];

/// The header a proxy puts the client's address in.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What a handler tells the audit middleware about its request; every field set replaces what the
/// middleware would have recorded. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct AuditEvent {
    /// A named action (`auth.login`) in place of `METHOD /route/{template}`.
    pub action: Option<String>,
    /// What was acted on, in place of the request path (a created resource's path).
    pub target: Option<String>,
    /// The tenant whose chain the entry belongs to, when the request had no principal (a login).
    pub tenant_id: Option<TenantId>,
    /// Who acted, when the request had no principal (the user who just logged in).
    pub subject: Option<Subject>,
    /// The agent the entry concerns.
    pub agent_id: Option<AgentId>,
}

impl AuditEvent {
    /// An event with a named action.
    pub fn named(action: impl Into<String>) -> Self {
        Self {
            action: Some(action.into()),
            ..Self::default()
        }
    }

    /// The creation of the resource at `target` (`/agents/<id>`), concerning `agent_id` if an agent.
    pub fn created(target: impl Into<String>, agent_id: Option<AgentId>) -> Self {
        Self {
            target: Some(target.into()),
            agent_id,
            ..Self::default()
        }
    }

    /// Who acted, in which tenant, for requests that had no principal.
    pub fn by(mut self, tenant_id: TenantId, subject: Subject) -> Self {
        self.tenant_id = Some(tenant_id);
        self.subject = Some(subject);
        self
    }
}

/// Records the request in the audit log when it changed something, was refused with 401/403, or its
/// handler attached an [`AuditEvent`]. See the module documentation for what is recorded.
pub async fn record_requests(
    State(audit): State<Arc<AuditService>>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = PrincipalSlot::default();
    request.extensions_mut().insert(slot.clone());
    // Only cheap handles here (reference-counted or `Copy`): most requests are successful reads,
    // which are not recorded, so everything else is worked out after the answer, when it is.
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let uri = request.uri().clone();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let forwarded = request.headers().get(&X_FORWARDED_FOR).cloned();
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone());

    let mut response = next.run(request).await;

    let status = response.status().as_u16();
    let event = response.extensions_mut().remove::<AuditEvent>();
    let changes_something = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let refused = status == 401 || status == 403;
    let routine = matched
        .as_ref()
        .is_some_and(|route| ROUTINE_POSTS.contains(&route.as_str()));
    if event.is_none() && !refused && (!changes_something || routine) {
        return response;
    }
    let path = uri.path();
    let params = matched
        .as_ref()
        .map(|route| path_params(route.as_str(), path))
        .unwrap_or_default();
    let param = |wanted: &str| {
        params
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| *value)
    };
    let path_agent = param("agent_id").and_then(|value| value.parse::<AgentId>().ok());
    // A route whose parameter is the verb (`/agents/{agent_id}/{action}`) names it in the action.
    // Only a plausible verb, so a client cannot write what it likes into the action.
    let verb = param("action").filter(|verb| {
        (1..=32).contains(&verb.len()) && verb.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    });
    let route = match (matched.as_ref().map(MatchedPath::as_str), verb) {
        (Some(route), Some(verb)) => Some(route.replace("{action}", verb)),
        (route, _) => route.map(str::to_owned),
    };
    let client_addr = address_of(peer, forwarded.as_ref());
    let request_id = request_id.and_then(|id| id.to_str().ok().map(str::to_owned));
    let event = event.unwrap_or_default();
    let principal = slot.take();
    let (tenant_id, actor) = match (&principal, event.subject) {
        (_, Some(subject)) => (
            event.tenant_id.unwrap_or_else(platform_tenant),
            subject.label(),
        ),
        (Some(principal), None) => (principal.tenant_id, principal.subject.label()),
        (None, None) => (
            event.tenant_id.unwrap_or_else(platform_tenant),
            ANONYMOUS.to_owned(),
        ),
    };
    let action = event.action.unwrap_or_else(|| match &route {
        Some(route) => format!("{method} {route}"),
        None => format!("{method} (no route)"),
    });
    let target = event
        .target
        .unwrap_or_else(|| agentd_core::redact::redact(path).into_owned());
    let agent_id = event
        .agent_id
        .or(path_agent)
        .or(principal.as_ref().and_then(|p| p.agent_id));
    audit
        .record(AuditRecord {
            id: AuditId::new(),
            tenant_id,
            actor,
            action,
            target,
            agent_id,
            status,
            outcome: AuditOutcome::from_status(status),
            client_addr,
            request_id,
            created_at: agentd_core::now(),
        })
        .await;
    response
}

/// The caller's address: the connection's peer if the server records it, else the first address of
/// `X-Forwarded-For` (as a proxy in front of agentd would set it), else none.
pub(crate) fn client_address(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
) -> Option<String> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    address_of(peer, headers.get(&X_FORWARDED_FOR))
}

/// [`client_address`] from the connection's peer and the `X-Forwarded-For` header.
fn address_of(peer: Option<SocketAddr>, forwarded: Option<&HeaderValue>) -> Option<String> {
    if let Some(peer) = peer {
        return Some(peer.to_string());
    }
    let forwarded = forwarded?.to_str().ok()?;
    let first = forwarded.split(',').next()?.trim();
    let sane = !first.is_empty()
        && first.len() <= 64
        && first
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'));
    sane.then(|| first.to_owned())
}

/// The raw values of a route template's `{parameters}` in `path` (`/agents/{agent_id}` and
/// `/agents/01…` → `[("agent_id", "01…")]`): the router matched `path` against the template, so
/// their segments line up.
fn path_params<'a>(template: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    template
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(pattern, value)| {
            let name = pattern.strip_prefix('{')?.strip_suffix('}')?;
            Some((name, value))
        })
        .collect()
}
