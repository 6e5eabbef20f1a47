//! Ingest: Kafka messages in, one PostgreSQL transaction per batch.

pub mod batch;
pub mod clock;
pub mod consumer;
pub mod decode;
pub mod ownership;
pub mod rebalance;
pub mod reject;
pub mod validate;
