//! Which input partitions this instance owns right now. Written by the rebalance callbacks,
//! read by the relay and the sweeper so that only the owner publishes or sweeps a customer.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default, Clone)]
pub struct Ownership {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    owned: RwLock<BTreeSet<(String, i32)>>,
    /// Bumped on every revocation, so the ingest loop can tell its batch may be stale.
    generation: AtomicU64,
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

    pub fn count(&self) -> usize {
        self.inner.owned.read().map(|o| o.len()).unwrap_or(0)
    }
}
