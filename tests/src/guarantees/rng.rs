//! Deterministic randomness for the workloads and the fault points: the test kit's one seeded
//! generator (SplitMix64) and the seed of a test (`KIZUNA_TEST_SEED` or the test's default).

pub use kizuna_testkit::rng::{Rng, seed};
