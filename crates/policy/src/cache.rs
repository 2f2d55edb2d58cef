//! A bounded cache of classifications by SQL text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::classify::{Classification, classify};

/// Default number of cached classifications.
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;

/// Default longest SQL text (bytes) that is cached; longer texts are classified every time.
pub const DEFAULT_CACHE_MAX_SQL: usize = 8 * 1024;

/// A bounded cache of classifications keyed by the exact SQL text.
///
/// Prepared statements and ORM queries repeat the same text many times; classifying
/// them once saves the parse. The cache holds at most `capacity` entries of at most
/// `max_sql` bytes of text each, so its memory is bounded by roughly
/// `capacity × (max_sql + size of a classification)`.
///
/// Eviction is by two generations (an approximation of least-recently-used with O(1)
/// work per lookup): new entries go to the young generation; when it holds half the
/// capacity, the old generation is dropped and the young one becomes old. An entry
/// found in the old generation is moved back to the young one, so entries in use
/// survive and entries unused for a whole generation are dropped.
#[derive(Debug)]
pub struct ClassificationCache {
    inner: Mutex<Generations>,
    half: usize,
    max_sql: usize,
}

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<Box<str>, Arc<Classification>>,
    old: HashMap<Box<str>, Arc<Classification>>,
}

impl Generations {
    /// When the young generation is full, it becomes the old one; returns the retired
    /// old generation (to be dropped outside the lock).
    fn rotate(&mut self, half: usize) -> HashMap<Box<str>, Arc<Classification>> {
        if self.young.len() >= half {
            let young = std::mem::take(&mut self.young);
            std::mem::replace(&mut self.old, young)
        } else {
            HashMap::new()
        }
    }
}

impl Default for ClassificationCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_MAX_SQL)
    }
}

impl ClassificationCache {
    /// A cache of at most `capacity` entries (0 disables caching) for texts of at most
    /// `max_sql` bytes.
    pub fn new(capacity: usize, max_sql: usize) -> Self {
        Self {
            inner: Mutex::new(Generations::default()),
            half: capacity / 2,
            max_sql,
        }
    }

    /// The classification of `sql`, from the cache or freshly computed (and cached).
    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        if self.half == 0 || sql.len() > self.max_sql {
            return Arc::new(classify(sql));
        }
        if let Some(found) = self.lookup(sql) {
            return found;
        }
        // Classify outside the lock: parsing is the expensive part.
        let fresh = Arc::new(classify(sql));
        let retired = {
            let mut g = self.lock();
            let retired = g.rotate(self.half);
            g.young.insert(sql.into(), fresh.clone());
            retired
        };
        // The retired generation is freed after the lock is released.
        drop(retired);
        fresh
    }

    fn lookup(&self, sql: &str) -> Option<Arc<Classification>> {
        let mut g = self.lock();
        if let Some(found) = g.young.get(sql) {
            return Some(found.clone());
        }
        let (key, found) = g.old.remove_entry(sql)?;
        let retired = g.rotate(self.half);
        g.young.insert(key, found.clone());
        drop(g);
        drop(retired);
        Some(found)
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut g = self.lock();
        g.young.clear();
        g.old.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps are always in a consistent state, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_keeps_entries_in_use() {
        let cache = ClassificationCache::new(8, 1024);
        let hot = "SELECT 1";
        for i in 0..100 {
            cache.classify(hot);
            cache.classify(&format!("SELECT {i} FROM t"));
            assert!(cache.len() <= 8, "len {}", cache.len());
        }
        let a = cache.classify(hot);
        let b = cache.classify(hot);
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn long_texts_are_not_cached() {
        let cache = ClassificationCache::new(8, 16);
        cache.classify("SELECT * FROM a_rather_long_table_name");
        assert!(cache.is_empty());
        cache.classify("SELECT 1");
        assert_eq!(cache.len(), 1);
    }
}
