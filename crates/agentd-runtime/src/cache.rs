//! A small in-memory cache whose entries are trusted for a fixed time: what the services keep of
//! rows they read on nearly every request (verified keys, users behind JWTs, tenants' plans). Other
//! nodes sharing the database see a change within the time to live; this node drops an entry at once
//! when it makes the change itself.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Entries by key, each with the time it was read.
pub(crate) struct TtlCache<K, V> {
    entries: RwLock<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    /// Entries held at most; the cache is emptied when it would grow past this.
    max: usize,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            ttl,
            max,
        }
    }

    /// The entry for `key`, if it was read less than the time to live ago.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
            .filter(|(_, read_at)| read_at.elapsed() < self.ttl)
            .map(|(value, _)| value.clone())
    }

    /// Remembers `value`, read just now.
    pub(crate) fn insert(&self, key: K, value: V) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= self.max {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Forgets `key`.
    pub(crate) fn remove(&self, key: &K) {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }

    /// Forgets every entry whose value matches.
    pub(crate) fn remove_where(&self, matches: impl Fn(&V) -> bool) {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, (value, _)| !matches(value));
    }
}
