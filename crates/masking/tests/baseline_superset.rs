#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! On a seeded corpus, every value the combined-regex baseline finds (after the same
//! validators) is also found by the engine.

use std::collections::BTreeMap;

use portcullis_masking::{Masker, corpus};

#[path = "../benches/support/baseline.rs"]
#[allow(dead_code)]
mod baseline;

fn check(data: &[u8]) {
    let masker = Masker::with_defaults().unwrap();
    let base = baseline::Baseline::new();
    let hits = base.find(data);
    let found = masker.find(data);
    assert!(hits.len() > 100, "corpus too poor: {}", hits.len());
    let mut per_type: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for f in &found {
        per_type.entry(f.detector).or_default().1 += 1;
    }
    let mut missed = Vec::new();
    // Findings are sorted and disjoint: walk both lists.
    let mut j = 0;
    for h in &hits {
        per_type.entry(h.detector).or_default().0 += 1;
        while j < found.len() && found[j].end <= h.start {
            j += 1;
        }
        let covered = found[j..]
            .iter()
            .take_while(|f| f.start < h.end)
            .any(|f| f.start <= h.start && f.end >= h.end);
        if !covered {
            missed.push(h);
        }
    }
    eprintln!("per type (baseline, engine): {per_type:?}");
    for h in missed.iter().take(20) {
        let lo = h.start.saturating_sub(20);
        let hi = (h.end + 20).min(data.len());
        eprintln!(
            "missed {} {:?} in {:?}",
            h.detector,
            String::from_utf8_lossy(&data[h.start..h.end]),
            String::from_utf8_lossy(&data[lo..hi])
        );
    }
    assert!(
        missed.is_empty(),
        "{} baseline findings missed",
        missed.len()
    );
}

#[test]
fn engine_finds_a_superset_of_the_baseline_on_rows() {
    check(&corpus::rows(42, 2 << 20));
}

#[test]
fn engine_finds_a_superset_of_the_baseline_on_free_text() {
    check(&corpus::free_text(7, 2 << 20));
}
