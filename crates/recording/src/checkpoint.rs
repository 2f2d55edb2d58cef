//! Signed checkpoints: the gateway's Ed25519 signature over the chain head.
//!
//! The signed bytes of a checkpoint are
//!
//! ```text
//! "portcullis-checkpoint-v1\n"                   (25 bytes, ASCII, ending in a newline)
//! || u32 BE length || chain id     (UTF-8)
//! || seq          as u64 big-endian
//! || hash                          (32 bytes: the hash of record `seq`)
//! || at           as i64 big-endian (microseconds since the Unix epoch)
//! || u32 BE length || key id       (ASCII, 64 hex digits)
//! || u32 BE length || reason       (ASCII, e.g. `events`, `tombstone`)
//! || pruned_from  as u64 big-endian (first pruned seq of a tombstone, else 0)
//! ```
//!
//! and the signature is plain Ed25519 (RFC 8032) over those bytes.

use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{ChainHash, Head, PublicKey, RecordingError, Result, SigningKey};

/// Domain separation prefix of the checkpoint signature.
pub const CHECKPOINT_DOMAIN: &[u8] = b"portcullis-checkpoint-v1\n";

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointReason {
    /// `checkpoint_events` events since the last checkpoint.
    Events,
    /// `checkpoint_interval` elapsed with events since the last checkpoint.
    Interval,
    /// A session closed.
    SessionClose,
    /// The recorder shut down.
    Shutdown,
    /// The recorder started on a store whose head was not yet signed (after a crash).
    Startup,
    /// Written by an export so that the bundle ends at a checkpoint.
    Export,
    /// Covers pruned records; verification starts here afterwards.
    Tombstone,
}

impl CheckpointReason {
    /// The name as signed and serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckpointReason::Events => "events",
            CheckpointReason::Interval => "interval",
            CheckpointReason::SessionClose => "session_close",
            CheckpointReason::Shutdown => "shutdown",
            CheckpointReason::Startup => "startup",
            CheckpointReason::Export => "export",
            CheckpointReason::Tombstone => "tombstone",
        }
    }
}

/// A signed statement that record `seq` of chain `chain` has hash `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The chain (store) id.
    pub chain: String,
    /// Sequence number of the signed record.
    pub seq: u64,
    /// Its hash.
    pub hash: ChainHash,
    /// When the checkpoint was signed.
    pub at: Timestamp,
    /// Id of the signing key.
    pub key_id: String,
    /// Why it was written.
    pub reason: CheckpointReason,
    /// For a tombstone: the first pruned seq (the last one is `seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_from: Option<u64>,
    /// Ed25519 signature over [`Checkpoint::signed_bytes`], lowercase hex.
    pub signature: String,
}

impl Checkpoint {
    /// Signs `head` of `chain` now.
    pub fn sign(
        key: &SigningKey,
        chain: &str,
        head: Head,
        reason: CheckpointReason,
        pruned_from: Option<u64>,
    ) -> Self {
        let mut cp = Self {
            chain: chain.to_owned(),
            seq: head.seq,
            hash: head.hash,
            at: Timestamp::now(),
            key_id: key.key_id(),
            reason,
            pruned_from,
            signature: String::new(),
        };
        cp.signature = hex::encode(key.sign(&cp.signed_bytes()));
        cp
    }

    /// The head it signs.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash,
        }
    }

    /// The exact bytes that are signed (see the [module docs](self)).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        out.extend_from_slice(CHECKPOINT_DOMAIN);
        put_str(&mut out, &self.chain);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.at.0.to_be_bytes());
        put_str(&mut out, &self.key_id);
        put_str(&mut out, self.reason.as_str());
        out.extend_from_slice(&self.pruned_from.unwrap_or(0).to_be_bytes());
        out
    }

    /// Whether the signature is `key`'s signature of this checkpoint.
    pub fn verify_with(&self, key: &PublicKey) -> bool {
        if key.key_id() != self.key_id {
            return false;
        }
        match hex::decode(&self.signature) {
            Ok(sig) => key.verify(&self.signed_bytes(), &sig),
            Err(_) => false,
        }
    }

    /// One JSON line (no trailing newline), as in `checkpoints.jsonl`.
    pub fn to_json_line(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| RecordingError::Encode(e.to_string()))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_every_field() {
        let key = SigningKey::generate().unwrap();
        let head = Head {
            seq: 42,
            hash: ChainHash([7; 32]),
        };
        let cp = Checkpoint::sign(&key, "chain-a", head, CheckpointReason::Events, None);
        assert!(cp.verify_with(key.public_key()));
        let bytes = cp.signed_bytes();
        assert!(bytes.starts_with(b"portcullis-checkpoint-v1\n\0\0\0\x07chain-a"));
        assert_eq!(bytes.len(), 25 + 4 + 7 + 8 + 32 + 8 + 4 + 64 + 4 + 6 + 8);
        type Edit = Box<dyn Fn(&mut Checkpoint)>;
        let edits: Vec<Edit> = vec![
            Box::new(|c| c.chain = "chain-b".into()),
            Box::new(|c| c.seq += 1),
            Box::new(|c| c.hash = ChainHash([8; 32])),
            Box::new(|c| c.at = Timestamp(c.at.0 + 1)),
            Box::new(|c| c.reason = CheckpointReason::Shutdown),
            Box::new(|c| c.pruned_from = Some(1)),
            Box::new(|c| c.signature = "00".repeat(64)),
        ];
        for edit in edits {
            let mut c = cp.clone();
            edit(&mut c);
            assert!(!c.verify_with(key.public_key()), "{c:?}");
        }
        let other = SigningKey::generate().unwrap();
        assert!(!cp.verify_with(other.public_key()));
        let back: Checkpoint = serde_json::from_str(&cp.to_json_line().unwrap()).unwrap();
        assert_eq!(back, cp);
    }
}
