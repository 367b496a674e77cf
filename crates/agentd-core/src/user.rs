//! Users: the people of a tenant, who log in by magic link or OAuth and then hold a JWT. A user's
//! permissions are their role's scopes, so changing a role changes what their next request may do.
//!
//! Login secrets (magic-link tokens, refresh tokens, OAuth `state`) are [`OneTimeToken`]s: random,
//! shown once, stored only as their SHA-256.

use std::fmt;

use rand::RngCore;

use crate::{Scope, ScopeSet, TenantId, Timestamp, UserId};

/// A lowercased email address with one `@`, a non-empty local part and a dotted domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why an email address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an email address looks like `name@example.com` and has at most 254 characters")]
pub struct EmailError;

impl Email {
    /// Parses an address; surrounding whitespace is trimmed and letters are lowercased, so the same
    /// person is one user however they type it.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let address = raw.trim().to_lowercase();
        let Some((local, domain)) = address.split_once('@') else {
            return Err(EmailError);
        };
        let valid = address.len() <= 254
            && !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !address
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','));
        if valid {
            Ok(Self(address))
        } else {
            Err(EmailError)
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's role in their tenant. Each role is a fixed set of scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in the tenant, including making other owners.
    Owner,
    /// Everything in the tenant except making or changing owners.
    Admin,
    /// Builds and runs agents, uses sessions and models.
    Member,
    /// Reads agents, sessions, models and usage.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    /// A role by name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == raw)
    }

    /// The scopes the role grants. Owners and admins hold `*` (every `resource:action` of their
    /// tenant) but never the platform admin scope.
    pub fn scopes(self) -> ScopeSet {
        let names: &[&str] = match self {
            Self::Owner | Self::Admin => &["*"],
            Self::Member => &[
                "agents:*",
                "sessions:*",
                "memories:*",
                "knowledge:*",
                "models:*",
                "usage:read",
                "tenant:read",
                "identity:verify",
            ],
            Self::Viewer => &[
                "agents:read",
                "sessions:read",
                "memories:read",
                "knowledge:read",
                "models:read",
                "usage:read",
                "tenant:read",
            ],
        };
        ScopeSet::new(
            names
                .iter()
                .map(|name| Scope::parse(name).expect("role scopes are valid")),
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: Email,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
}

impl User {
    /// A new user of `tenant`.
    pub fn new(tenant_id: TenantId, email: Email, name: Option<String>, role: Role) -> Self {
        let now = crate::now();
        Self {
            id: UserId::new(),
            tenant_id,
            email,
            name,
            role,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        }
    }
}

/// A random one-time secret (magic-link token, refresh token, OAuth `state`): 32 random bytes as
/// URL-safe text. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeToken(String);

impl OneTimeToken {
    /// A fresh token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(crate::hex(&bytes))
    }

    /// A presented token, as text. Any text is accepted: an unknown token simply finds nothing.
    pub fn presented(raw: &str) -> Self {
        Self(raw.trim().to_owned())
    }

    /// The hex SHA-256 the store keeps.
    pub fn hash(&self) -> String {
        crate::sha256_hex(self.0.as_bytes())
    }

    /// The secret itself, to put in a link or an answer once.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeToken(…)")
    }
}

/// What a one-time token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    MagicLink,
    Refresh,
}

impl TokenKind {
    /// The name stored with the token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MagicLink => "magic_link",
            Self::Refresh => "refresh",
        }
    }
}

/// A stored one-time token: its hash and whom it logs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    pub hash: String,
    pub kind: TokenKind,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@x.io",
            "a@b@c.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_narrow_from_owner_to_viewer() {
        let write = Scope::parse("agents:write").unwrap();
        let users = Scope::parse("users:write").unwrap();
        assert!(Role::Owner.scopes().allows(&users));
        assert!(Role::Member.scopes().allows(&write));
        assert!(!Role::Member.scopes().allows(&users));
        assert!(!Role::Viewer.scopes().allows(&write));
        assert!(!Role::Owner.scopes().allows(&Scope::admin()));
        assert_eq!(Role::parse("viewer"), Some(Role::Viewer));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let token = OneTimeToken::generate();
        assert_ne!(token, OneTimeToken::generate());
        assert_eq!(token.hash(), OneTimeToken::presented(token.reveal()).hash());
        assert_eq!(token.reveal().len(), 64);
    }
}
