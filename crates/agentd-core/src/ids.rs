//! Newtype ids. Every id is a UUIDv7, so ids sort by creation time and serve as pagination cursors.

use std::fmt;
use std::str::FromStr;

/// Defines a UUIDv7 id newtype with parsing, display and serde as a plain string.
macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// Wraps an existing UUID (from storage or a parsed path).
            pub fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies a tenant: an organisation or workspace that owns every other resource.
    TenantId
);
uuid_id!(
    /// Identifies an API key (not the secret: the secret is never stored).
    KeyId
);

uuid_id!(
    /// Identifies an agent.
    AgentId
);
uuid_id!(
    /// Identifies one entry of an agent's event log.
    EventId
);
uuid_id!(
    /// Identifies a run: one execution of an agent.
    RunId
);
uuid_id!(
    /// Identifies one entry of the audit log.
    AuditId
);
uuid_id!(
    /// Identifies a user: a person who logs in (by magic link or OAuth) to one tenant.
    UserId
);
uuid_id!(
    /// Identifies a user memory: a fact kept about a user across sessions.
    MemoryId
);
uuid_id!(
    /// Identifies a knowledge content: one uploaded text, file or page.
    ContentId
);
uuid_id!(
    /// Identifies a chunk of a knowledge content: the unit that is indexed and found by search.
    ChunkId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip_through_text() {
        let first = KeyId::new();
        let second = KeyId::new();
        assert!(first < second);
        assert_eq!(first.to_string().parse::<KeyId>().unwrap(), first);
        assert!("not-a-uuid".parse::<KeyId>().is_err());
    }
}
