//! Permissions in the AgentOS form: `resource:action` or `resource:<id>:action`, with `*` wildcards.
//!
//! A granted scope `agents:run` allows running every agent; `agents:a1:run` allows only agent `a1`;
//! `agents:*:run` and `agents:*` are wildcards over one segment. The single scope `*` allows every
//! `resource:action` scope. The admin scope [`ADMIN`] allows everything, including admin-only
//! operations that `*` does not reach.

use std::fmt;
use std::str::FromStr;

/// The scope that bypasses every check (AgentOS calls it `agent_os:admin`).
pub const ADMIN: &str = "agent_os:admin";

/// Longest accepted scope string; longer ones are refused when parsed.
const MAX_LEN: usize = 200;

/// One permission. Constructed only by [`Scope::parse`], so a `Scope` is always well formed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Scope(String);

/// Why a scope string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("a scope must not be empty")]
    Empty,
    #[error("a scope is at most {MAX_LEN} characters")]
    TooLong,
    #[error(
        "a scope has the form `resource:action` or `resource:<id>:action`; `{0}` has {1} segments"
    )]
    Segments(String, usize),
    #[error("scope `{0}` has an empty segment")]
    EmptySegment(String),
    #[error("scope `{0}` may only use letters, digits, `_`, `-`, `.` and whole-segment `*`")]
    Characters(String),
}

impl Scope {
    /// Parses and validates a scope string.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        if raw.is_empty() {
            return Err(ScopeError::Empty);
        }
        if raw.len() > MAX_LEN {
            return Err(ScopeError::TooLong);
        }
        if raw == "*" {
            return Ok(Self(raw.to_owned()));
        }
        let segments: Vec<&str> = raw.split(':').collect();
        if !(2..=3).contains(&segments.len()) {
            return Err(ScopeError::Segments(raw.to_owned(), segments.len()));
        }
        for segment in &segments {
            if segment.is_empty() {
                return Err(ScopeError::EmptySegment(raw.to_owned()));
            }
            let plain = segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if *segment != "*" && !plain {
                return Err(ScopeError::Characters(raw.to_owned()));
            }
        }
        Ok(Self(raw.to_owned()))
    }

    /// The admin scope.
    pub fn admin() -> Self {
        Self(ADMIN.to_owned())
    }

    /// The scope as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the admin scope.
    pub fn is_admin(&self) -> bool {
        self.0 == ADMIN
    }

    /// Whether holding `self` allows an operation that requires `required`.
    pub fn grants(&self, required: &Scope) -> bool {
        if self.is_admin() || self == required {
            return true;
        }
        if required.is_admin() {
            return false;
        }
        if self.0 == "*" {
            return true;
        }
        let granted: Vec<&str> = self.0.split(':').collect();
        let wanted: Vec<&str> = required.0.split(':').collect();
        let segment = |g: &str, w: &str| g == "*" || g == w;
        match (granted.as_slice(), wanted.as_slice()) {
            // `agents:run` is a grant over every agent, so it also allows `agents:a1:run`.
            ([g_res, g_act], [w_res, w_act]) | ([g_res, g_act], [w_res, _, w_act]) => {
                segment(g_res, w_res) && segment(g_act, w_act)
            }
            ([g_res, g_id, g_act], [w_res, w_id, w_act]) => {
                segment(g_res, w_res) && segment(g_id, w_id) && segment(g_act, w_act)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The scopes a principal holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// A set from already parsed scopes; duplicates are dropped, order is kept.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut unique: Vec<Scope> = Vec::new();
        for scope in scopes {
            if !unique.contains(&scope) {
                unique.push(scope);
            }
        }
        Self(unique)
    }

    /// Whether any held scope allows `required`.
    pub fn allows(&self, required: &Scope) -> bool {
        self.0.iter().any(|held| held.grants(required))
    }

    /// The first scope in `other` that this set does not allow, if any. Used to stop a key from
    /// minting a key more powerful than itself.
    pub fn first_not_covered<'a>(&self, other: &'a ScopeSet) -> Option<&'a Scope> {
        other.0.iter().find(|wanted| !self.allows(wanted))
    }

    /// The scopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(raw: &str) -> Scope {
        Scope::parse(raw).unwrap()
    }

    #[test]
    fn parse_refuses_malformed_scopes() {
        assert_eq!(Scope::parse(""), Err(ScopeError::Empty));
        assert!(matches!(
            Scope::parse("agents"),
            Err(ScopeError::Segments(_, 1))
        ));
        assert!(matches!(
            Scope::parse("a:b:c:d"),
            Err(ScopeError::Segments(_, 4))
        ));
        assert!(matches!(
            Scope::parse("agents::run"),
            Err(ScopeError::EmptySegment(_))
        ));
        assert!(matches!(
            Scope::parse("agents:r*n"),
            Err(ScopeError::Characters(_))
        ));
        assert!(matches!(
            Scope::parse("agents:ru n"),
            Err(ScopeError::Characters(_))
        ));
        assert!(Scope::parse(&"a".repeat(300)).is_err());
        assert!(Scope::parse("agents:web-agent.v2:run").is_ok());
    }

    #[test]
    fn grants_follow_the_agentos_rules() {
        assert!(s("agents:read").grants(&s("agents:read")));
        assert!(!s("agents:read").grants(&s("agents:run")));
        assert!(s("agents:run").grants(&s("agents:a1:run")));
        assert!(s("agents:a1:run").grants(&s("agents:a1:run")));
        assert!(!s("agents:a1:run").grants(&s("agents:a2:run")));
        assert!(!s("agents:a1:run").grants(&s("agents:run")));
        assert!(s("agents:*:run").grants(&s("agents:a2:run")));
        assert!(s("agents:*").grants(&s("agents:delete")));
        assert!(!s("agents:*").grants(&s("teams:read")));
        assert!(s("*").grants(&s("teams:t1:run")));
        assert!(!s("*").grants(&Scope::admin()));
        assert!(Scope::admin().grants(&s("keys:write")));
    }

    #[test]
    fn a_set_reports_the_first_scope_it_does_not_cover() {
        let held = ScopeSet::new([s("agents:read"), s("keys:*")]);
        let wanted = ScopeSet::new([s("keys:write"), s("agents:*"), s("agents:read")]);
        assert_eq!(held.first_not_covered(&wanted), Some(&s("agents:*")));
        let modest = ScopeSet::new([s("keys:read")]);
        assert_eq!(held.first_not_covered(&modest), None);
    }
}
