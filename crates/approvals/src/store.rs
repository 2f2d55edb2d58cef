//! The approval database: sled trees for requests, grants and their indexes.
//!
//! - `requests`: request id → JSON [`RequestView`] (ids are UUIDv7 strings, so key
//!   order is creation order).
//! - `open`: fingerprint → request id, for requests that are pending or hold an
//!   unused one-time approval (at most one per fingerprint).
//! - `grants`: grant id → JSON [`GrantView`].
//! - `active`: `hex(sha256(subject, target)) / grant id` → grant id, for grants not yet ended.
//!
//! Every change is one multi-tree transaction followed by a flush, so a restart
//! loses nothing that an API call or a waiting statement was told.

use std::path::Path;

use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::{ApprovalError, GrantView, RequestView};

pub(crate) struct Store {
    db: sled::Db,
    requests: sled::Tree,
    open: sled::Tree,
    grants: sled::Tree,
    active: sled::Tree,
}

/// A set of writes applied atomically.
#[derive(Default)]
pub(crate) struct Change {
    requests: Vec<(String, Vec<u8>, String, bool)>,
    grants: Vec<(String, Vec<u8>, Vec<u8>, bool)>,
}

impl Change {
    /// Stores a request and keeps the open index in step with its state.
    pub(crate) fn request(&mut self, r: &RequestView) -> Result<(), ApprovalError> {
        let bytes = serde_json::to_vec(r).map_err(|e| ApprovalError::Store(e.to_string()))?;
        self.requests
            .push((r.id.clone(), bytes, r.fingerprint.clone(), r.indexed()));
        Ok(())
    }

    /// Stores a grant and keeps the active index in step with it.
    pub(crate) fn grant(&mut self, g: &GrantView) -> Result<(), ApprovalError> {
        let bytes = serde_json::to_vec(g).map_err(|e| ApprovalError::Store(e.to_string()))?;
        let key = active_key(&g.subject, &g.target, &g.id);
        self.grants
            .push((g.id.clone(), bytes, key, g.ended.is_none()));
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.grants.is_empty()
    }
}

fn pair_prefix(subject: &str, target: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in [subject, target] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let mut key = hex::encode(h.finalize()).into_bytes();
    key.push(b'/');
    key
}

fn active_key(subject: &str, target: &str, grant: &str) -> Vec<u8> {
    let mut key = pair_prefix(subject, target);
    key.extend_from_slice(grant.as_bytes());
    key
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ApprovalError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApprovalError::Store(format!("stored {what} cannot be decoded: {e}")))
}

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Self, ApprovalError> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Self {
            requests: db.open_tree("requests")?,
            open: db.open_tree("open")?,
            grants: db.open_tree("grants")?,
            active: db.open_tree("active")?,
            db,
        })
    }

    /// Applies `change` atomically and makes it durable.
    pub(crate) async fn commit(&self, change: Change) -> Result<(), ApprovalError> {
        if change.is_empty() {
            return Ok(());
        }
        let result: Result<(), TransactionError<()>> =
            (&self.requests, &self.open, &self.grants, &self.active).transaction(
                |(requests, open, grants, active)| {
                    for (id, bytes, fp, indexed) in &change.requests {
                        requests.insert(id.as_bytes(), bytes.as_slice())?;
                        if *indexed {
                            open.insert(fp.as_bytes(), id.as_bytes())?;
                        } else if open.get(fp.as_bytes())?.as_deref() == Some(id.as_bytes()) {
                            open.remove(fp.as_bytes())?;
                        }
                    }
                    for (id, bytes, key, is_active) in &change.grants {
                        grants.insert(id.as_bytes(), bytes.as_slice())?;
                        if *is_active {
                            active.insert(key.as_slice(), id.as_bytes())?;
                        } else {
                            active.remove(key.as_slice())?;
                        }
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                },
            );
        result.map_err(|e| ApprovalError::Store(format!("transaction failed: {e:?}")))?;
        self.db.flush_async().await?;
        Ok(())
    }

    pub(crate) fn request(&self, id: &str) -> Result<Option<RequestView>, ApprovalError> {
        self.requests
            .get(id.as_bytes())?
            .map(|b| decode("request", &b))
            .transpose()
    }

    /// The pending or approved-unused request with this fingerprint.
    pub(crate) fn open_request(&self, fp: &str) -> Result<Option<RequestView>, ApprovalError> {
        match self.open.get(fp.as_bytes())? {
            None => Ok(None),
            Some(id) => {
                let id = String::from_utf8_lossy(&id).into_owned();
                self.request(&id)
            }
        }
    }

    /// Every request in the open index.
    pub(crate) fn open_requests(&self) -> Result<Vec<RequestView>, ApprovalError> {
        let mut out = Vec::new();
        for item in self.open.iter() {
            let (_, id) = item?;
            if let Some(r) = self.request(&String::from_utf8_lossy(&id))? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Requests newest first, as long as `keep` says so; stops after `limit` kept.
    pub(crate) fn requests_newest_first(
        &self,
        limit: usize,
        mut keep: impl FnMut(&RequestView) -> bool,
    ) -> Result<Vec<RequestView>, ApprovalError> {
        let mut out = Vec::new();
        for item in self.requests.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let (_, bytes) = item?;
            let r: RequestView = decode("request", &bytes)?;
            if keep(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub(crate) fn grant(&self, id: &str) -> Result<Option<GrantView>, ApprovalError> {
        self.grants
            .get(id.as_bytes())?
            .map(|b| decode("grant", &b))
            .transpose()
    }

    /// Grants not yet ended for this subject on this target.
    pub(crate) fn active_grants_for(
        &self,
        subject: &str,
        target: &str,
    ) -> Result<Vec<GrantView>, ApprovalError> {
        let mut out = Vec::new();
        for item in self.active.scan_prefix(pair_prefix(subject, target)) {
            let (_, id) = item?;
            if let Some(g) = self.grant(&String::from_utf8_lossy(&id))? {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Every grant not yet ended.
    pub(crate) fn active_grants(&self) -> Result<Vec<GrantView>, ApprovalError> {
        let mut out = Vec::new();
        for item in self.active.iter() {
            let (_, id) = item?;
            if let Some(g) = self.grant(&String::from_utf8_lossy(&id))? {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Every grant, newest first, at most `limit`.
    pub(crate) fn all_grants(&self, limit: usize) -> Result<Vec<GrantView>, ApprovalError> {
        let mut out = Vec::new();
        for item in self.grants.iter().rev().take(limit) {
            let (_, bytes) = item?;
            out.push(decode("grant", &bytes)?);
        }
        Ok(out)
    }
}
