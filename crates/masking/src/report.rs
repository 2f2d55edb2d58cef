//! Counts of masked values, by detector or column; never the values themselves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many values were masked, by detector name (`email`, `card`, a custom name) or by
/// column (`column:<name>`). Serializes as a plain map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaskReport {
    counts: BTreeMap<String, u64>,
}

impl MaskReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to the count of `name`.
    pub fn add(&mut self, name: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.counts.get_mut(name) {
            Some(c) => *c = c.saturating_add(n),
            None => {
                self.counts.insert(name.to_string(), n);
            }
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &MaskReport) {
        for (k, v) in &other.counts {
            self.add(k, *v);
        }
    }

    /// Moves every count into a completion-style map (`Completion::masked`).
    pub fn merge_into(&self, map: &mut BTreeMap<String, u64>) {
        for (k, v) in &self.counts {
            let c = map.entry(k.clone()).or_insert(0);
            *c = c.saturating_add(*v);
        }
    }

    /// The count of one name (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.counts.values().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Whether nothing was masked.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The counts.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Takes the counts out, leaving the report empty.
    pub fn take(&mut self) -> MaskReport {
        std::mem::take(self)
    }

    /// The counts, by value.
    pub fn into_counts(self) -> BTreeMap<String, u64> {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_merge_serialize() {
        let mut a = MaskReport::new();
        a.add("email", 2);
        a.add("card", 0);
        let mut b = MaskReport::new();
        b.add("email", 1);
        b.add("column:ssn", 3);
        a.merge(&b);
        assert_eq!(a.get("email"), 3);
        assert_eq!(a.get("card"), 0);
        assert_eq!(a.total(), 6);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"column:ssn":3,"email":3}"#
        );
        let mut map = BTreeMap::new();
        map.insert("email".to_string(), 1);
        a.merge_into(&mut map);
        assert_eq!(map["email"], 4);
    }
}
