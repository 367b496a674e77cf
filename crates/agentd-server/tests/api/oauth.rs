//! OAuth / OpenID Connect logins and external JWTs, end to end against a real OIDC provider
//! (`agentd_testkit::oidc`): the browser's trip through authorize → provider → callback, `state` and
//! PKCE, matching or creating users by verified email, the cookie a browser gets, refresh, agentd's
//! JWKS checked with ring, and the tokens of a trusted external issuer with their scopes.

use agentd_core::Role;
use agentd_runtime::auth_config::{JwtIssuerConfig, OAuthProviderConfig};
use agentd_runtime::Config;
use agentd_testkit::oidc::{CLIENT_ID, CLIENT_SECRET, CLIENT_SECRET_ENV};
use agentd_testkit::{backend_tests, spawn_app_with, OidcProvider, OidcUser, TestApp, TestDb};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, Response, StatusCode, Url};
use serde_json::{json, Value};

use crate::assert_problem;

/// The provider's name in `[auth.oauth.<name>]`.
const PROVIDER: &str = "corp";
/// The audience external tokens must carry.
const AUDIENCE: &str = "agentd-api";

/// A config with the provider as `[auth.oauth.corp]` (discovered from its issuer); users it
/// creates are viewers.
fn oauth_config(provider: &OidcProvider, create_users: bool) -> Config {
    let mut config = Config::default();
    config.auth.oauth.insert(
        PROVIDER.to_owned(),
        OAuthProviderConfig {
            issuer: Some(provider.url()),
            client_id: CLIENT_ID.to_owned(),
            client_secret_env: Some(CLIENT_SECRET_ENV.to_owned()),
            create_users,
            default_role: Some(Role::Viewer),
            ..OAuthProviderConfig::default()
        },
    );
    config
}

/// A client that, like a test of a browser's trip, sees each redirect instead of following it.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `GET /auth/oauth/corp/authorize?<query>`: asserts the 302 and returns the provider URL it names.
async fn start_login(app: &TestApp, query: &str) -> String {
    let response = no_redirects()
        .get(app.url(&format!("/auth/oauth/{PROVIDER}/authorize?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    location(&response)
}

/// Follows agentd's redirect to the provider, which approves at once; returns the callback URL the
/// provider sends the browser back to.
async fn approve(app: &TestApp, provider_url: &str) -> String {
    let response = no_redirects().get(provider_url).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "the provider approves"
    );
    let callback = location(&response);
    assert!(
        callback.starts_with(&app.url(&format!("/auth/oauth/{PROVIDER}/callback?"))),
        "the provider sends the browser back to agentd: {callback}"
    );
    callback
}

/// Calls the callback as an API client (JSON answer).
async fn callback(url: &str) -> Response {
    no_redirects().get(url).send().await.unwrap()
}

/// The whole trip as an API client; returns agentd's answer to the callback.
async fn oauth_login(app: &TestApp) -> Response {
    let provider_url = start_login(app, "tenant=default").await;
    let callback_url = approve(app, &provider_url).await;
    callback(&callback_url).await
}

/// Logs in through the provider and returns the login JSON, asserting a 200.
async fn logged_in(app: &TestApp) -> Value {
    let response = oauth_login(app).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn add_user(app: &TestApp, email: &str, role: &str) -> Value {
    let response = app
        .post_json("/users", &json!({"email": email, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn user_count(app: &TestApp) -> usize {
    app.get_json("/users").await["data"]
        .as_array()
        .unwrap()
        .len()
}

/// The status of `method path` with `token` as bearer credential.
async fn status_with(app: &TestApp, method: Method, path: &str, token: &str) -> StatusCode {
    let mut request = app.request(method.clone(), path, token);
    if method == Method::POST {
        request = request.json(&json!({"name": "made-with-a-jwt"}));
    }
    request.send().await.unwrap().status()
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn oauth_login_matches_an_existing_user_by_verified_email(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, oauth_config(&provider, false)).await;
    let ann = add_user(&app, "ann@example.com", "admin").await;
    // The provider's spelling of the address does not matter.
    provider.set_user(OidcUser::verified("Ann@Example.COM"));

    let login = logged_in(&app).await;
    assert_eq!(login["token_type"], "Bearer");
    assert!(login["expires_in"].as_u64().unwrap() > 0, "{login}");
    assert!(login["refresh_token"].as_str().unwrap().len() >= 20);
    assert_eq!(login["user"]["id"], ann["id"]);
    assert_eq!(login["user"]["email"], "ann@example.com");
    assert_eq!(login["user"]["role"], "admin");
    assert!(login["user"]["last_login_at"].is_string(), "{login}");

    // agentd asked for the code flow with a fresh state and an S256 challenge…
    let asked = provider.requests_to("/authorize");
    assert_eq!(asked.len(), 1);
    let asked = &asked[0];
    assert_eq!(asked.param("response_type"), Some("code"));
    assert_eq!(asked.param("client_id"), Some(CLIENT_ID));
    assert_eq!(asked.param("code_challenge_method"), Some("S256"));
    let callback_url = app.url(&format!("/auth/oauth/{PROVIDER}/callback"));
    assert_eq!(asked.param("redirect_uri"), Some(callback_url.as_str()));
    assert!(asked
        .param("scope")
        .unwrap()
        .split(' ')
        .any(|s| s == "openid"));
    assert!(asked.param("state").unwrap().len() >= 20);
    // …and redeemed the code with the client secret and the verifier behind that challenge.
    let redeemed = provider.requests_to("/token");
    assert_eq!(redeemed.len(), 1);
    let redeemed = &redeemed[0];
    assert_eq!(redeemed.param("grant_type"), Some("authorization_code"));
    assert_eq!(redeemed.param("client_secret"), Some(CLIENT_SECRET));
    assert_eq!(redeemed.param("redirect_uri"), Some(callback_url.as_str()));
    let verifier = redeemed.param("code_verifier").unwrap();
    assert!(verifier.len() >= 43, "RFC 7636 wants 43 to 128 characters");
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    assert_eq!(asked.param("code_challenge"), Some(challenge.as_str()));
    let userinfo = provider.requests_to("/userinfo");
    assert!(userinfo[0]
        .authorization
        .as_deref()
        .is_some_and(|auth| auth.starts_with("Bearer ")));

    // The JWT is a credential, and it speaks for Ann.
    let jwt = login["access_token"].as_str().unwrap();
    assert_eq!(
        status_with(&app, Method::GET, "/users", jwt).await,
        StatusCode::OK
    );
    let created = app
        .request(Method::POST, "/agents", jwt)
        .json(&json!({"name": "anns-agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let agent: Value = created.json().await.unwrap();
    app.runtime.audit.flush().await;
    let trail = app
        .get_json(&format!(
            "/audit?actor=user:{}",
            ann["id"].as_str().unwrap()
        ))
        .await;
    let target = format!("/agents/{}", agent["id"].as_str().unwrap());
    assert!(
        trail["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["action"] == "POST /agents" && entry["target"] == target),
        "the agent was made by Ann: {trail}"
    );

    // Without `create_users`, a verified address that no user has is refused.
    provider.set_user(OidcUser::verified("stranger@example.com"));
    let users_before = user_count(&app).await;
    assert_problem(oauth_login(&app).await, 401, "invalid_credentials").await;
    assert_eq!(user_count(&app).await, users_before);
}

async fn oauth_login_creates_users_with_the_default_role_when_allowed(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, oauth_config(&provider, true)).await;
    provider.set_user(OidcUser::verified("new@example.com"));
    let users_before = user_count(&app).await;

    let first = logged_in(&app).await;
    assert_eq!(first["user"]["email"], "new@example.com");
    assert_eq!(first["user"]["role"], "viewer");
    assert_eq!(first["user"]["name"], "Test User", "the provider's name");
    assert_eq!(user_count(&app).await, users_before + 1);
    // A viewer reads agents but makes none.
    let jwt = first["access_token"].as_str().unwrap();
    assert_eq!(
        status_with(&app, Method::GET, "/agents", jwt).await,
        StatusCode::OK
    );
    let refused = app
        .request(Method::POST, "/agents", jwt)
        .json(&json!({"name": "not-for-viewers"}))
        .send()
        .await
        .unwrap();
    assert_problem(refused, 403, "missing_scope").await;

    // The second login finds the user the first one made.
    let second = logged_in(&app).await;
    assert_eq!(second["user"]["id"], first["user"]["id"]);
    assert_eq!(user_count(&app).await, users_before + 1);
}

async fn forged_replayed_and_reused_oauth_callbacks_are_refused(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, oauth_config(&provider, true)).await;
    let callback_path = app.url(&format!("/auth/oauth/{PROVIDER}/callback"));

    // A state agentd never issued.
    let forged = callback(&format!("{callback_path}?code=anything&state=forged-state")).await;
    assert_problem(forged, 401, "invalid_credentials").await;
    assert!(
        provider.requests_to("/token").is_empty(),
        "a forged state never reaches the provider"
    );

    // A good login, then the same callback URL again: the state is spent.
    let provider_url = start_login(&app, "").await;
    let callback_url = approve(&app, &provider_url).await;
    assert_eq!(callback(&callback_url).await.status(), StatusCode::OK);
    assert_problem(callback(&callback_url).await, 401, "invalid_credentials").await;

    // A fresh state with the spent code: agentd tries it, and the provider says invalid_grant.
    let used_code = query_param(&callback_url, "code").unwrap();
    let fresh_state = query_param(&start_login(&app, "").await, "state").unwrap();
    let tokens_before = provider.requests_to("/token").len();
    let reused = callback(&format!(
        "{callback_path}?code={used_code}&state={fresh_state}"
    ))
    .await;
    let problem = assert_problem(reused, 401, "invalid_credentials").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("refused"),
        "{problem}"
    );
    let tokens = provider.requests_to("/token");
    assert_eq!(tokens.len(), tokens_before + 1);
    assert_eq!(
        tokens.last().unwrap().param("code"),
        Some(used_code.as_str())
    );

    // The provider reporting a refusal, and a callback without a code.
    let denied = callback(&format!("{callback_path}?error=access_denied&state=x")).await;
    assert_problem(denied, 401, "invalid_credentials").await;
    let bare = callback(&format!("{callback_path}?state=x")).await;
    assert_problem(bare, 422, "invalid_field").await;
}

async fn an_unverified_email_is_refused(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, oauth_config(&provider, true)).await;
    add_user(&app, "ann@example.com", "member").await;
    let users_before = user_count(&app).await;

    // Neither an existing user nor a new one logs in on an address the provider does not vouch for.
    for email in ["ann@example.com", "unknown@example.com"] {
        provider.set_user(OidcUser::unverified(email));
        let problem = assert_problem(oauth_login(&app).await, 401, "invalid_credentials").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("email_verified"),
            "{problem}"
        );
    }
    assert_eq!(user_count(&app).await, users_before);
}

async fn a_browser_gets_an_http_only_cookie_and_goes_to_redirect_to(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, oauth_config(&provider, false)).await;
    add_user(&app, "ann@example.com", "member").await;
    provider.set_user(OidcUser::verified("ann@example.com"));

    let provider_url =
        start_login(&app, "tenant=default&redirect_to=%2Fui%2Fagents%3Ftab%3D1").await;
    let callback_url = approve(&app, &provider_url).await;
    let response = no_redirects()
        .get(&callback_url)
        .header(ACCEPT, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/ui/agents?tab=1");
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attributes.contains(&"HttpOnly"), "{cookie}");
    assert!(attributes.contains(&"Path=/"), "{cookie}");
    assert!(attributes.contains(&"SameSite=Lax"), "{cookie}");
    let pair = attributes[0];
    let token = pair.strip_prefix("agentd_token=").unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {cookie}");

    // The cookie alone is a credential.
    let with_cookie = app
        .client
        .get(app.url("/agents"))
        .header(COOKIE, pair)
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), StatusCode::OK);
    let without = app.client.get(app.url("/agents")).send().await.unwrap();
    assert_problem(without, 401, "missing_credentials").await;
    let forged_cookie = app
        .client
        .get(app.url("/agents"))
        .header(COOKIE, "agentd_token=not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_problem(forged_cookie, 401, "invalid_credentials").await;
}

async fn redirect_to_must_be_a_path_on_this_server(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, oauth_config(&provider, false)).await;
    for target in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "ui",
        "/ui\r\nSet-Cookie: x=y",
    ] {
        let query: String = url_encoded(target);
        let response = no_redirects()
            .get(app.url(&format!(
                "/auth/oauth/{PROVIDER}/authorize?redirect_to={query}"
            )))
            .send()
            .await
            .unwrap();
        assert!(
            response.status() == 400 || response.status() == 422,
            "{target:?} answered {}",
            response.status()
        );
        assert_problem(response, 422, "invalid_field").await;
    }
    assert!(provider.requests().is_empty(), "nobody was sent anywhere");

    let unknown = no_redirects()
        .get(app.url("/auth/oauth/nope/authorize"))
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404, "not_found").await;
    let no_tenant = no_redirects()
        .get(app.url(&format!("/auth/oauth/{PROVIDER}/authorize?tenant=nope")))
        .send()
        .await
        .unwrap();
    assert_problem(no_tenant, 404, "not_found").await;
}

fn url_encoded(text: &str) -> String {
    let mut url = Url::parse("http://x/").unwrap();
    url.query_pairs_mut().append_pair("v", text);
    url.query().unwrap().trim_start_matches("v=").to_owned()
}

async fn a_refresh_token_works_once(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, oauth_config(&provider, true)).await;
    let login = logged_in(&app).await;
    let refresh = |token: Value| {
        app.client
            .post(app.url("/auth/refresh"))
            .json(&json!({"refresh_token": token}))
            .send()
    };

    let renewed = refresh(login["refresh_token"].clone()).await.unwrap();
    assert_eq!(renewed.status(), StatusCode::OK);
    let renewed: Value = renewed.json().await.unwrap();
    assert_eq!(renewed["user"]["id"], login["user"]["id"]);
    assert_ne!(renewed["refresh_token"], login["refresh_token"]);
    assert_ne!(renewed["access_token"], login["access_token"]);
    let jwt = renewed["access_token"].as_str().unwrap();
    assert_eq!(
        status_with(&app, Method::GET, "/agents", jwt).await,
        StatusCode::OK
    );

    // The old refresh token is spent; the new one works (once).
    let spent = refresh(login["refresh_token"].clone()).await.unwrap();
    assert_problem(spent, 401, "invalid_credentials").await;
    let again = refresh(renewed["refresh_token"].clone()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let garbage = refresh(json!("not-a-refresh-token")).await.unwrap();
    assert_problem(garbage, 401, "invalid_credentials").await;
}

async fn the_jwks_holds_the_key_that_signs_agentds_jwts(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, oauth_config(&provider, true)).await;
    let login = logged_in(&app).await;
    let jwt = login["access_token"].as_str().unwrap();

    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "public, without credentials"
    );
    let jwks: Value = response.json().await.unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode_part(parts[0]);
    let claims = decode_part(parts[1]);
    assert_eq!(header["alg"], "EdDSA");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("no key {} in {jwks}", header["kid"]));
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key.get("d").is_none(), "the JWKS holds no private part");

    // Checked with ring alone, as any relying party would.
    let public_key = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public_key);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    assert!(verifier.verify(signed.as_bytes(), &signature).is_ok());
    let other_claims = URL_SAFE_NO_PAD.encode(json!({"sub": "someone-else"}).to_string());
    let tampered = format!("{}.{other_claims}", parts[0]);
    assert!(verifier.verify(tampered.as_bytes(), &signature).is_err());

    assert_eq!(claims["sub"], login["user"]["id"]);
    assert_eq!(claims["aud"], "agentd");
    assert_eq!(claims["iss"], "agentd");
    assert!(claims["tid"].is_string(), "{claims}");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(
        u64::try_from(exp - iat).unwrap(),
        login["expires_in"].as_u64().unwrap()
    );
}

/// A config trusting the provider's tokens as `[auth.jwt_issuers.corp]` (tenant `default`,
/// audience [`AUDIENCE`]) and tokens of `urn:partner`, signed with the same keys, naming their
/// tenant in an `org` claim.
fn issuer_config(provider: &OidcProvider) -> Config {
    let mut config = Config::default();
    config.auth.jwt_issuers.insert(
        "corp".to_owned(),
        JwtIssuerConfig {
            issuer: provider.url(),
            audience: Some(AUDIENCE.to_owned()),
            jwks_url: Some(provider.jwks_url()),
            tenant: Some("default".to_owned()),
            ..JwtIssuerConfig::default()
        },
    );
    config.auth.jwt_issuers.insert(
        "partner".to_owned(),
        JwtIssuerConfig {
            issuer: "urn:partner".to_owned(),
            jwks_url: Some(provider.jwks_url()),
            tenant_claim: Some("org".to_owned()),
            ..JwtIssuerConfig::default()
        },
    );
    config
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims of a good token of `corp` with `scope`.
fn corp_claims(provider: &OidcProvider, scope: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": provider.url(),
        "sub": "svc-reporting",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "scope": scope,
    })
}

async fn external_jwts_carry_their_scopes_and_nothing_more(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, issuer_config(&provider)).await;
    app.create_agent(&json!({"name": "in-default"})).await;

    let reader = provider.sign_jwt(&corp_claims(&provider, "agents:read"));
    let listed = app
        .request(Method::GET, "/agents", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed[0]["name"], "in-default");
    assert!(
        !provider.requests_to("/jwks").is_empty(),
        "agentd fetched the issuer's keys"
    );
    let create = app
        .request(Method::POST, "/agents", &reader)
        .json(&json!({"name": "not-allowed"}))
        .send()
        .await
        .unwrap();
    assert_problem(create, 403, "missing_scope").await;

    // An array of scopes works as well as a space-separated string.
    let mut writer = corp_claims(&provider, "");
    writer["scope"] = json!(["agents:read", "agents:write"]);
    let writer = provider.sign_jwt(&writer);
    assert_eq!(
        status_with(&app, Method::POST, "/agents", &writer).await,
        StatusCode::CREATED
    );
    app.runtime.audit.flush().await;
    let trail = app
        .get_json("/audit?actor=external:corp:svc-reporting")
        .await;
    assert!(
        trail["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["action"] == "POST /agents" && entry["status"] == 201),
        "the audit log names the external subject: {trail}"
    );

    // Claiming the platform admin scope gets nothing of it.
    let claims_admin = provider.sign_jwt(&corp_claims(&provider, "agent_os:admin agents:read"));
    let made = app
        .request(Method::POST, "/tenants", &claims_admin)
        .json(&json!({"slug": "stolen"}))
        .send()
        .await
        .unwrap();
    assert_problem(made, 403, "missing_scope").await;
    assert_eq!(
        status_with(&app, Method::POST, "/agents", &claims_admin).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_with(&app, Method::GET, "/agents", &claims_admin).await,
        StatusCode::OK
    );

    // The tenant comes from the `org` claim for the other issuer.
    app.create_tenant("acme").await;
    let partner = |org: &str| {
        let mut claims = corp_claims(&provider, "agents:read");
        claims["iss"] = json!("urn:partner");
        claims["org"] = json!(org);
        provider.sign_jwt(&claims)
    };
    let in_acme: Value = app
        .request(Method::GET, "/agents", &partner("acme"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(in_acme, json!([]), "acme sees none of default's agents");
    let nowhere = app
        .request(Method::GET, "/agents", &partner("no-such-tenant"))
        .send()
        .await
        .unwrap();
    assert_problem(nowhere, 401, "invalid_credentials").await;
}

async fn bad_external_jwts_are_refused(db: TestDb) {
    let provider = OidcProvider::start().await;
    let app = spawn_app_with(db, issuer_config(&provider)).await;
    let good = corp_claims(&provider, "agents:read");
    let signed = provider.sign_jwt(&good);
    assert_eq!(
        status_with(&app, Method::GET, "/agents", &signed).await,
        StatusCode::OK,
        "the control token works"
    );

    let mut expired = good.clone();
    expired["iat"] = json!(unix_now() - 7200);
    expired["exp"] = json!(unix_now() - 3600);
    let mut not_yet = good.clone();
    not_yet["nbf"] = json!(unix_now() + 3600);
    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = json!("someone-else");
    let mut no_audience = good.clone();
    no_audience.as_object_mut().unwrap().remove("aud");
    let mut unknown_issuer = good.clone();
    unknown_issuer["iss"] = json!("https://issuer.evil.example");
    let mut no_expiry = good.clone();
    no_expiry.as_object_mut().unwrap().remove("exp");

    // The same claims with more scope, under the original signature.
    let parts: Vec<&str> = signed.split('.').collect();
    let mut greedy = good.clone();
    greedy["scope"] = json!("*");
    let swapped_claims = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(greedy.to_string()),
        parts[2]
    );
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let flipped_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&signature)
    );
    // `alg: none` with no signature at all.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        parts[1]
    );

    for (what, token) in [
        ("expired", provider.sign_jwt(&expired)),
        ("not yet valid", provider.sign_jwt(&not_yet)),
        ("wrong audience", provider.sign_jwt(&wrong_audience)),
        ("no audience", provider.sign_jwt(&no_audience)),
        ("unknown issuer", provider.sign_jwt(&unknown_issuer)),
        ("no expiry", provider.sign_jwt(&no_expiry)),
        ("claims changed", swapped_claims),
        ("signature changed", flipped_signature),
        ("unsigned", unsigned),
    ] {
        let response = app
            .request(Method::GET, "/agents", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_problem(response, 401, "invalid_credentials").await;
    }
}

backend_tests!(
    oauth_login_matches_an_existing_user_by_verified_email,
    oauth_login_creates_users_with_the_default_role_when_allowed,
    forged_replayed_and_reused_oauth_callbacks_are_refused,
    an_unverified_email_is_refused,
    a_browser_gets_an_http_only_cookie_and_goes_to_redirect_to,
    redirect_to_must_be_a_path_on_this_server,
    a_refresh_token_works_once,
    the_jwks_holds_the_key_that_signs_agentds_jwts,
    external_jwts_carry_their_scopes_and_nothing_more,
    bad_external_jwts_are_refused,
);
