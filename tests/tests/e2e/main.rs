//! End-to-end: the real engine against the real broker and the real PostgreSQL, one file per
//! scenario family. Run with the stack of `deploy/local/up.sh`:
//! `cargo test -p kizuna-e2e --test e2e -- --test-threads 2` (the CLI scenarios need
//! `cargo build --bin kizuna` first).

#[path = "../shared/inputs.rs"]
mod inputs;

mod helpers;

mod admin;
mod cli;
mod dead_letters;
mod metrics;
mod plans;
mod segments;
mod subscribers;
mod tiers;
