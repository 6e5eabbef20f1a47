//! Which partitions the writers may commit for. A revocation first closes the gate for the
//! partitions leaving (no new batch of theirs starts), then waits, with a deadline, for the
//! batches of theirs being committed to finish. What was received but not committed is dropped:
//! the new owner reads it again from the offsets stored with the state.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::engine::batch::Incoming;

type Partition = (String, i32);

#[derive(Debug, Clone, Default)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug, Default)]
struct State {
    closed: BTreeSet<Partition>,
    in_flight: HashMap<Partition, usize>,
}

/// The partitions of a batch admitted through the gate; give it back with [`Gate::release`].
#[derive(Debug)]
#[must_use]
pub struct Admitted(Vec<Partition>);

impl Gate {
    /// Drops from `batch` the messages of closed partitions and of partitions `owns` rejects,
    /// and records the rest as in flight.
    pub fn admit(&self, batch: &mut Vec<Incoming>, owns: impl Fn(&str, i32) -> bool) -> Admitted {
        let Ok(mut state) = self.inner.state.lock() else {
            batch.clear();
            return Admitted(Vec::new());
        };
        batch.retain(|m| {
            !state.closed.contains(&(m.topic.clone(), m.partition)) && owns(&m.topic, m.partition)
        });
        let partitions: BTreeSet<Partition> = batch
            .iter()
            .map(|m| (m.topic.clone(), m.partition))
            .collect();
        for p in &partitions {
            *state.in_flight.entry(p.clone()).or_default() += 1;
        }
        Admitted(partitions.into_iter().collect())
    }

    /// The batch admitted is committed or abandoned.
    pub fn release(&self, admitted: Admitted) {
        if let Ok(mut state) = self.inner.state.lock() {
            for p in admitted.0 {
                if let Some(n) = state.in_flight.get_mut(&p) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        state.in_flight.remove(&p);
                    }
                }
            }
        }
        self.inner.released.notify_waiters();
    }

    /// Closes the gate for `partitions` and waits until none of their batches is in flight,
    /// or until `deadline`. Returns whether they drained in time.
    pub async fn drain(&self, partitions: &[Partition], deadline: tokio::time::Instant) -> bool {
        if let Ok(mut state) = self.inner.state.lock() {
            state.closed.extend(partitions.iter().cloned());
        }
        loop {
            let released = self.inner.released.notified();
            tokio::pin!(released);
            // Register before checking, so a release between the check and the wait is seen.
            released.as_mut().enable();
            if !self.busy(partitions) {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return !self.busy(partitions);
            }
        }
    }

    /// Opens the gate again for `partitions` (assigned to this instance anew).
    pub fn open(&self, partitions: &[Partition]) {
        if let Ok(mut state) = self.inner.state.lock() {
            for p in partitions {
                state.closed.remove(p);
            }
        }
    }

    /// Whether a batch of `partition` is being committed.
    pub fn in_flight(&self, partition: &Partition) -> bool {
        self.busy(std::slice::from_ref(partition))
    }

    fn busy(&self, partitions: &[Partition]) -> bool {
        self.inner
            .state
            .lock()
            .map(|s| partitions.iter().any(|p| s.in_flight.contains_key(p)))
            .unwrap_or(false)
    }
}
