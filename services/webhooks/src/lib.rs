//! Kizuna webhook delivery: reads the engine's output topics in its own consumer group and
//! posts each event to the subscribers that want it, as a Standard Webhook
//! (standardwebhooks.com) carrying the CloudEvent in structured JSON mode.
//!
//! - [`consumer`]: output topics → the delivery queue, one transaction per batch with the
//!   consumer offsets (queued exactly once).
//! - [`dispatcher`]: the queue → HTTP, at least once, in order per (subscription, customer),
//!   with backoff, dead letters and disabling.
//! - [`http`]: the admin API, `/metrics`, probes.
//! - [`store`]: the tables (in the engine's database and migrations).

pub mod announce;
pub mod config;
pub mod consumer;
pub mod dispatcher;
pub mod event;
pub mod housekeeping;
pub mod http;
pub mod metrics;
pub mod signing;
pub mod startup;
pub mod store;
pub mod subscription;
