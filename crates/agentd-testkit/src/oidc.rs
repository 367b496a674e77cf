//! A small OpenID Connect provider for tests: a real HTTP server on `127.0.0.1:0` that agentd can
//! log users in with, and an issuer of Ed25519-signed JWTs for the external-token tests.
//!
//! It serves discovery (`/.well-known/openid-configuration`), `/authorize` (which approves the
//! configured [`OidcUser`] at once and redirects back with `code`, `state` and `iss`), `/token` (the
//! authorization-code grant with `client_secret_post` and PKCE `S256`; a code works once), `/userinfo`
//! (bearer access token) and `/jwks`. It knows one client, [`CLIENT_ID`] with [`CLIENT_SECRET`]
//! (exported in the environment variable [`CLIENT_SECRET_ENV`], which agentd's
//! `client_secret_env` names). Every request is recorded with its query or form parameters, so a test
//! can check what agentd sent, PKCE verifier and client secret included.
//!
//! The checks are those a strict provider makes; a failed one answers the OAuth error shape
//! (`{"error": "invalid_grant", "error_description": ..}`) rather than panicking, so the test sees
//! how agentd copes with the refusal.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Once};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

/// The one client the provider knows.
pub const CLIENT_ID: &str = "agentd-test";
/// That client's secret.
pub const CLIENT_SECRET: &str = "oidc-test-secret";
/// The environment variable [`OidcProvider::start`] puts [`CLIENT_SECRET`] in.
pub const CLIENT_SECRET_ENV: &str = "AGENTD_TEST_OIDC_CLIENT_SECRET";
/// Lifetime of the provider's access tokens and ID tokens, in seconds.
const TOKEN_TTL_SECS: i64 = 3600;

/// The user the provider logs in (the same for every `/authorize` until changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
}

impl OidcUser {
    /// A user whose email the provider vouches for, with a `sub` derived from it.
    pub fn verified(email: &str) -> Self {
        Self {
            sub: format!("sub-{email}"),
            email: email.to_owned(),
            email_verified: true,
            name: Some("Test User".to_owned()),
        }
    }

    /// The same user, with `email_verified: false`.
    pub fn unverified(email: &str) -> Self {
        Self {
            email_verified: false,
            ..Self::verified(email)
        }
    }
}

/// A request the provider received.
#[derive(Clone, Debug)]
pub struct OidcRequest {
    /// `/authorize`, `/token`, `/userinfo`, …
    pub path: String,
    /// The query parameters (`GET`) or form fields (`POST /token`).
    pub params: BTreeMap<String, String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

impl OidcRequest {
    /// One parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// A handle on a running provider. Cloning it shares the same server.
#[derive(Clone)]
pub struct OidcProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    issuer: String,
    key: Ed25519KeyPair,
    kid: String,
    state: Mutex<ProviderState>,
}

struct ProviderState {
    user: OidcUser,
    /// Codes handed out and not yet presented at `/token`.
    codes: HashMap<String, Grant>,
    /// Access tokens issued, and whose they are.
    access_tokens: HashMap<String, OidcUser>,
    requests: Vec<OidcRequest>,
}

/// What an authorization code stands for.
struct Grant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    user: OidcUser,
}

static SECRET_EXPORTED: Once = Once::new();

impl OidcProvider {
    /// Starts a provider on `127.0.0.1:0` on a tokio task of the current runtime, logging in
    /// `user@example.com` (verified) until [`OidcProvider::set_user`] says otherwise.
    pub async fn start() -> OidcProvider {
        // Every test exports the same value, once per process, before any server reads it.
        SECRET_EXPORTED.call_once(|| std::env::set_var(CLIENT_SECRET_ENV, CLIENT_SECRET));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OIDC provider");
        let addr = listener.local_addr().expect("local address");
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("an Ed25519 key");
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("the key just made");
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            kid: URL_SAFE_NO_PAD.encode(&digest.as_ref()[..8]),
            key,
            state: Mutex::new(ProviderState {
                user: OidcUser::verified("user@example.com"),
                codes: HashMap::new(),
                access_tokens: HashMap::new(),
                requests: Vec::new(),
            }),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/jwks", get(jwks))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OidcProvider { addr, shared }
    }

    /// The issuer, `http://127.0.0.1:PORT` (the base URL of every endpoint).
    pub fn url(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The URL of the provider's JSON Web Key Set.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// The `kid` of the provider's signing key.
    pub fn kid(&self) -> &str {
        &self.shared.kid
    }

    /// The user the next `/authorize` logs in.
    pub fn set_user(&self, user: OidcUser) {
        self.lock().user = user;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<OidcRequest> {
        self.lock().requests.clone()
    }

    /// The requests received at `path`, in order.
    pub fn requests_to(&self, path: &str) -> Vec<OidcRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|request| request.path == path)
            .cloned()
            .collect()
    }

    /// A JWT with `claims`, signed EdDSA with the key published at `/jwks` (header `kid` included).
    pub fn sign_jwt(&self, claims: &Value) -> String {
        self.shared.sign(claims)
    }

    fn lock(&self) -> MutexGuard<'_, ProviderState> {
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ProviderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, path: &str, params: &BTreeMap<String, String>, headers: &HeaderMap) {
        let authorization = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.lock().requests.push(OidcRequest {
            path: path.to_owned(),
            params: params.clone(),
            authorization,
        });
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// An OAuth error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let issuer = &shared.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile"],
    }))
}

/// Approves the configured user at once: back to `redirect_uri` with a fresh code and the `state`.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    shared.record("/authorize", &params, &headers);
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    // Without a known client and a redirect URI there is nowhere safe to send an error to.
    if param("client_id") != CLIENT_ID {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "unknown client");
    }
    let Ok(mut back) = url::Url::parse(param("redirect_uri")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is not a URL",
        );
    };
    if param("response_type") != "code" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "only the code flow",
        );
    }
    if param("code_challenge").is_empty() || param("code_challenge_method") != "S256" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "PKCE with S256 is required",
        );
    }
    let code = random_token();
    {
        let mut state = shared.lock();
        let user = state.user.clone();
        state.codes.insert(
            code.clone(),
            Grant {
                client_id: param("client_id").to_owned(),
                redirect_uri: param("redirect_uri").to_owned(),
                code_challenge: param("code_challenge").to_owned(),
                user,
            },
        );
    }
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", param("state"))
        .append_pair("iss", &shared.issuer);
    (StatusCode::FOUND, [(LOCATION, back.to_string())]).into_response()
}

/// The authorization-code grant: client secret, the code (once), its redirect URI and PKCE.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    shared.record("/token", &params, &headers);
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if param("grant_type") != "authorization_code" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        );
    }
    if param("client_id") != CLIENT_ID || param("client_secret") != CLIENT_SECRET {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "wrong client id or secret",
        );
    }
    // The code is spent by being presented, whatever follows.
    let Some(grant) = shared.lock().codes.remove(param("code")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or already used code",
        );
    };
    if grant.client_id != param("client_id") || grant.redirect_uri != param("redirect_uri") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code was issued to another client or redirect_uri",
        );
    }
    let verifier = param("code_verifier");
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    if verifier.is_empty() || challenge != grant.code_challenge {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code_verifier does not match the code_challenge",
        );
    }
    let access_token = random_token();
    let issued_at = now();
    let id_token = shared.sign(&json!({
        "iss": shared.issuer,
        "sub": grant.user.sub,
        "aud": CLIENT_ID,
        "iat": issued_at,
        "exp": issued_at + TOKEN_TTL_SECS,
        "email": grant.user.email,
        "email_verified": grant.user.email_verified,
    }));
    shared
        .lock()
        .access_tokens
        .insert(access_token.clone(), grant.user);
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL_SECS,
        "scope": "openid email profile",
        "id_token": id_token,
    }))
    .into_response()
}

/// The user behind a bearer access token.
async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.record("/userinfo", &BTreeMap::new(), &headers);
    let user = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| shared.lock().access_tokens.get(token).cloned());
    let Some(user) = user else {
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        )
            .into_response();
    };
    Json(json!({
        "sub": user.sub,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Json<Value> {
    shared.record("/jwks", &BTreeMap::new(), &headers);
    Json(json!({"keys": [{
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": shared.kid,
        "x": URL_SAFE_NO_PAD.encode(shared.key.public_key().as_ref()),
    }]}))
}
