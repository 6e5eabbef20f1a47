//! Which input partitions this instance owns right now, and how far they reach (their high
//! watermarks, from the consumer's statistics). Written by ingest's rebalance coordinator,
//! read by the relay and the sweeper (only the owner publishes or sweeps a customer) and by
//! the lag gauge.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default, Clone)]
pub struct Ownership {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    owned: RwLock<BTreeSet<(String, i32)>>,
    /// Bumped on every revocation, so the relay can tell its recovery scan may be stale.
    generation: AtomicU64,
    /// High watermark (next offset to be written) of each assigned partition.
    high_watermarks: RwLock<HashMap<(String, i32), i64>>,
}

impl Ownership {
    pub fn assign(&self, partitions: impl IntoIterator<Item = (String, i32)>) {
        if let Ok(mut owned) = self.inner.owned.write() {
            owned.extend(partitions);
        }
    }

    pub fn revoke(&self, partitions: impl IntoIterator<Item = (String, i32)>) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut owned) = self.inner.owned.write() {
            for p in partitions {
                owned.remove(&p);
            }
        }
    }

    pub fn revoke_all(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut owned) = self.inner.owned.write() {
            owned.clear();
        }
    }

    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        self.inner
            .owned
            .read()
            .map(|o| o.contains(&(topic.to_owned(), partition)))
            .unwrap_or(false)
    }

    /// Owned partition numbers, across the input topics.
    pub fn partition_numbers(&self) -> Vec<i32> {
        let set: BTreeSet<i32> = self
            .inner
            .owned
            .read()
            .map(|o| o.iter().map(|(_, p)| *p).collect())
            .unwrap_or_default();
        set.into_iter().collect()
    }

    /// The owned (topic, partition) pairs.
    pub fn owned(&self) -> Vec<(String, i32)> {
        self.inner
            .owned
            .read()
            .map(|o| o.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn set_high_watermarks(&self, highs: HashMap<(String, i32), i64>) {
        if let Ok(mut slot) = self.inner.high_watermarks.write() {
            *slot = highs;
        }
    }

    /// Consumer lag of each owned partition: its high watermark less `stored` (the next
    /// offset to apply); partitions without statistics yet are left out.
    pub fn lag(&self, stored: &HashMap<(String, i32), i64>) -> Vec<((String, i32), i64)> {
        let highs = self
            .inner
            .high_watermarks
            .read()
            .map(|h| h.clone())
            .unwrap_or_default();
        self.owned()
            .into_iter()
            .filter_map(|key| {
                let high = *highs.get(&key)?;
                let next = stored.get(&key).copied().unwrap_or(0);
                Some((key, (high - next).max(0)))
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        self.inner.owned.read().map(|o| o.len()).unwrap_or(0)
    }
}
