//! [`LiveTokens`]: the HTTP-01 responses a responder serves, held in memory.
//!
//! The responder answers from here only, so a flood of well-formed random tokens costs a hash
//! lookup and never reaches the store or Redis. The map is kept in sync by the solver of this
//! process (immediately, on present and cleanup) and by a periodic reload from the store
//! ([`sync_from_store`]) or the Redis mirror ([`crate::mirror::RedisReader`]) for responses
//! published by other processes. A reload never undoes a change this process made after the
//! reload began.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use certfleet_core::Store;
use certfleet_core::challenge::Http01Challenge;
use certfleet_core::time::UnixTime;
use tokio::sync::watch;

/// Default time between reloads from the store.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How long a local removal keeps a reload from bringing the token back.
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Entry {
    host: String,
    body: Bytes,
    expires_at: UnixTime,
    changed: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Tokens removed locally, with when.
    removed: HashMap<String, Instant>,
}

/// Live (token → host, key authorization) pairs.
#[derive(Debug, Default)]
pub struct LiveTokens {
    inner: RwLock<Inner>,
}

impl LiveTokens {
    /// An empty set, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Serve `c` from now on (host compared case-blind).
    pub fn insert(&self, c: &Http01Challenge) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.removed.remove(&c.token);
        inner.entries.insert(
            c.token.clone(),
            Entry {
                host: c.host.to_ascii_lowercase(),
                body: Bytes::from(c.key_authorization.clone()),
                expires_at: c.expires_at,
                changed: Instant::now(),
            },
        );
    }

    /// Stop serving `tokens`.
    pub fn remove(&self, tokens: &[String]) {
        let now = Instant::now();
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for t in tokens {
            inner.entries.remove(t);
            inner.removed.insert(t.clone(), now);
        }
        inner
            .removed
            .retain(|_, at| now.duration_since(*at) < TOMBSTONE_TTL);
    }

    /// Replace everything with `list`, a snapshot taken at `taken`: entries this process
    /// inserted or removed after `taken` keep their local state.
    pub fn replace_all(&self, list: Vec<Http01Challenge>, taken: Instant) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut next: HashMap<String, Entry> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.changed > taken)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        for c in list {
            let removed_since = inner.removed.get(&c.token).is_some_and(|at| *at > taken);
            if removed_since || next.contains_key(&c.token) {
                continue;
            }
            next.insert(
                c.token.clone(),
                Entry {
                    host: c.host.to_ascii_lowercase(),
                    body: Bytes::from(c.key_authorization),
                    expires_at: c.expires_at,
                    changed: taken,
                },
            );
        }
        inner.entries = next;
    }

    /// The response body for `token` if it is live at `now` for `host` (lowercase).
    pub fn lookup(&self, token: &str, host: &str, now: UnixTime) -> Option<Bytes> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let e = inner.entries.get(token)?;
        (e.host == host && e.expires_at > now).then(|| e.body.clone())
    }

    /// How many tokens are held.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reload `live` from `store` now and then every `interval` until `stopped` turns true.
/// A failed reload keeps what is held and is logged.
pub async fn sync_from_store(
    live: Arc<LiveTokens>,
    store: Arc<dyn Store>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let taken = Instant::now();
        match store.live_challenges(certfleet_core::time::now()).await {
            Ok(list) => live.replace_all(list, taken),
            Err(e) => {
                tracing::warn!(error = %e, "reloading live HTTP-01 responses from the store failed")
            }
        }
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(token: &str) -> Http01Challenge {
        Http01Challenge {
            token: token.into(),
            host: "A.example".into(),
            key_authorization: format!("{token}.t"),
            certificate: "x".into(),
            expires_at: 100,
        }
    }

    #[test]
    fn reload_keeps_local_changes_made_after_the_snapshot() {
        let live = LiveTokens::new();
        live.insert(&c("old"));
        live.insert(&c("gone"));
        let taken = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        live.insert(&c("new"));
        live.remove(&["gone".to_string()]);
        // The snapshot predates "new" and still has "gone".
        live.replace_all(vec![c("old"), c("gone"), c("other")], taken);
        assert!(
            live.lookup("new", "a.example", 50).is_some(),
            "inserted after the snapshot"
        );
        assert!(
            live.lookup("gone", "a.example", 50).is_none(),
            "removed after the snapshot"
        );
        assert!(live.lookup("other", "a.example", 50).is_some());
        assert!(live.lookup("old", "b.example", 50).is_none(), "other host");
        assert!(live.lookup("old", "a.example", 100).is_none(), "expired");
        live.replace_all(vec![], Instant::now());
        assert!(live.is_empty(), "a later snapshot wins");
    }
}
