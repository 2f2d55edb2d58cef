//! Stored records, their canonical encoding and their hash.
//!
//! The hash of record `seq` is
//!
//! ```text
//! SHA-256( "portcullis-event-v1\n"
//!        || seq          as u64 big-endian
//!        || session_seq  as u64 big-endian
//!        || prev_hash    (32 bytes; 32 zero bytes for seq 1)
//!        || canonical JSON of the event )
//! ```
//!
//! The canonical JSON of an event is its serde serialization with every object's
//! keys sorted by their UTF-8 bytes, no insignificant whitespace, strings escaped
//! as serde_json does (only `"`, `\` and control characters; non-ASCII kept as
//! UTF-8). It equals Python's
//! `json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.

use std::fmt;

use portcullis_core::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{RecordingError, Result};

/// Domain separation prefix of the record hash.
pub const HASH_DOMAIN: &[u8] = b"portcullis-event-v1\n";

/// A SHA-256 value linking the chain; shown and serialized as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The all-zero hash that the first record links to.
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| RecordingError::Encode(format!("not a 32-byte hex hash: {e}")))?;
        Ok(Self(out))
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ChainHash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The end of the chain: the last record's sequence number and hash
/// (`seq` 0 and [`ChainHash::ZERO`] for an empty store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Head {
    /// Sequence number of the last record; 0 when the store is empty.
    pub seq: u64,
    /// Hash of the last record; zero when the store is empty.
    pub hash: ChainHash,
}

impl Head {
    /// The head of an empty store.
    pub const GENESIS: Head = Head {
        seq: 0,
        hash: ChainHash::ZERO,
    };
}

/// One stored event with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Global sequence number: one gapless chain per store, from 1.
    pub seq: u64,
    /// Sequence of the event within its session, from 1.
    pub session_seq: u64,
    /// Hash of the previous record ([`ChainHash::ZERO`] for seq 1).
    pub prev_hash: ChainHash,
    /// This record's hash (see the [module docs](self)).
    pub hash: ChainHash,
    /// The event.
    pub event: Event,
    /// The canonical JSON of the event exactly as it was hashed and stored.
    pub canonical: String,
}

impl StoredEvent {
    /// Builds the record that follows `prev` for `event`.
    pub fn chain(prev: Head, session_seq: u64, event: Event) -> Result<Self> {
        let canonical = canonical_json(&event)?;
        let seq = prev
            .seq
            .checked_add(1)
            .ok_or_else(|| RecordingError::Storage("sequence number overflow".into()))?;
        let hash = record_hash(seq, session_seq, &prev.hash, canonical.as_bytes());
        Ok(Self {
            seq,
            session_seq,
            prev_hash: prev.hash,
            hash,
            event,
            canonical,
        })
    }

    /// Recomputes the hash from the stored fields (the canonical bytes, not a
    /// re-serialization of [`StoredEvent::event`]).
    pub fn compute_hash(&self) -> ChainHash {
        record_hash(
            self.seq,
            self.session_seq,
            &self.prev_hash,
            self.canonical.as_bytes(),
        )
    }

    /// The head this record forms.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash,
        }
    }

    /// The export form: one JSON object on one line (no trailing newline),
    /// `{"seq":..,"session_seq":..,"prev_hash":"hex","hash":"hex","event":{..canonical..}}`.
    pub fn to_json_line(&self) -> String {
        format!(
            "{{\"seq\":{},\"session_seq\":{},\"prev_hash\":\"{}\",\"hash\":\"{}\",\"event\":{}}}",
            self.seq, self.session_seq, self.prev_hash, self.hash, self.canonical
        )
    }

    /// Storage form of the value (the key carries `seq`):
    /// `1u8 || session_seq u64 BE || prev_hash || hash || canonical JSON`.
    #[cfg(test)]
    pub(crate) fn encode_value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 8 + 64 + self.canonical.len());
        out.push(STORAGE_VERSION);
        out.extend_from_slice(&self.session_seq.to_be_bytes());
        out.extend_from_slice(&self.prev_hash.0);
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(self.canonical.as_bytes());
        out
    }

    /// Decodes a storage value written by [`StoredEvent::encode_value`].
    pub(crate) fn decode_value(seq: u64, value: &[u8]) -> Result<Self> {
        let corrupt = |reason: String| RecordingError::Corrupt {
            seq: Some(seq),
            reason,
        };
        let (version, rest) = value
            .split_first()
            .ok_or_else(|| corrupt("empty record".into()))?;
        if *version != STORAGE_VERSION {
            return Err(corrupt(format!("unknown record format {version}")));
        }
        let (session_seq, rest) = split_u64(rest).ok_or_else(|| corrupt("truncated".into()))?;
        let (prev_hash, rest) = split_hash(rest).ok_or_else(|| corrupt("truncated".into()))?;
        let (hash, rest) = split_hash(rest).ok_or_else(|| corrupt("truncated".into()))?;
        let canonical = std::str::from_utf8(rest)
            .map_err(|e| corrupt(format!("event is not UTF-8: {e}")))?
            .to_owned();
        let event: Event = serde_json::from_str(&canonical)
            .map_err(|e| corrupt(format!("event does not decode: {e}")))?;
        Ok(Self {
            seq,
            session_seq,
            prev_hash,
            hash,
            event,
            canonical,
        })
    }
}

const STORAGE_VERSION: u8 = 1;

/// Chains `event` after `prev` and appends its storage form (as
/// [`StoredEvent::encode_value`] writes it) to `out`, writing the canonical JSON in place
/// (no copy of the event, no intermediate buffers). Returns the new head. On error `out`
/// is left as it was.
pub(crate) fn encode_chained(
    prev: Head,
    session_seq: u64,
    event: &Event,
    out: &mut Vec<u8>,
) -> Result<Head> {
    let seq = prev
        .seq
        .checked_add(1)
        .ok_or_else(|| RecordingError::Storage("sequence number overflow".into()))?;
    let start = out.len();
    out.push(STORAGE_VERSION);
    out.extend_from_slice(&session_seq.to_be_bytes());
    out.extend_from_slice(&prev.hash.0);
    let hash_at = out.len();
    out.extend_from_slice(&[0u8; 32]);
    let json_at = out.len();
    if let Err(e) = crate::canonical::write_event(event, out) {
        out.truncate(start);
        return Err(RecordingError::Encode(e.to_string()));
    }
    let hash = record_hash(
        seq,
        session_seq,
        &prev.hash,
        out.get(json_at..).unwrap_or_default(),
    );
    if let Some(slot) = out.get_mut(hash_at..json_at) {
        slot.copy_from_slice(&hash.0);
    }
    Ok(Head { seq, hash })
}

pub(crate) fn split_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = b.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}

pub(crate) fn split_hash(b: &[u8]) -> Option<(ChainHash, &[u8])> {
    let (head, rest) = b.split_first_chunk::<32>()?;
    Some((ChainHash(*head), rest))
}

/// The record hash over already-canonical event bytes (see the [module docs](self)).
pub fn record_hash(seq: u64, session_seq: u64, prev: &ChainHash, canonical: &[u8]) -> ChainHash {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(session_seq.to_be_bytes());
    h.update(prev.0);
    h.update(canonical);
    ChainHash(h.finalize().into())
}

/// The canonical JSON of an event (sorted keys, compact), written directly from the
/// event's serde serialization.
pub fn canonical_json(event: &Event) -> Result<String> {
    let mut out = Vec::with_capacity(256);
    crate::canonical::write_event(event, &mut out)
        .map_err(|e| RecordingError::Encode(e.to_string()))?;
    String::from_utf8(out).map_err(|e| RecordingError::Encode(e.to_string()))
}

/// Re-encodes any JSON text canonically; used to check that stored bytes are canonical.
pub fn canonicalize(json: &str) -> Result<String> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| RecordingError::Encode(e.to_string()))?;
    canonical_value(&value)
}

pub(crate) fn canonical_value(value: &Value) -> Result<String> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out)?;
    String::from_utf8(out).map_err(|e| RecordingError::Encode(e.to_string()))
}

/// Writes `value` with object keys sorted explicitly, so the result does not depend
/// on whether serde_json's `preserve_order` feature is enabled in the build.
fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    let enc = |e: serde_json::Error| RecordingError::Encode(e.to_string());
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).map_err(enc)?;
                out.push(b':');
                write_canonical(v, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).map_err(enc)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{EventKind, SessionId, Timestamp};

    fn event() -> Event {
        Event {
            session: SessionId("0190b1c2-0000-7000-8000-000000000001".parse().unwrap()),
            at: Timestamp(1_700_000_000_000_000),
            kind: EventKind::SessionClosed {
                reason: "client \"quit\"\n\u{1}é".into(),
                commands: 3,
            },
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        let c = canonical_json(&event()).unwrap();
        assert_eq!(
            c,
            r#"{"at":1700000000000000,"commands":3,"reason":"client \"quit\"\n\u0001é","session":"0190b1c2-0000-7000-8000-000000000001","type":"session_closed"}"#
        );
        assert_eq!(canonicalize(&c).unwrap(), c);
        let via_value = canonical_value(&serde_json::to_value(event()).unwrap()).unwrap();
        assert_eq!(c, via_value);
        assert_eq!(
            canonicalize(r#"{ "b": [1, {"z":1,"a":2}], "a": null }"#).unwrap(),
            r#"{"a":null,"b":[1,{"a":2,"z":1}]}"#
        );
    }

    #[test]
    fn direct_writer_matches_the_value_path() {
        use portcullis_core::{
            AuthMethod, Command, Completion, Decision, Identity, Protocol, SqlVia,
        };
        let s = SessionId::new();
        let events = [
            event(),
            Event::now(
                s,
                EventKind::SessionOpened {
                    identity: Identity {
                        subject: "ålice \u{1F600}".into(),
                        groups: vec!["dba".into(), "z\"q".into()],
                        method: AuthMethod::Jwt,
                        issuer: None,
                        expires_at: Some(Timestamp(-5)),
                    },
                    target: "orders".into(),
                    protocol: Protocol::Postgres,
                    client_addr: None,
                    details: [("zeta", "1"), ("Alpha", "2"), ("alpha", "\u{7f}\t")]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                },
            ),
            Event::now(
                s,
                EventKind::Command {
                    seq: u64::MAX,
                    command: Command::Sql {
                        text: "SELECT '\0\u{1f}'".into(),
                        via: SqlVia::Simple,
                    },
                    decision: Decision::deny("r", "no"),
                    result: None,
                },
            ),
            Event::now(
                s,
                EventKind::CommandResult {
                    seq: 1,
                    duration_us: 0,
                    completion: Completion {
                        rows_returned: 3,
                        tag: Some("SELECT 3".into()),
                        error: Some("boom".into()),
                        ..Default::default()
                    },
                },
            ),
            Event::now(
                s,
                EventKind::Command {
                    seq: 2,
                    command: Command::Http {
                        method: "POST".into(),
                        path: "/v1/x".into(),
                        query: None,
                        details: [("request_body", "{\"b\":1}"), ("client_path", "/api/v1/x")]
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect(),
                    },
                    decision: Decision::allow("r", "ok"),
                    result: None,
                },
            ),
            Event::now(
                s,
                EventKind::CommandResult {
                    seq: 2,
                    duration_us: 7,
                    completion: Completion {
                        tag: Some("200".into()),
                        details: [("response_body".to_owned(), "{\"a\":\"é\"}".to_owned())].into(),
                        ..Default::default()
                    },
                },
            ),
        ];
        let more = [
            EventKind::SessionRefused {
                subject: None,
                target: Some("orders".into()),
                client_addr: Some("127.0.0.1:5".into()),
                side: portcullis_core::Side::Client,
                reason: "bad token".into(),
            },
            EventKind::FileOperation {
                seq: 3,
                protocol: "sftp".into(),
                op: "rename".into(),
                path: "/a".into(),
                to: Some("/b".into()),
                direction: None,
                bytes: 0,
                size: None,
                error: None,
            },
            EventKind::ApprovalDecided {
                request: "r1".into(),
                approver: "carol".into(),
                approved: true,
                justification: "ticket 7".into(),
            },
            EventKind::GrantEnded {
                grant: "g1".into(),
                reason: "revoked".into(),
                by: None,
            },
        ];
        let mut more: Vec<Event> = more.into_iter().map(|k| Event::now(s, k)).collect();
        // A command with its result folded in (a nested object with its own keys).
        let mut folded = events[4].clone();
        assert!(folded.fold_result(events[5].clone()).is_none());
        more.push(folded);
        for e in events.iter().chain(&more) {
            let via_value = canonical_value(&serde_json::to_value(e).unwrap()).unwrap();
            assert_eq!(canonical_json(e).unwrap(), via_value);
            // The event writer and serde's flattening give the same bytes.
            let mut flattened = Vec::new();
            crate::canonical::write(e, &mut flattened).unwrap();
            assert_eq!(canonical_json(e).unwrap().as_bytes(), flattened);
        }
        // Any JSON value (maps, arrays, numbers, nesting) comes out as the Value path writes it.
        let v: Value = serde_json::from_str(
            r#"{"b":[1,-2,3.5,1e300,{"y":null,"x":[true,false]}],"a":{"é":"\u0000","e":""},"":0}"#,
        )
        .unwrap();
        let mut direct = Vec::new();
        crate::canonical::write(&v, &mut direct).unwrap();
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            canonical_value(&v).unwrap()
        );

        // A repeated key keeps its later value, whether the keys arrive in order or not.
        struct Repeated(&'static [(&'static str, u8)]);
        impl serde::Serialize for Repeated {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        // Keys written with escapes (compared by their own bytes, not the escaped
        // ones), more entries than an object keeps inline, in any order.
        let tricky: &[(&str, u8)] = &[
            ("z", 1),
            ("a\"q", 2),
            ("\n", 3),
            ("\\", 4),
            ("é", 5),
            ("A", 6),
            ("a", 7),
            ("b\u{1}", 8),
            ("", 9),
            ("m", 10),
            ("a\"q", 11),
        ];
        let mut direct = Vec::new();
        crate::canonical::write(&Repeated(tricky), &mut direct).unwrap();
        let via_value = canonical_value(&serde_json::to_value(Repeated(tricky)).unwrap()).unwrap();
        assert_eq!(String::from_utf8(direct).unwrap(), via_value);
        // Number keys are written as their decimal text and sorted as text.
        let numbers: std::collections::BTreeMap<u32, bool> =
            [(9, true), (10, false), (100, true)].into();
        let mut direct = Vec::new();
        crate::canonical::write(&numbers, &mut direct).unwrap();
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            r#"{"10":false,"100":true,"9":true}"#
        );
        for pairs in [
            &[("a", 1), ("a", 2), ("b", 3)][..],
            &[("b", 3), ("a", 1), ("a", 2)][..],
        ] {
            let mut direct = Vec::new();
            crate::canonical::write(&Repeated(pairs), &mut direct).unwrap();
            let via_value =
                canonical_value(&serde_json::to_value(Repeated(pairs)).unwrap()).unwrap();
            assert_eq!(via_value, r#"{"a":2,"b":3}"#);
            assert_eq!(String::from_utf8(direct).unwrap(), via_value);
        }
    }

    #[test]
    fn hash_is_reproducible_and_covers_every_field() {
        let r1 = StoredEvent::chain(Head::GENESIS, 1, event()).unwrap();
        assert_eq!(r1.seq, 1);
        assert_eq!(r1.prev_hash, ChainHash::ZERO);
        assert_eq!(r1.compute_hash(), r1.hash);
        let mut manual = Sha256::new();
        manual.update(b"portcullis-event-v1\n");
        manual.update(1u64.to_be_bytes());
        manual.update(1u64.to_be_bytes());
        manual.update([0u8; 32]);
        manual.update(r1.canonical.as_bytes());
        assert_eq!(r1.hash.0, <[u8; 32]>::from(manual.finalize()));

        let r2 = StoredEvent::chain(r1.head(), 2, event()).unwrap();
        assert_eq!(r2.prev_hash, r1.hash);
        assert_ne!(r2.hash, r1.hash);
        let mut other = r2.clone();
        other.session_seq = 3;
        assert_ne!(other.compute_hash(), r2.hash);
    }

    #[test]
    fn storage_encoding_round_trips_and_rejects_garbage() {
        let r = StoredEvent::chain(Head::GENESIS, 1, event()).unwrap();
        let mut in_place = b"prefix".to_vec();
        let head = encode_chained(Head::GENESIS, 1, &event(), &mut in_place).unwrap();
        assert_eq!(head, r.head());
        assert_eq!(&in_place[6..], &r.encode_value()[..]);
        let back = StoredEvent::decode_value(1, &r.encode_value()).unwrap();
        assert_eq!(back, r);
        assert!(matches!(
            StoredEvent::decode_value(7, &[1, 2, 3]),
            Err(RecordingError::Corrupt { seq: Some(7), .. })
        ));
        assert!(StoredEvent::decode_value(7, &[]).is_err());
        let line: Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(line["hash"], r.hash.to_hex());
        assert_eq!(line["event"]["type"], "session_closed");
        assert_eq!(ChainHash::from_hex(&r.hash.to_hex()).unwrap(), r.hash);
    }
}
