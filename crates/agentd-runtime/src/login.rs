//! Logging users in: magic links by mail, OAuth 2.0 / OpenID Connect with `state` and PKCE, and
//! the refresh of the resulting sessions. Each ends in a [`LoginSession`]: a short-lived JWT plus
//! a one-time refresh token.
//!
//! Asking for a magic link never tells whether the address has a user: the answer is the same, the
//! mail goes out in the background, and the limits per address and per client apply either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentd_core::user::{StoredToken, TokenKind};
use agentd_core::{Email, OneTimeToken, Role, TenantId, TenantSlug, User};
use agentd_store::{OAuthState, Store, TokenUse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use crate::auth_config::{AuthConfig, OAuthPreset, OAuthProviderConfig};
use crate::mail::Mailer;
use crate::tokens::{AccessToken, TokenService};
use crate::Error;

/// The window the magic-link limits count in.
const LINK_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a user has to come back from the OAuth provider.
const OAUTH_STATE_TTL_SECS: i64 = 10 * 60;

/// A logged-in user's tokens.
#[derive(Debug)]
pub struct LoginSession {
    pub access: AccessToken,
    pub refresh_token: OneTimeToken,
    pub user: User,
}

/// Logins.
pub struct LoginService {
    store: Arc<dyn Store>,
    tokens: Arc<TokenService>,
    mailer: Arc<Mailer>,
    config: AuthConfig,
    public_url: String,
    link_windows: Mutex<HashMap<String, (Instant, u32)>>,
    http: reqwest::Client,
    discovered: Mutex<HashMap<String, Endpoints>>,
}

/// The three URLs of an OAuth provider.
#[derive(Clone, Debug)]
struct Endpoints {
    authorize: String,
    token: String,
    userinfo: String,
}

impl LoginService {
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Arc<TokenService>,
        mailer: Arc<Mailer>,
        config: AuthConfig,
        public_url: String,
    ) -> Result<Self, Error> {
        Ok(Self {
            store,
            tokens,
            mailer,
            config,
            public_url: public_url.trim_end_matches('/').to_owned(),
            link_windows: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .user_agent("agentd")
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))?,
            discovered: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one magic-link request against `bucket`; past `limit` in the window, a rate error.
    fn count_link_request(&self, bucket: String, limit: u32) -> Result<(), Error> {
        let now = Instant::now();
        let mut windows = self.link_windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (started, _)| now.duration_since(*started) < LINK_WINDOW);
        }
        let window = windows.entry(bucket).or_insert((now, 0));
        if now.duration_since(window.0) >= LINK_WINDOW {
            *window = (now, 0);
        }
        if window.1 >= limit {
            let left = LINK_WINDOW.saturating_sub(now.duration_since(window.0));
            return Err(Error::RateLimited {
                limit,
                retry_after_secs: left.as_secs().max(1),
            });
        }
        window.1 += 1;
        Ok(())
    }

    /// Sends a magic link to `email` if the tenant has such a user. The outcome is the same either
    /// way; only a malformed address or a rate limit is an error.
    #[tracing::instrument(skip_all)]
    pub async fn request_link(
        self: &Arc<Self>,
        tenant: Option<&str>,
        email: &str,
        client: Option<&str>,
    ) -> Result<(), Error> {
        let email = Email::parse(email).map_err(|e| Error::invalid("email", e.to_string()))?;
        self.count_link_request(
            format!("email:{}", email.as_str()),
            self.config.magic_links_per_email,
        )?;
        if let Some(client) = client {
            self.count_link_request(format!("ip:{client}"), self.config.magic_links_per_ip)?;
        }
        let tenant = tenant.unwrap_or("default").to_owned();
        // The lookup and the mail happen after the answer, so its timing tells nothing either.
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(error) = this.send_link(&tenant, email).await {
                tracing::warn!(%error, "magic link not sent");
            }
        });
        Ok(())
    }

    async fn send_link(&self, tenant: &str, email: Email) -> Result<(), Error> {
        let Some(tenant) = self.tenant_by_slug(tenant).await? else {
            return Ok(());
        };
        let Some(user) = self.store.find_user_by_email(tenant, &email).await? else {
            tracing::info!("magic link asked for an address with no user");
            return Ok(());
        };
        let token = OneTimeToken::generate();
        let now = agentd_core::now();
        self.store
            .insert_token(&StoredToken {
                hash: token.hash(),
                kind: TokenKind::MagicLink,
                tenant_id: tenant,
                user_id: user.id,
                created_at: now,
                expires_at: now + seconds(self.config.magic_link_ttl_secs),
                used_at: None,
            })
            .await?;
        let link = format!(
            "{}/auth/link/verify?token={}",
            self.public_url,
            token.reveal()
        );
        let minutes = self.config.magic_link_ttl_secs / 60;
        let body = format!(
            "Hello,\n\nopen this link to log in to agentd:\n\n{link}\n\n\
             It works once, for {minutes} minutes. If you did not ask for it, ignore this mail.\n"
        );
        self.mailer
            .send(user.email.as_str(), "Your agentd login link", body)
            .await
    }

    async fn tenant_by_slug(&self, slug: &str) -> Result<Option<TenantId>, Error> {
        let Ok(slug) = TenantSlug::parse(slug) else {
            return Ok(None);
        };
        Ok(self.store.get_tenant_by_slug(&slug).await?.map(|t| t.id))
    }

    /// Logs in with a magic link's token: it works once, before it expires.
    #[tracing::instrument(skip_all)]
    pub async fn verify_link(&self, token: &str) -> Result<LoginSession, Error> {
        let user = self.spend(TokenKind::MagicLink, token).await?;
        self.start_session(user).await
    }

    /// Trades a refresh token for a new access token and a new refresh token; the old one is spent.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<LoginSession, Error> {
        let user = self.spend(TokenKind::Refresh, refresh_token).await?;
        self.issue(user).await
    }

    /// Spends a one-time token of `kind` and returns the user it logs in; the error says whether
    /// the token was used, expired or unknown.
    async fn spend(&self, kind: TokenKind, token: &str) -> Result<User, Error> {
        let hash = OneTimeToken::presented(token).hash();
        let (used, expired, unknown) = match kind {
            TokenKind::MagicLink => (
                "this login link was used already",
                "this login link has expired",
                "unknown login link",
            ),
            TokenKind::Refresh => (
                "this refresh token was used already",
                "this refresh token has expired",
                "unknown refresh token",
            ),
        };
        let stored = match self
            .store
            .use_token(kind, &hash, agentd_core::now())
            .await?
        {
            TokenUse::Used(stored) => stored,
            TokenUse::AlreadyUsed => return Err(Error::InvalidCredentials(used)),
            TokenUse::Expired => return Err(Error::InvalidCredentials(expired)),
            TokenUse::Unknown => return Err(Error::InvalidCredentials(unknown)),
        };
        self.store
            .get_user(stored.tenant_id, stored.user_id)
            .await?
            .ok_or(Error::InvalidCredentials("the user no longer exists"))
    }

    /// Ends one session by spending its refresh token. An unknown or spent token is no error: the
    /// session is over either way.
    pub async fn end_session(&self, refresh_token: &str) -> Result<(), Error> {
        let hash = OneTimeToken::presented(refresh_token).hash();
        self.store
            .use_token(TokenKind::Refresh, &hash, agentd_core::now())
            .await?;
        Ok(())
    }

    /// Ends every session of a user: their refresh tokens stop working (access tokens run out on
    /// their own within minutes).
    pub async fn logout(&self, tenant: TenantId, user: agentd_core::UserId) -> Result<(), Error> {
        self.store
            .revoke_user_tokens(tenant, user, agentd_core::now())
            .await?;
        Ok(())
    }

    /// Records the login and issues the tokens.
    async fn start_session(&self, mut user: User) -> Result<LoginSession, Error> {
        user.last_login_at = Some(agentd_core::now());
        self.store.update_user(&user).await?;
        tracing::info!(user.id = %user.id, tenant.id = %user.tenant_id, "user logged in");
        self.issue(user).await
    }

    async fn issue(&self, user: User) -> Result<LoginSession, Error> {
        let refresh_token = OneTimeToken::generate();
        let now = agentd_core::now();
        self.store
            .insert_token(&StoredToken {
                hash: refresh_token.hash(),
                kind: TokenKind::Refresh,
                tenant_id: user.tenant_id,
                user_id: user.id,
                created_at: now,
                expires_at: now + seconds(self.config.refresh_token_ttl_secs),
                used_at: None,
            })
            .await?;
        Ok(LoginSession {
            access: self
                .tokens
                .issue(user.tenant_id, user.id, user.role.as_str()),
            refresh_token,
            user,
        })
    }

    fn provider(&self, name: &str) -> Result<&OAuthProviderConfig, Error> {
        self.config
            .oauth
            .get(name)
            .ok_or(Error::NotFound("OAuth provider"))
    }

    fn callback_url(&self, provider: &str) -> String {
        format!("{}/auth/oauth/{provider}/callback", self.public_url)
    }

    /// Where to send the browser to log in with `provider`: the provider's authorize URL with a
    /// fresh `state` and PKCE challenge, remembered for the callback.
    #[tracing::instrument(skip_all, fields(oauth.provider = %provider))]
    pub async fn oauth_authorize(
        &self,
        provider: &str,
        tenant: Option<&str>,
        redirect_to: Option<String>,
    ) -> Result<String, Error> {
        let config = self.provider(provider)?;
        if let Some(target) = &redirect_to {
            // Only paths of this server: an open redirect would hand the login to anyone. Browsers
            // read `\` as `/` (so `/\evil.example` is `//evil.example`), and a control character
            // cannot go into the `Location` header.
            if !target.starts_with('/')
                || target.starts_with("//")
                || target.contains('\\')
                || target.chars().any(char::is_control)
            {
                return Err(Error::invalid(
                    "redirect_to",
                    "must be a path on this server, such as `/ui`",
                ));
            }
        }
        let tenant_slug = tenant.unwrap_or("default");
        let tenant_id = self
            .tenant_by_slug(tenant_slug)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
        let endpoints = self.endpoints(provider, config).await?;
        let state = OneTimeToken::generate();
        let verifier = OneTimeToken::generate();
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.reveal().as_bytes(),
        ));
        let now = agentd_core::now();
        self.store
            .insert_oauth_state(&OAuthState {
                hash: state.hash(),
                provider: provider.to_owned(),
                tenant_id,
                code_verifier: verifier.reveal().to_owned(),
                redirect_to,
                created_at: now,
                expires_at: now + chrono::Duration::seconds(OAUTH_STATE_TTL_SECS),
            })
            .await?;
        let mut url = url::Url::parse(&endpoints.authorize)
            .map_err(|e| Error::Config(format!("auth.oauth.{provider} authorize URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", &self.callback_url(provider))
            .append_pair("scope", &scopes_of(config))
            .append_pair("state", state.reveal())
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Finishes an OAuth login: spends the `state`, exchanges the code (with the PKCE verifier),
    /// reads the user's verified email and logs that user in (creating them if the provider allows).
    /// Returns the session and where to send the browser.
    #[tracing::instrument(skip_all, fields(oauth.provider = %provider))]
    pub async fn oauth_callback(
        &self,
        provider: &str,
        code: &str,
        state: &str,
    ) -> Result<(LoginSession, Option<String>), Error> {
        let config = self.provider(provider)?;
        let pending = self
            .store
            .take_oauth_state(&OneTimeToken::presented(state).hash())
            .await?
            .filter(|pending| pending.provider == provider)
            .ok_or(Error::InvalidCredentials(
                "unknown or already used OAuth state: start the login again",
            ))?;
        if pending.expires_at <= agentd_core::now() {
            return Err(Error::InvalidCredentials(
                "the OAuth login took too long: start it again",
            ));
        }
        let endpoints = self.endpoints(provider, config).await?;
        let secret = match &config.client_secret_env {
            Some(var) => std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "auth.oauth.{provider}.client_secret_env: `{var}` is not set"
                ))
            })?,
            None => String::new(),
        };
        let redirect_uri = self.callback_url(provider);
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", config.client_id.as_str()),
            ("code_verifier", pending.code_verifier.as_str()),
        ];
        if !secret.is_empty() {
            form.push(("client_secret", secret.as_str()));
        }
        let response = self
            .http
            .post(&endpoints.token)
            .header("accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| Error::Internal(format!("OAuth token endpoint: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(access_token) = body["access_token"]
            .as_str()
            .filter(|_| status.is_success())
        else {
            tracing::info!(%status, error = %body["error"], "OAuth code refused");
            return Err(Error::InvalidCredentials(
                "the OAuth provider refused the code (used already, expired or forged)",
            ));
        };
        let (email, name) = self
            .verified_email(config, &endpoints, access_token)
            .await?;
        let user = match self
            .store
            .find_user_by_email(pending.tenant_id, &email)
            .await?
        {
            Some(user) => user,
            None if config.create_users => {
                let role = config.default_role.unwrap_or(Role::Member);
                let user = User::new(pending.tenant_id, email, name, role);
                self.store.insert_user(&user).await?;
                user
            }
            None => {
                return Err(Error::InvalidCredentials(
                    "no user of this tenant has that email; ask an admin to add you",
                ))
            }
        };
        Ok((self.start_session(user).await?, pending.redirect_to))
    }

    /// The user's verified email and, if the provider gives one, their name.
    async fn verified_email(
        &self,
        config: &OAuthProviderConfig,
        endpoints: &Endpoints,
        access_token: &str,
    ) -> Result<(Email, Option<String>), Error> {
        let get = |url: String| {
            self.http
                .get(url)
                .bearer_auth(access_token)
                .header("accept", "application/json")
                .send()
        };
        let failed = |e: reqwest::Error| Error::Internal(format!("OAuth userinfo: {e}"));
        let info: Value = get(endpoints.userinfo.clone())
            .await
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)?;
        let name = info["name"]
            .as_str()
            .map(|name| name.trim().chars().take(200).collect::<String>())
            .filter(|name| !name.is_empty());
        if config.preset == Some(OAuthPreset::Github) {
            // GitHub's profile shows no verification: its email list does.
            let emails: Value = get(format!("{}/emails", endpoints.userinfo))
                .await
                .map_err(failed)?
                .json()
                .await
                .map_err(failed)?;
            let primary = emails
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["primary"] == true && e["verified"] == true)
                .and_then(|e| e["email"].as_str())
                .ok_or(Error::InvalidCredentials(
                    "the GitHub account has no verified primary email",
                ))?;
            return Email::parse(primary)
                .map(|email| (email, name))
                .map_err(|_| Error::InvalidCredentials("the provider's email is malformed"));
        }
        if info["email_verified"] != true {
            return Err(Error::InvalidCredentials(
                "the provider did not vouch for the email (email_verified is not true)",
            ));
        }
        let email = info["email"]
            .as_str()
            .ok_or(Error::InvalidCredentials("the provider gave no email"))?;
        Email::parse(email)
            .map(|email| (email, name))
            .map_err(|_| Error::InvalidCredentials("the provider's email is malformed"))
    }

    /// Whether login cookies must be `Secure`: when users reach agentd over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The provider's URLs: configured, from a preset, or discovered from the OIDC issuer.
    async fn endpoints(
        &self,
        name: &str,
        config: &OAuthProviderConfig,
    ) -> Result<Endpoints, Error> {
        let (authorize, token, userinfo) = match config.preset {
            Some(OAuthPreset::Github) => (
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
                "https://api.github.com/user",
            ),
            Some(OAuthPreset::Google) => (
                "https://accounts.google.com/o/oauth2/v2/auth",
                "https://oauth2.googleapis.com/token",
                "https://openidconnect.googleapis.com/v1/userinfo",
            ),
            None => ("", "", ""),
        };
        let pick = |configured: &Option<String>, preset: &str| {
            configured
                .clone()
                .or_else(|| (!preset.is_empty()).then(|| preset.to_owned()))
        };
        let known = (
            pick(&config.authorize_url, authorize),
            pick(&config.token_url, token),
            pick(&config.userinfo_url, userinfo),
        );
        if let (Some(authorize), Some(token), Some(userinfo)) = known.clone() {
            return Ok(Endpoints {
                authorize,
                token,
                userinfo,
            });
        }
        let Some(issuer) = &config.issuer else {
            return Err(Error::Config(format!(
                "auth.oauth.{name}: give `issuer`, a `preset`, or authorize_url, token_url and userinfo_url"
            )));
        };
        if let Some(found) = self
            .discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(found.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document: Value = async {
            self.http
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await
        }
        .await
        .map_err(|e| Error::Internal(format!("OIDC discovery at {url}: {e}")))?;
        let field = |key: &str| document[key].as_str().map(str::to_owned);
        let endpoints = Endpoints {
            authorize: known
                .0
                .or(field("authorization_endpoint"))
                .ok_or_else(|| Error::Internal(format!("{url} names no authorization_endpoint")))?,
            token: known
                .1
                .or(field("token_endpoint"))
                .ok_or_else(|| Error::Internal(format!("{url} names no token_endpoint")))?,
            userinfo: known
                .2
                .or(field("userinfo_endpoint"))
                .ok_or_else(|| Error::Internal(format!("{url} names no userinfo_endpoint")))?,
        };
        self.discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), endpoints.clone());
        Ok(endpoints)
    }
}

fn scopes_of(config: &OAuthProviderConfig) -> String {
    match (&config.scopes, config.preset) {
        (Some(scopes), _) => scopes.clone(),
        (None, Some(OAuthPreset::Github)) => "read:user user:email".to_owned(),
        (None, _) => "openid email profile".to_owned(),
    }
}

fn seconds(secs: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2_000))
}
