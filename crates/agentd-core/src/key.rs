//! API keys. The secret is shown once, when the key is made; only its SHA-256 hash is stored. Keys are
//! 40 random alphanumeric characters (about 238 bits) after the `agentd_` prefix, so a fast hash is
//! enough: there is nothing to brute-force that a slow hash would protect.

use std::fmt;

use rand::distributions::{Alphanumeric, DistString};

use crate::{AgentId, KeyId, ScopeSet, TenantId, Timestamp};

/// Every agentd API key starts with this, so leaked keys are easy to find and to redact.
pub const KEY_PREFIX: &str = "agentd_";
/// Random characters after the prefix.
const SECRET_CHARS: usize = 40;
/// How many characters of the key are kept in clear to tell keys apart (`agentd_Ab12Cd`).
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 6;

/// A key's secret in clear. It exists only between creation and the response that shows it, and
/// between the `Authorization` header and the hash lookup. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainKey(String);

impl PlainKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), SECRET_CHARS);
        Self(format!("{KEY_PREFIX}{secret}"))
    }

    /// Accepts a presented credential if it has the shape of an agentd key.
    pub fn parse(raw: &str) -> Option<Self> {
        let secret = raw.strip_prefix(KEY_PREFIX)?;
        let well_formed =
            secret.len() == SECRET_CHARS && secret.chars().all(|c| c.is_ascii_alphanumeric());
        well_formed.then(|| Self(raw.to_owned()))
    }

    /// The hex SHA-256 of the key: what the store keeps and looks keys up by.
    pub fn hash(&self) -> String {
        crate::sha256_hex(self.0.as_bytes())
    }

    /// The short, non-secret beginning of the key, for listings.
    pub fn shown_prefix(&self) -> String {
        self.0[..SHOWN_CHARS].to_owned()
    }

    /// The secret itself. Call only to show it to its owner, once.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainKey({}…)", self.shown_prefix())
    }
}

/// A key's human name (`ci`, `grafana scraper`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct KeyName(String);

/// Why a key name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a key name is 1 to 100 characters with no control characters")]
pub struct KeyNameError;

impl KeyName {
    /// Parses a name; surrounding whitespace is trimmed.
    pub fn parse(raw: &str) -> Result<Self, KeyNameError> {
        let trimmed = raw.trim();
        let valid = !trimmed.is_empty()
            && trimmed.chars().count() <= 100
            && !trimmed.chars().any(char::is_control);
        if valid {
            Ok(Self(trimmed.to_owned()))
        } else {
            Err(KeyNameError)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored API key: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: KeyId,
    pub tenant_id: TenantId,
    pub name: KeyName,
    /// The non-secret beginning of the key, e.g. `agentd_Ab12Cd`.
    pub prefix: String,
    /// Hex SHA-256 of the full key.
    pub hash: String,
    pub scopes: ScopeSet,
    /// For an agent key: the one agent it is bound to (its scopes name only that agent).
    pub agent_id: Option<AgentId>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

impl ApiKey {
    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The same key (id, name, scopes, agent, expiry) with a fresh secret, for rotation. The secret is
    /// returned once, here; the old one stops matching as soon as the new hash is stored.
    pub fn with_new_secret(&self) -> (ApiKey, PlainKey) {
        let plain = PlainKey::generate();
        let key = ApiKey {
            prefix: plain.shown_prefix(),
            hash: plain.hash(),
            last_used_at: None,
            ..self.clone()
        };
        (key, plain)
    }
}

/// What it takes to make a key.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub name: KeyName,
    pub scopes: ScopeSet,
    pub expires_at: Option<Timestamp>,
}

impl NewApiKey {
    /// Generates the secret and the record to store for it. The secret is returned once, here.
    pub fn issue(self, tenant_id: TenantId) -> (ApiKey, PlainKey) {
        let plain = PlainKey::generate();
        let key = ApiKey {
            id: KeyId::new(),
            tenant_id,
            name: self.name,
            prefix: plain.shown_prefix(),
            hash: plain.hash(),
            scopes: self.scopes,
            agent_id: None,
            created_at: crate::now(),
            expires_at: self.expires_at,
            last_used_at: None,
        };
        (key, plain)
    }

    /// Like [`issue`](Self::issue), for a key bound to one agent.
    pub fn issue_for_agent(self, tenant_id: TenantId, agent: AgentId) -> (ApiKey, PlainKey) {
        let (mut key, plain) = self.issue(tenant_id);
        key.agent_id = Some(agent);
        (key, plain)
    }
}

impl<'de> serde::Deserialize<'de> for KeyName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_hash_stably_and_hide_in_debug() {
        let key = PlainKey::generate();
        assert!(key.reveal().starts_with(KEY_PREFIX));
        assert_eq!(key.reveal().len(), KEY_PREFIX.len() + SECRET_CHARS);
        assert_eq!(PlainKey::parse(key.reveal()), Some(key.clone()));
        assert_eq!(key.hash(), PlainKey::parse(key.reveal()).unwrap().hash());
        assert_eq!(key.hash().len(), 64);
        assert!(!format!("{key:?}").contains(key.reveal()));
        assert_ne!(PlainKey::generate(), key);
    }

    #[test]
    fn malformed_credentials_are_not_keys() {
        assert!(PlainKey::parse("agentd_short").is_none());
        assert!(PlainKey::parse("sk-whatever").is_none());
        assert!(PlainKey::parse(&format!("agentd_{}", "!".repeat(40))).is_none());
    }

    #[test]
    fn key_names_are_trimmed_and_bounded() {
        assert_eq!(KeyName::parse("  ci ").unwrap().as_str(), "ci");
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse(&"x".repeat(101)).is_err());
        assert!(KeyName::parse("a\nb").is_err());
    }

    #[test]
    fn a_new_secret_keeps_everything_but_the_secret() {
        let new = NewApiKey {
            name: KeyName::parse("bot").unwrap(),
            scopes: ScopeSet::default(),
            expires_at: None,
        };
        let agent = AgentId::new();
        let (mut key, old) = new.issue_for_agent(TenantId::new(), agent);
        key.last_used_at = Some(crate::now());
        let (rotated, plain) = key.with_new_secret();
        assert_ne!(plain, old);
        assert_eq!(rotated.hash, plain.hash());
        assert_eq!(rotated.prefix, plain.shown_prefix());
        assert_eq!(rotated.last_used_at, None);
        assert_eq!((rotated.id, rotated.agent_id), (key.id, Some(agent)));
        assert_eq!((&rotated.name, &rotated.scopes), (&key.name, &key.scopes));
    }
}
