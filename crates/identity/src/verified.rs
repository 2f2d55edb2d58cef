//! A short-lived cache of credentials that verified, so a client that sends the same
//! token with every request (HTTP APIs, pgbench-style reconnects) pays for signature
//! checking and claim parsing once per [`TTL`] instead of per request.
//!
//! Entries are keyed by the SHA-256 of the credential, never outlive the identity's
//! own expiry, live at most [`TTL`], and are dropped as soon as any JWKS installs a
//! new key set (so a key removed from a JWKS stops working at its next refresh, as
//! without the cache). Failures are not cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_core::{Identity, Timestamp};
use sha2::{Digest, Sha256};

/// Longest time a verified credential is accepted without verifying it again.
pub const TTL: Duration = Duration::from_secs(30);

/// Most credentials remembered at once.
const CAPACITY: usize = 4096;

/// Verified credentials and until when they may be reused.
struct Entry {
    identity: Identity,
    until: Instant,
    /// The JWKS key generation the credential was verified under.
    generation: u64,
}

#[derive(Default)]
pub(crate) struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

fn key(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

impl VerifiedCache {
    /// The identity of `credential` if it verified recently and has not expired.
    /// `generation` is the current JWKS key generation.
    pub fn get(&self, credential: &str, generation: u64) -> Option<Identity> {
        let now = Instant::now();
        let entries = self.entries.lock().ok()?;
        let e = entries.get(&key(credential))?;
        (now < e.until && e.generation == generation).then(|| e.identity.clone())
    }

    /// Remembers that `credential` verified as `identity` under key `generation` (read
    /// before verifying, so a key set installed meanwhile invalidates the entry).
    pub fn put(&self, credential: &str, identity: &Identity, generation: u64) {
        let now = Instant::now();
        let mut until = now + TTL;
        if let Some(exp) = identity.expires_at {
            let left = exp.0.saturating_sub(Timestamp::now().0);
            let Ok(left) = u64::try_from(left) else {
                return;
            };
            until = until.min(now + Duration::from_micros(left));
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            key(credential),
            Entry {
                identity: identity.clone(),
                until,
                generation,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::AuthMethod;

    fn identity(expires_at: Option<Timestamp>) -> Identity {
        Identity {
            subject: "alice".into(),
            groups: vec!["ops".into()],
            method: AuthMethod::Jwt,
            issuer: None,
            expires_at,
        }
    }

    #[test]
    fn reuses_until_expiry_and_never_past_it() {
        let cache = VerifiedCache::default();
        assert!(cache.get("t1", 0).is_none());
        cache.put("t1", &identity(None), 0);
        assert_eq!(cache.get("t1", 0).unwrap().subject, "alice");
        assert!(cache.get("t2", 0).is_none());
        // A new key set: verified again.
        assert!(cache.get("t1", 1).is_none());
        // Already expired: not remembered.
        cache.put("t3", &identity(Some(Timestamp(Timestamp::now().0 - 1))), 0);
        assert!(cache.get("t3", 0).is_none());
        // Expiring in 50 ms: gone after that, although TTL is longer.
        cache.put(
            "t4",
            &identity(Some(Timestamp(Timestamp::now().0 + 50_000))),
            0,
        );
        assert!(cache.get("t4", 0).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(cache.get("t4", 0).is_none());
    }
}
