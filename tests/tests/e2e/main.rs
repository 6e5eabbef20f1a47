//! End-to-end: the real engine against the real brokers and the real PostgreSQL, one file per
//! scenario family. Each test body runs on Apache Kafka and on tansu (`name::on_kafka`,
//! `name::on_tansu`, see `kizuna_e2e::on_each_broker!`). Run with the stack of
//! `KIZUNA_BROKER=both deploy/local/up.sh`:
//! `cargo test -p kizuna-e2e --test e2e -- --test-threads 2` (the CLI scenario needs
//! `cargo build --bin kizuna` first). `secured_kafka` runs on a third broker, the SASL_SSL Apache
//! Kafka that `deploy/local/kafka-secure.sh` starts (the test starts it if it is not running).

#[path = "../shared/inputs.rs"]
mod inputs;
#[path = "../shared/points_kit.rs"]
mod points_kit;

mod helpers;

mod admin;
mod cli;
mod dead_letters;
mod erasure;
mod metrics;
mod outbox;
mod plans;
mod points;
mod points_adjust;
mod points_http;
mod points_referral;
mod redemptions;
mod roles;
mod secured_kafka;
mod segments;
mod subscribers;
mod tiers;
mod traces;
