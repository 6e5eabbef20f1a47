//! What a failed batch means for the loop: retry it later (transient) or find the message at
//! fault (poison). And how long to wait before a retry: exponential backoff with jitter, so
//! several instances that failed together (a database outage) do not retry in lockstep.

use std::time::Duration;

use crate::engine::Contention;
use crate::engine::batch::UnresolvedInBatch;
use crate::registry::RegistryUnavailable;

/// Why a batch failed, as far as the consume loop is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The infrastructure failed (connection, timeout, deadlock, contention): the same batch
    /// will succeed later.
    Transient,
    /// Something in the batch's content fails every time (a value the database refuses, a
    /// stored state that cannot be read): retrying the whole batch would block consumption
    /// forever.
    Poison,
}

/// Classifies a batch failure by its cause chain. Only failures that are clearly about the
/// data are poison; anything unknown is transient, since a poison verdict ends with a message
/// in the dead letters (the loop first re-runs the batch in halves, so a transient failure
/// misread as poison still applies everything).
pub fn classify(error: &anyhow::Error) -> Failure {
    for cause in error.chain() {
        if cause.is::<Contention>()
            || cause.is::<RegistryUnavailable>()
            || cause.is::<UnresolvedInBatch>()
        {
            return Failure::Transient;
        }
        if let Some(e) = cause.downcast_ref::<sqlx::Error>() {
            return match e {
                sqlx::Error::Database(db) => match db.code().as_deref() {
                    // 22: data exception (a value out of range), 23: integrity constraint.
                    Some(code) if code.starts_with("22") || code.starts_with("23") => {
                        Failure::Poison
                    }
                    _ => Failure::Transient,
                },
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => Failure::Poison,
                _ => Failure::Transient,
            };
        }
        if cause.is::<rmp_serde::decode::Error>() || cause.is::<rmp_serde::encode::Error>() {
            return Failure::Poison;
        }
    }
    Failure::Transient
}

/// Exponential backoff with "equal jitter": each delay is uniform between half and all of
/// the current step, and the step doubles up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    step: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            step: first,
            max,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_maximum_with_jitter_inside_each_step() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let steps = [100, 200, 400, 800, 1000, 1000];
        for step in steps {
            let d = b.next_delay();
            let step = Duration::from_millis(step);
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_instances_apart() {
        let delays: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(5)).next_delay())
            .collect();
        assert!(
            delays.len() > 10,
            "20 instances got only {} distinct delays",
            delays.len()
        );
    }

    #[test]
    fn data_errors_are_poison_and_the_rest_is_transient() {
        let poison = anyhow::Error::new(rmp_serde::decode::Error::LengthMismatch(3))
            .context("decoding a stored state");
        assert_eq!(classify(&poison), Failure::Poison);
        let contention = anyhow::Error::new(Contention("rows kept changing".into()));
        assert_eq!(classify(&contention), Failure::Transient);
        // A schema registry that does not answer never sends a message to the dead letters.
        let registry = anyhow::Error::new(crate::registry::RegistryUnavailable(
            "GET /schemas/ids/7: connection refused".into(),
        ));
        assert_eq!(classify(&registry), Failure::Transient);
        assert_eq!(
            classify(&anyhow::Error::new(sqlx::Error::PoolTimedOut)),
            Failure::Transient
        );
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            classify(&anyhow::Error::new(io).context("batch")),
            Failure::Transient
        );
        assert_eq!(
            classify(&anyhow::anyhow!("something unknown")),
            Failure::Transient
        );
    }
}
