//! The harness of the guarantees suite (`tests/tests/guarantees/`) and of its disruptive tests
//! (`tests/tests/disruptive.rs`): the real `kizuna` binary, killed, stopped, duplicated and fed
//! hostile input, against the real brokers and the real PostgreSQL.
//!
//! Every test generates its input deterministically from a seed (`KIZUNA_TEST_SEED` overrides
//! it; [`workload`]), computes the expected final state of every customer independently of the
//! engine (spend net of refunds, orders counted net of refunds, tier reached; [`oracle`]),
//! produces it ([`feeder`]), and compares the database with that expectation and with a clean
//! reference run over the same input topics (a fresh database, a fresh consumer group, output
//! topics of its own; [`run`], [`observe`]). Outputs are checked against the engine's own output
//! log: every committed output is on its topic exactly once, in order ([`outputs`]). A fault in
//! the middle of a run: [`fault_run`], [`faults`].
//!
//! Needs the engine binary: `cargo build --bin kizuna` (same target directory and profile).

pub mod fault_run;
pub mod faults;
pub mod feeder;
pub mod observe;
pub mod oracle;
pub mod outputs;
pub mod rng;
pub mod run;
pub mod workload;

pub use fault_run::{FaultOutcome, FaultRun, Pace};
pub use feeder::{Feeder, stream, wait_sent};
pub use observe::{
    Consumed, Row, count, count_log_lines, count_log_lines_in, customers, diff_runs,
    ensure_no_diff, input_ends, metric, wait_applied, wait_caught_up,
};
pub use oracle::{Expect, TIERS, diff_expected};
pub use outputs::{Published, check_outputs};
pub use rng::{Rng, seed};
pub use run::{
    Begun, CATCH_UP, READ, READY, Reference, Settled, against_reference, begin, cleanup,
    engine_settings, ensure_complete, log_dir, settle,
};
pub use workload::{
    Body, CATEGORIES, Event, Input, Msg, Partitioner, Plan, Times, Workload, customer_id, generate,
    pb, recent_times, rfc3339,
};
