//! Schema Registry framing, end to end: the real engine, the real brokers (each test on Apache
//! Kafka and on tansu) and PostgreSQL, and a real registry with the Confluent-compatible API (Apicurio Registry, started by
//! `deploy/local/up.sh` or `deploy/local/registry.sh`).
//!
//! `KIZUNA_TEST_REGISTRY_URL` (default `http://127.0.0.1:8081/apis/ccompat/v7`). The output
//! test runs `kizuna topics create`: build the binary first (`cargo build --bin kizuna`).
//!
//! The frames are written and read here by hand, independently of the engine's code: magic
//! byte 0, the schema id (4 bytes, big-endian), the message indexes (zig-zag varints: a count,
//! then the indexes; the single byte 0 for the first message), then the protobuf payload.

#[path = "../shared/points_kit.rs"]
mod points_kit;

mod frames;

mod inputs;
mod outputs;
mod redemptions;
