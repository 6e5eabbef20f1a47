//! Webhook delivery end to end: the real engine or engine-format messages on the real output
//! topics, the delivery service in-process, the real PostgreSQL, and a real HTTP receiver
//! (tests/receivers/webhook_receiver.py) that verifies every delivery with the Standard
//! Webhooks reference library. Waits are on conditions, with time limits.
//!
//! Each test body runs on Apache Kafka and on tansu (`name::on_kafka`, `name::on_tansu`).
//! Run: `cargo test -p kizuna-e2e --test webhooks` with the stack of
//! `KIZUNA_BROKER=both deploy/local/up.sh`.

// Shared with the e2e suite, which uses all of it; only purchases are fed here.
#[path = "../shared/inputs.rs"]
#[allow(dead_code)]
mod inputs;
// Shared with the e2e and registry suites; redemptions are not fed here.
#[path = "../shared/points_kit.rs"]
#[allow(dead_code)]
mod points_kit;

mod helpers;

mod admin;
mod delivery;
mod erasure_receipts;
mod failures;
mod filters;
mod points_events;
mod replay;
