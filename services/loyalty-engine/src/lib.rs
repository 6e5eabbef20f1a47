//! Kizuna, a real-time customer-loyalty engine.
//!
//! Purchases, support tickets and survey answers arrive on Kafka; each customer's loyalty
//! state lives in PostgreSQL and is updated event by event; tier changes (and, later, churn
//! risk and segment changes) go back to Kafka through a transactional outbox.
//!
//! - [`domain`]: pure functions, no I/O, time passed in.
//! - [`ingest`]: decode and validate, then one transaction per batch.
//! - [`store`]: the tables, one module each.
//! - [`relay`]: outbox to Kafka.
//! - [`http`]: metrics, probes, the customer API.

pub mod commands;
pub mod config;
pub mod domain;
pub mod engine;
pub mod gauges;
pub mod health;
pub mod http;
pub mod ingest;
pub mod inputs;
pub mod kafka;
pub mod metrics;
pub mod partitioner;
pub mod pruner;
pub mod registry;
pub mod relay;
pub mod startup;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod watch;
