//! `/auth/…` and `/.well-known/jwks.json`: logging users in by magic link or OAuth, refreshing and
//! ending sessions, and publishing the key agentd's JWTs are signed with. These routes are public:
//! they are how a caller gets credentials in the first place.
//!
//! A login answers JSON (`access_token`, `refresh_token`, …) to API clients; a browser (one that
//! accepts `text/html`) gets the access token as an `HttpOnly` cookie and a redirect instead.

use std::net::SocketAddr;
use std::sync::Arc;

use agentd_runtime::login::{LoginService, LoginSession};
use agentd_runtime::tokens::TokenService;
use agentd_runtime::Subject;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{ACCEPT, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditEvent;
use crate::extract::{Json, Path, Query};
use crate::problem::ApiError;
use crate::routes::users::UserView;
use crate::state::AppState;

/// The cookie a browser login leaves; the `Auth` extractor accepts it like a bearer token.
pub const TOKEN_COOKIE: &str = "agentd_token";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_link))
        .routes(routes!(verify_link))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(oauth_authorize))
        .routes(routes!(oauth_callback))
        .routes(routes!(jwks))
}

/// A request for a login link.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[schema(example = "ann@example.com")]
    pub email: String,
    /// The tenant's slug; `default` if absent.
    pub tenant: Option<String>,
}

/// The same answer whether or not the address belongs to a user.
#[derive(Serialize, ToSchema)]
pub struct LinkSent {
    #[schema(example = "sent")]
    pub status: &'static str,
    pub detail: &'static str,
}

/// The caller's IP address, for the per-client limit: the address the audit log records (the peer,
/// else `X-Forwarded-For`'s first), without its port.
struct ClientIp(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let address = crate::audit::client_address(&parts.extensions, &parts.headers);
        Ok(Self(address.map(
            |address| match address.parse::<SocketAddr>() {
                Ok(peer) => peer.ip().to_string(),
                Err(_) => address,
            },
        )))
    }
}

/// Mails a one-time login link if the address belongs to a user of the tenant. The answer never
/// says whether it does. Limited per address and per client (429 with `Retry-After`).
#[utoipa::path(
    post,
    path = "/auth/link",
    tag = "auth",
    request_body = LinkRequest,
    responses((status = 202, body = LinkSent))
)]
async fn request_link(
    State(login): State<Arc<LoginService>>,
    ClientIp(ip): ClientIp,
    Json(request): Json<LinkRequest>,
) -> Result<(StatusCode, axum::Json<LinkSent>), ApiError> {
    login
        .request_link(request.tenant.as_deref(), &request.email, ip.as_deref())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(LinkSent {
            status: "sent",
            detail: "if the address belongs to a user, a login link is on its way",
        }),
    ))
}

/// The link's token.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    pub token: String,
}

/// A logged-in session.
#[derive(Serialize, ToSchema)]
pub struct LoginView {
    /// A JWT to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    /// Trade it at `POST /auth/refresh` for new tokens; it works once.
    pub refresh_token: String,
    pub user: UserView,
}

impl From<LoginSession> for LoginView {
    fn from(session: LoginSession) -> Self {
        Self {
            access_token: session.access.token,
            token_type: "Bearer",
            expires_in: session.access.expires_in,
            refresh_token: session.refresh_token.reveal().to_owned(),
            user: session.user.into(),
        }
    }
}

/// Logs in with a magic link's token (once, before it expires).
#[utoipa::path(
    get,
    path = "/auth/link/verify",
    tag = "auth",
    params(VerifyQuery),
    responses(
        (status = 200, body = LoginView),
        (status = 303, description = "A browser: the token is set as a cookie and the browser sent to `/`")
    )
)]
async fn verify_link(
    State(login): State<Arc<LoginService>>,
    headers: HeaderMap,
    Query(query): Query<VerifyQuery>,
) -> Result<Response, ApiError> {
    let session = login.verify_link(&query.token).await?;
    Ok(logged_in(&headers, session, None, login.secure_cookies()))
}

/// The answer to a login: JSON, or for a browser a cookie and a redirect.
fn logged_in(
    headers: &HeaderMap,
    session: LoginSession,
    redirect_to: Option<String>,
    secure: bool,
) -> Response {
    let audit = AuditEvent {
        action: Some("auth.login".to_owned()),
        target: Some(format!("/users/{}", session.user.id)),
        tenant_id: Some(session.user.tenant_id),
        subject: Some(Subject::User(session.user.id)),
        agent_id: None,
    };
    let browser = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser {
        let cookie = format!(
            "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            session.access.token,
            session.access.expires_in,
            if secure { "; Secure" } else { "" }
        );
        let mut response = StatusCode::SEE_OTHER.into_response();
        let location = redirect_to.unwrap_or_else(|| "/".to_owned());
        if let (Ok(cookie), Ok(location)) = (
            HeaderValue::from_str(&cookie),
            HeaderValue::from_str(&location),
        ) {
            response.headers_mut().insert(SET_COOKIE, cookie);
            response.headers_mut().insert(LOCATION, location);
        }
        response.extensions_mut().insert(audit);
        return response;
    }
    (Extension(audit), axum::Json(LoginView::from(session))).into_response()
}

/// A refresh token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Trades a refresh token for a new access token and refresh token; the old one is spent.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 200, body = LoginView))
)]
async fn refresh(
    State(login): State<Arc<LoginService>>,
    Json(request): Json<RefreshRequest>,
) -> Result<axum::Json<LoginView>, ApiError> {
    let session = login.refresh(&request.refresh_token).await?;
    Ok(axum::Json(LoginView::from(session)))
}

/// Ends a session: its refresh token stops working (the access token runs out within minutes).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "Logged out"))
)]
async fn logout(
    State(login): State<Arc<LoginService>>,
    Json(request): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    login.end_session(&request.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Path of an OAuth provider.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProviderPath {
    /// The provider's name in `[auth.oauth.<name>]`.
    pub provider: String,
}

/// Where to log in and where to go after.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// The tenant's slug; `default` if absent.
    pub tenant: Option<String>,
    /// A path on this server to send the browser to after login.
    pub redirect_to: Option<String>,
}

/// Starts an OAuth login: redirects to the provider with a fresh `state` and PKCE challenge.
#[utoipa::path(
    get,
    path = "/auth/oauth/{provider}/authorize",
    tag = "auth",
    params(ProviderPath, AuthorizeQuery),
    responses((status = 302, description = "To the provider's authorization page"))
)]
async fn oauth_authorize(
    State(login): State<Arc<LoginService>>,
    Path(path): Path<ProviderPath>,
    Query(query): Query<AuthorizeQuery>,
) -> Result<Response, ApiError> {
    let url = login
        .oauth_authorize(&path.provider, query.tenant.as_deref(), query.redirect_to)
        .await?;
    let mut response = StatusCode::FOUND.into_response();
    let location = HeaderValue::from_str(&url)
        .map_err(|_| ApiError::from(agentd_runtime::Error::Internal("bad authorize URL".into())))?;
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// What the provider sends back.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the provider when the user refused or the request was bad.
    pub error: Option<String>,
}

/// Finishes an OAuth login: checks `state`, exchanges the code with the PKCE verifier, matches or
/// creates the user by verified email, and logs them in.
#[utoipa::path(
    get,
    path = "/auth/oauth/{provider}/callback",
    tag = "auth",
    params(ProviderPath, CallbackQuery),
    responses(
        (status = 200, body = LoginView),
        (status = 303, description = "A browser: the token is set as a cookie and the browser redirected")
    )
)]
async fn oauth_callback(
    State(login): State<Arc<LoginService>>,
    headers: HeaderMap,
    Path(path): Path<ProviderPath>,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    if let Some(error) = query.error {
        tracing::info!(%error, "OAuth provider refused the login");
        return Err(agentd_runtime::Error::InvalidCredentials(
            "the OAuth provider refused the login",
        )
        .into());
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return Err(agentd_runtime::Error::invalid(
            "code",
            "the callback needs `code` and `state`",
        )
        .into());
    };
    let (session, redirect_to) = login.oauth_callback(&path.provider, &code, &state).await?;
    Ok(logged_in(
        &headers,
        session,
        redirect_to,
        login.secure_cookies(),
    ))
}

/// The public key agentd's JWTs are signed with, as a JSON Web Key Set.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    responses((status = 200, description = "A JSON Web Key Set", body = Object))
)]
async fn jwks(State(tokens): State<Arc<TokenService>>) -> axum::Json<serde_json::Value> {
    axum::Json(tokens.jwks())
}
