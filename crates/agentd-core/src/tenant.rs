//! Tenants: the organisations that own every other resource. No data crosses a tenant boundary.

use crate::{TenantId, Timestamp};

/// A tenant's short, URL-safe name (`default`, `acme-prod`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

/// Why a slug was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a tenant slug is 1 to 63 lowercase letters, digits or `-`, not starting with `-`")]
pub struct TenantSlugError;

impl TenantSlug {
    /// Parses a slug.
    pub fn parse(raw: &str) -> Result<Self, TenantSlugError> {
        let valid = (1..=63).contains(&raw.len())
            && !raw.starts_with('-')
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(TenantSlugError)
        }
    }

    /// The slug of the tenant created on first start.
    pub fn default_tenant() -> Self {
        Self("default".to_owned())
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
    /// The plan whose limits apply (a name from the server's `[plans]`); `None` is the default plan.
    pub plan: Option<String>,
    pub created_at: Timestamp,
}

impl Tenant {
    /// A new tenant named after its slug.
    pub fn new(slug: TenantSlug, name: impl Into<String>) -> Self {
        Self {
            id: TenantId::new(),
            slug,
            name: name.into(),
            plan: None,
            created_at: crate::now(),
        }
    }
}

impl<'de> serde::Deserialize<'de> for TenantSlug {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}
