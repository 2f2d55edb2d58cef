//! Walking the chain and checking every link.

use crate::record::canonicalize;
use crate::{ChainHash, EventStore, Head, RecordingError, Result};

/// Records read per store call while verifying.
const PAGE: usize = 1024;

/// What is wrong with the first bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// A sequence number is missing: `found` came where `expected` should have.
    Gap {
        /// The sequence number that should come next.
        expected: u64,
        /// The one that was found.
        found: u64,
    },
    /// The record does not link to its predecessor's hash.
    BrokenLink {
        /// The predecessor's hash.
        expected: ChainHash,
        /// The `prev_hash` stored in the record.
        found: ChainHash,
    },
    /// The stored hash does not match the record's content.
    HashMismatch {
        /// The hash stored in the record.
        stored: ChainHash,
        /// The hash computed from its content.
        computed: ChainHash,
    },
    /// The stored event bytes are not in canonical form.
    NotCanonical,
    /// The record could not be decoded.
    Undecodable(String),
    /// The stored chain head does not match the last record.
    HeadMismatch {
        /// The head the store reports.
        stored: Head,
        /// The end of the verified chain.
        chain: Head,
    },
}

/// The first record that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Its sequence number (for [`ChainProblem::HeadMismatch`], the stored head's).
    pub seq: u64,
    /// What is wrong.
    pub problem: ChainProblem,
}

/// The result of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records that verified, from seq 1 (or from the tombstone).
    pub verified: u64,
    /// The last verified record's head (the chain end when the chain is intact).
    pub head: Head,
    /// The first bad record, if any; verification stops there.
    pub first_bad: Option<BadRecord>,
}

impl VerifyReport {
    /// Whether the whole chain verified.
    pub fn is_intact(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Walks the whole chain from seq 1 (or from the latest tombstone after pruning,
/// without checking its signature: [`crate::verify_store`] does): sequence numbers are gapless, every record
/// links to its predecessor's hash, every stored hash matches the record's
/// content, event bytes are canonical, and the store's head is the last record.
/// Reads in bounded pages. Store failures other than undecodable records are
/// returned as errors.
pub fn verify_chain(store: &dyn EventStore) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        verified: 0,
        head: store.base()?.map_or(Head::GENESIS, |t| t.head()),
        first_bad: None,
    };
    'pages: loop {
        let next = report.head.seq.saturating_add(1);
        let mut read = 0usize;
        for item in store.scan(next, PAGE)? {
            read += 1;
            let expected = report.head.seq.saturating_add(1);
            let record = match item {
                Ok(r) => r,
                Err(RecordingError::Corrupt { seq, reason }) => {
                    report.first_bad = Some(BadRecord {
                        seq: seq.unwrap_or(expected),
                        problem: ChainProblem::Undecodable(reason),
                    });
                    break 'pages;
                }
                Err(e) => return Err(e),
            };
            let problem = if record.seq != expected {
                Some(ChainProblem::Gap {
                    expected,
                    found: record.seq,
                })
            } else if record.prev_hash != report.head.hash {
                Some(ChainProblem::BrokenLink {
                    expected: report.head.hash,
                    found: record.prev_hash,
                })
            } else if record.compute_hash() != record.hash {
                Some(ChainProblem::HashMismatch {
                    stored: record.hash,
                    computed: record.compute_hash(),
                })
            } else if canonicalize(&record.canonical).ok().as_deref()
                != Some(record.canonical.as_str())
            {
                Some(ChainProblem::NotCanonical)
            } else {
                None
            };
            if let Some(problem) = problem {
                report.first_bad = Some(BadRecord {
                    seq: record.seq,
                    problem,
                });
                break 'pages;
            }
            report.head = record.head();
            report.verified = report.verified.saturating_add(1);
        }
        if read < PAGE {
            break;
        }
    }
    if report.first_bad.is_none() {
        let stored = store.head()?;
        if stored != report.head {
            report.first_bad = Some(BadRecord {
                seq: stored.seq,
                problem: ChainProblem::HeadMismatch {
                    stored,
                    chain: report.head,
                },
            });
        }
    }
    Ok(report)
}
