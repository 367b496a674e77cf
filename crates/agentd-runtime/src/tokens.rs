//! JSON Web Tokens: the short-lived access tokens agentd issues to logged-in users (EdDSA, signed
//! with a key kept sealed in the database so every node shares it), and the external tokens agentd
//! accepts from configured issuers (EdDSA, RS256 or ES256 keys from a JWKS).
//!
//! A JWT is three base64url parts, `header.claims.signature`; this module reads and writes that
//! format directly on `ring` rather than pulling in a JWT library.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use agentd_core::{Scope, ScopeSet, TenantId, UserId};
use agentd_store::{SigningKeyRecord, Store};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth_config::{AuthConfig, JwtIssuerConfig};
use crate::secrets::{MasterKey, SigningKey};
use crate::Error;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 60;
/// How long a fetched JWKS is trusted before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// The least time between two fetches of a JWKS prompted by an unknown key id.
const JWKS_REFETCH_GAP: Duration = Duration::from_secs(30);
/// The sealing context of the JWT signing key.
const SIGNING_KEY_CONTEXT: &str = "signing-key:jwt";
/// The audience of agentd's own tokens.
pub const AUDIENCE: &str = "agentd";

/// The claims of an access token agentd issued.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    /// The user's tenant.
    pub tid: String,
    /// The user's role when the token was issued (the role is read again on every request).
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// An access token, as handed to a client.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: u64,
}

/// Who an external token speaks for.
#[derive(Clone, Debug)]
pub struct ExternalIdentity {
    /// `<issuer name>:<sub>`.
    pub subject: String,
    /// The tenant's slug.
    pub tenant: String,
    pub scopes: ScopeSet,
}

/// What a presented JWT turned out to be.
#[derive(Clone, Debug)]
pub enum Verified {
    /// One of agentd's own access tokens.
    Own {
        tenant_id: TenantId,
        user_id: UserId,
    },
    /// A token of a configured external issuer.
    External(ExternalIdentity),
}

/// Issues and verifies JWTs.
pub struct TokenService {
    key: SigningKey,
    kid: String,
    issuer: String,
    ttl_secs: u64,
    external: Vec<(String, JwtIssuerConfig, KeySet)>,
    http: reqwest::Client,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenService({})", self.kid)
    }
}

impl TokenService {
    /// Loads the shared signing key (creating it on the very first start) and the external issuers.
    pub async fn load(
        store: Arc<dyn Store>,
        master: &MasterKey,
        config: &AuthConfig,
    ) -> Result<Self, Error> {
        let fresh = SigningKey::generate()?;
        let candidate = SigningKeyRecord {
            purpose: "jwt".to_owned(),
            kid: key_id(fresh.public_key()),
            public_key: fresh.public_key_base64(),
            private_sealed: master.seal(SIGNING_KEY_CONTEXT, fresh.pkcs8())?,
            created_at: agentd_core::now(),
        };
        let record = store.signing_key(&candidate).await?;
        let pkcs8 = master.open(SIGNING_KEY_CONTEXT, &record.private_sealed)?;
        let key = SigningKey::from_pkcs8(&pkcs8)?;
        let mut external = Vec::new();
        for (name, issuer) in &config.jwt_issuers {
            let inline = match &issuer.jwks {
                Some(text) => parse_jwks(text)
                    .map_err(|e| Error::Config(format!("auth.jwt_issuers.{name}.jwks: {e}")))?,
                None => Vec::new(),
            };
            if issuer.jwks.is_none() && issuer.jwks_url.is_none() {
                return Err(Error::Config(format!(
                    "auth.jwt_issuers.{name}: give `jwks_url` or `jwks`"
                )));
            }
            if issuer.tenant.is_none() && issuer.tenant_claim.is_none() {
                return Err(Error::Config(format!(
                    "auth.jwt_issuers.{name}: give `tenant` or `tenant_claim`"
                )));
            }
            external.push((name.clone(), issuer.clone(), KeySet::new(inline)));
        }
        Ok(Self {
            kid: record.kid,
            key,
            issuer: config.issuer.clone(),
            ttl_secs: config.access_token_ttl_secs,
            external,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))?,
        })
    }

    /// A fresh access token for a user.
    pub fn issue(&self, tenant: TenantId, user: UserId, role: &str) -> AccessToken {
        let now = agentd_core::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user.to_string(),
            aud: AUDIENCE.to_owned(),
            tid: tenant.to_string(),
            role: role.to_owned(),
            iat: now,
            exp: now + i64::try_from(self.ttl_secs).unwrap_or(i64::MAX / 2),
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap_or_default())
        );
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(signing_input.as_bytes()));
        AccessToken {
            token: format!("{signing_input}.{signature}"),
            expires_in: self.ttl_secs,
        }
    }

    /// agentd's public key as a JSON Web Key Set, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.key.public_key()),
        }]})
    }

    /// Verifies a JWT: agentd's own (by `kid`) or a configured issuer's (by `iss`).
    pub async fn verify(&self, token: &str) -> Result<Verified, Error> {
        let invalid = Error::InvalidCredentials;
        let parsed = Parsed::new(token).ok_or(invalid("not a JWT"))?;
        let now = agentd_core::now().timestamp();
        if parsed.header["kid"].as_str() == Some(&self.kid) {
            if parsed.header["alg"] != "EdDSA"
                || !crate::secrets::verify_ed25519(
                    self.key.public_key(),
                    parsed.signing_input.as_bytes(),
                    &parsed.signature,
                )
            {
                return Err(invalid("the token's signature does not verify"));
            }
            let claims: Claims = serde_json::from_value(parsed.claims.clone())
                .map_err(|_| invalid("the token's claims are not agentd's"))?;
            if claims.iss != self.issuer || claims.aud != AUDIENCE {
                return Err(invalid("the token was issued for another server"));
            }
            check_times(&parsed.claims, now)?;
            let tenant_id = claims
                .tid
                .parse()
                .map_err(|_| invalid("bad tenant claim"))?;
            let user_id = claims
                .sub
                .parse()
                .map_err(|_| invalid("bad subject claim"))?;
            return Ok(Verified::Own { tenant_id, user_id });
        }
        let iss = parsed.claims["iss"].as_str().unwrap_or_default();
        let Some((name, issuer, keys)) = self.external.iter().find(|(_, c, _)| c.issuer == iss)
        else {
            return Err(invalid("the token's issuer is not trusted"));
        };
        let kid = parsed.header["kid"].as_str();
        let alg = parsed.header["alg"].as_str().unwrap_or_default();
        if let Some(url) = &issuer.jwks_url {
            // Keys the issuer dropped stop counting within JWKS_TTL.
            if keys.tried_longer_ago_than(JWKS_TTL) {
                keys.refresh(&self.http, url).await;
            }
        }
        let mut jwk = keys.find(kid, alg);
        if let (None, Some(url)) = (&jwk, &issuer.jwks_url) {
            // An unknown key may be a new one: fetch again, but not more than once per gap, so a
            // flood of forged `kid`s cannot make agentd hammer the issuer.
            if keys.tried_longer_ago_than(JWKS_REFETCH_GAP) {
                keys.refresh(&self.http, url).await;
                jwk = keys.find(kid, alg);
            }
        }
        let jwk = jwk.ok_or(invalid("no key of the issuer matches the token"))?;
        if !jwk.verify(alg, parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(invalid("the token's signature does not verify"));
        }
        check_times(&parsed.claims, now)?;
        if let Some(audience) = &issuer.audience {
            let aud = &parsed.claims["aud"];
            let matches = aud.as_str() == Some(audience.as_str())
                || aud
                    .as_array()
                    .is_some_and(|all| all.iter().any(|a| a.as_str() == Some(audience.as_str())));
            if !matches {
                return Err(invalid("the token is for another audience"));
            }
        }
        let sub = parsed.claims["sub"]
            .as_str()
            .ok_or(invalid("the token has no subject"))?;
        let tenant = match &issuer.tenant_claim {
            Some(claim) => parsed.claims[claim.as_str()].as_str().map(str::to_owned),
            None => issuer.tenant.clone(),
        }
        .ok_or(invalid("the token names no tenant"))?;
        let claim = issuer.scopes_claim.as_deref().unwrap_or("scope");
        let names: Vec<String> = match &parsed.claims[claim] {
            Value::String(text) => text.split_whitespace().map(str::to_owned).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        // An external token never carries the platform admin scope, whatever it claims.
        let scopes = ScopeSet::new(
            names
                .iter()
                .filter_map(|name| Scope::parse(name).ok())
                .filter(|scope| !scope.is_admin()),
        );
        Ok(Verified::External(ExternalIdentity {
            subject: format!("{name}:{sub}"),
            tenant,
            scopes,
        }))
    }
}

/// A JWT split into its parts.
struct Parsed {
    header: Value,
    claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Parsed {
    fn new(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
        Some(Self {
            header: serde_json::from_slice(&decode(header)?).ok()?,
            claims: serde_json::from_slice(&decode(claims)?).ok()?,
            signing_input: format!("{header}.{claims}"),
            signature: decode(signature)?,
        })
    }
}

fn check_times(claims: &Value, now: i64) -> Result<(), Error> {
    let exp = claims["exp"]
        .as_i64()
        .ok_or(Error::InvalidCredentials("the token has no expiry"))?;
    if exp + LEEWAY_SECS < now {
        return Err(Error::InvalidCredentials("the token has expired"));
    }
    if claims["nbf"]
        .as_i64()
        .is_some_and(|nbf| nbf - LEEWAY_SECS > now)
    {
        return Err(Error::InvalidCredentials("the token is not valid yet"));
    }
    Ok(())
}

/// A short, stable key id: the first bytes of the public key's SHA-256.
fn key_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
}

/// One public key of a JWKS.
#[derive(Clone, Debug)]
struct Jwk {
    kid: Option<String>,
    key: JwkKey,
}

#[derive(Clone, Debug)]
enum JwkKey {
    Ed25519(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256(Vec<u8>),
}

impl Jwk {
    fn parse(value: &Value) -> Option<Self> {
        let field = |name: &str| {
            value[name]
                .as_str()
                .and_then(|text| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
        };
        let key = match (value["kty"].as_str()?, value["crv"].as_str()) {
            ("OKP", Some("Ed25519")) => JwkKey::Ed25519(field("x")?),
            ("RSA", _) => JwkKey::Rsa {
                n: field("n")?,
                e: field("e")?,
            },
            ("EC", Some("P-256")) => {
                let mut point = vec![4u8];
                point.extend(field("x")?);
                point.extend(field("y")?);
                JwkKey::P256(point)
            }
            _ => return None,
        };
        Some(Self {
            kid: value["kid"].as_str().map(str::to_owned),
            key,
        })
    }

    fn fits(&self, alg: &str) -> bool {
        matches!(
            (&self.key, alg),
            (JwkKey::Ed25519(_), "EdDSA")
                | (JwkKey::Rsa { .. }, "RS256")
                | (JwkKey::P256(_), "ES256")
        )
    }

    fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> bool {
        match (&self.key, alg) {
            (JwkKey::Ed25519(x), "EdDSA") => crate::secrets::verify_ed25519(x, message, sig),
            (JwkKey::Rsa { n, e }, "RS256") => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (JwkKey::P256(point), "ES256") => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let document: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let keys = document["keys"]
        .as_array()
        .ok_or("a JWKS is an object with a `keys` array")?;
    Ok(keys.iter().filter_map(Jwk::parse).collect())
}

/// An issuer's keys: the inline ones, or the last fetch of its `jwks_url`.
struct KeySet {
    keys: RwLock<(Vec<Jwk>, Option<Instant>)>,
}

impl KeySet {
    fn new(inline: Vec<Jwk>) -> Self {
        Self {
            keys: RwLock::new((inline, None)),
        }
    }

    fn find(&self, kid: Option<&str>, alg: &str) -> Option<Jwk> {
        let guard = self.keys.read().unwrap_or_else(|p| p.into_inner());
        guard
            .0
            .iter()
            .filter(|jwk| jwk.fits(alg))
            .find(|jwk| kid.is_none() || jwk.kid.as_deref() == kid)
            .cloned()
    }

    /// Whether the last fetch (successful or not) was longer ago than `gap`, or there was none.
    fn tried_longer_ago_than(&self, gap: Duration) -> bool {
        let guard = self.keys.read().unwrap_or_else(|p| p.into_inner());
        guard.1.is_none_or(|at| at.elapsed() >= gap)
    }

    /// Fetches the JWKS; on failure the old keys stay, and the attempt still counts.
    async fn refresh(&self, http: &reqwest::Client, url: &str) {
        let fetched = async {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            parse_jwks(&text).ok()
        }
        .await;
        match fetched {
            Some(keys) => {
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) =
                    (keys, Some(Instant::now()));
            }
            None => {
                tracing::warn!(%url, "cannot fetch the JWKS");
                self.keys.write().unwrap_or_else(|p| p.into_inner()).1 = Some(Instant::now());
            }
        }
    }
}
