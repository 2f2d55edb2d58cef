//! Cancel keys: clients get the gateway's own keys, mapped to the upstream's.
//!
//! A client's `CancelRequest` arrives on a new connection with the key the gateway
//! handed out. The gateway looks it up and sends the upstream's own key to the
//! upstream that serves that session. Clients never learn upstream keys, so they
//! cannot cancel queries of sessions that are not theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use pgwire::messages::startup::SecretKey;

use crate::upstream::UpstreamEndpoint;

/// Where a cancel request for one session goes.
#[derive(Clone)]
pub(crate) struct CancelTarget {
    pub endpoint: Arc<UpstreamEndpoint>,
    pub pid: i32,
    pub secret: SecretKey,
}

/// The live sessions' cancel keys.
#[derive(Clone, Default)]
pub(crate) struct CancelRegistry {
    keys: Arc<Mutex<HashMap<(i32, i32), CancelTarget>>>,
}

/// Removes a session's key when the session ends.
pub(crate) struct CancelGuard {
    registry: CancelRegistry,
    key: (i32, i32),
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl CancelRegistry {
    /// Registers a session and returns the client-facing key and its guard.
    pub(crate) fn register(&self, target: CancelTarget) -> (i32, i32, CancelGuard) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let pid = rand::random::<i32>() & i32::MAX;
            let secret = rand::random::<i32>();
            if pid == 0 || keys.contains_key(&(pid, secret)) {
                continue;
            }
            keys.insert((pid, secret), target);
            let guard = CancelGuard {
                registry: self.clone(),
                key: (pid, secret),
            };
            return (pid, secret, guard);
        }
    }

    /// Looks up a client-facing key.
    pub(crate) fn lookup(&self, pid: i32, secret: &SecretKey) -> Option<CancelTarget> {
        let secret = secret.as_i32()?;
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(pid, secret))
            .cloned()
    }

    /// Number of registered sessions.
    pub(crate) fn len(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
