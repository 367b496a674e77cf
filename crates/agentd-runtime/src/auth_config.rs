//! The `[auth]` and `[smtp]` configuration: how users log in (magic link, OAuth providers), the
//! lifetimes of agentd's JWTs, and which external JWT issuers are trusted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Logins and tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// The URL users reach this server at, for links in mails and OAuth callbacks. Unset, it is
    /// `http://<listen>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The `iss` of the JWTs agentd issues (and accepts as its own).
    pub issuer: String,
    /// Lifetime of an access token (JWT), in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Lifetime of a magic link, in seconds.
    pub magic_link_ttl_secs: u64,
    /// Magic links one email address may ask for per 15 minutes.
    pub magic_links_per_email: u32,
    /// Magic links one client address may ask for per 15 minutes.
    pub magic_links_per_ip: u32,
    /// OAuth 2.0 / OpenID Connect providers by name (`/auth/oauth/<name>/authorize`).
    pub oauth: BTreeMap<String, OAuthProviderConfig>,
    /// External JWT issuers whose tokens are accepted, by name.
    pub jwt_issuers: BTreeMap<String, JwtIssuerConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            issuer: "agentd".to_owned(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            magic_link_ttl_secs: 15 * 60,
            magic_links_per_email: 5,
            magic_links_per_ip: 20,
            oauth: BTreeMap::new(),
            jwt_issuers: BTreeMap::new(),
        }
    }
}

/// One OAuth provider. With `preset = "github"` or `"google"` the URLs are known; with `issuer`
/// they are discovered from `<issuer>/.well-known/openid-configuration`; else give all three.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OAuthProviderConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<OAuthPreset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_url: Option<String>,
    pub client_id: String,
    /// The environment variable holding the client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// The scopes asked for; default `openid email profile` (`read:user user:email` for GitHub).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// Whether a verified email with no user yet creates one (with `default_role`); otherwise only
    /// existing users may log in.
    pub create_users: bool,
    /// The role of users created at login.
    pub default_role: Option<agentd_core::Role>,
}

/// Known OAuth providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthPreset {
    Github,
    Google,
}

/// An external issuer of JWTs that agentd accepts as credentials.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JwtIssuerConfig {
    /// The `iss` the tokens must carry.
    pub issuer: String,
    /// The `aud` the tokens must carry, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Where the issuer publishes its keys (JSON Web Key Set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Keys given inline, as a JWKS document (`{"keys": [...]}`) in text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// The claim naming the tenant (its slug); unset, every token is for `tenant`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_claim: Option<String>,
    /// The tenant (slug) of tokens without a tenant claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The claim holding the scopes, as a space-separated string or an array; default `scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_claim: Option<String>,
}

/// Outgoing mail. Without a `host`, mails are written to `<data_dir>/outbox/` instead and the log
/// says where.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub port: u16,
    pub tls: SmtpTls,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The environment variable holding the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The `From:` address.
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password_env: None,
            from: "agentd <agentd@localhost>".to_owned(),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on localhost or in tests.
    None,
}
