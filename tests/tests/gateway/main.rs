//! Webhooks in: the gateway (`kizuna-gateway`) started in-process against the real broker, and
//! the real engine against the real PostgreSQL, each test on fresh topics and a fresh database.
//! The platforms' documented samples (tests/fixtures/, sources in its README) are posted signed
//! as the platforms sign them, and the engine's customer state is read back through its API.
//!
//! Each test body runs on Apache Kafka and on tansu (`name::on_kafka`, `name::on_tansu`).
//! Run: `cargo test -p kizuna-e2e --test gateway` with the stack of
//! `KIZUNA_BROKER=both deploy/local/up.sh`.

mod helpers;

mod acks;
mod refusals;
mod resends;
mod samples;
mod signatures;
