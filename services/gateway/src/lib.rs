//! kizuna-gateway: signed platform webhooks in, `kizuna.v1` input events out.
//!
//! Shopify orders and refunds, Zendesk ticket events and satisfaction ratings, Typeform NPS
//! answers and Kizuna's own `InputEvent` JSON arrive over HTTP; each request is verified on its
//! raw body, mapped to kizuna.v1 by the mapping file, checked against the engine's own input
//! rules, produced to the engine's input topics (idempotent producer, `acks=all`, key = customer
//! id, murmur2), and answered 200 only once the broker has acknowledged every event. The engine
//! keeps its single ingest path.
//!
//! - [`api`]: every request, response and problem type of the HTTP API.
//! - [`signature`]: each platform's signature scheme.
//! - [`mapping`]: platform fields → kizuna.v1, driven by the mapping file.
//! - [`idempotency`]: deterministic event ids from delivery ids.
//! - [`routes`]: the endpoints and the pipeline every request goes through.

pub mod api;
pub mod config;
pub mod idempotency;
pub mod mapping;
pub mod metrics;
pub mod openapi;
pub mod produce;
pub mod rate_limit;
pub mod routes;
pub mod signature;
pub mod startup;

#[cfg(test)]
mod fixtures_tests;
#[cfg(test)]
mod problem_tests;
