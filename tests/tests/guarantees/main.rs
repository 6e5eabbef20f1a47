//! Guarantees under faults, as specifications: the real `kizuna` binary, killed with -9, fed
//! resent and hostile input, run as two instances and fed by producers on any partitioner,
//! against the real PostgreSQL and each real broker (Apache Kafka and tansu; see
//! `kizuna_e2e::on_each_broker!`). The harness (workload and its oracle, feeder, observation,
//! faults) is `kizuna_e2e::guarantees`; the tests that stop PostgreSQL or restart a broker are
//! in `tests/tests/disruptive.rs`, run alone.
//!
//! One file per scenario family:
//! - `crash`: kill -9 at random points and in the middle of large batches
//! - `duplicates`: resent events, byte for byte or altered
//! - `rebalance`: a second instance joins, the first leaves
//! - `hostile`: malformed and hostile input goes to the dead-letter topic with its reason
//! - `partitioners`: producers on any partitioner, and the repair by `kizuna recompute`
//!
//! `KIZUNA_TEST_SEED` overrides every test's seed. Needs the engine binary:
//! `cargo build --bin kizuna` (same target directory and profile).

mod crash;
mod duplicates;
mod hostile;
mod partitioners;
mod rebalance;
