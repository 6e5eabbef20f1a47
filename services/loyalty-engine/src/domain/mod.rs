//! The loyalty domain: pure functions from state and events to new state and outputs.
//! Nothing in here does I/O or reads a clock: "now" is always a parameter.
//!
//! - [`facts`]: what a customer's events established, order-independent and idempotent.
//! - [`metrics`]: figures derived from the facts at a moment.
//! - [`tier`], [`segment`], [`motive`]: the rules.
//! - [`evaluate`] and [`apply`]: put together, producing [`output`]s.

pub mod apply;
pub mod churn;
pub mod churn_weights;
pub mod erasure;
pub mod evaluate;
pub mod event;
pub mod facts;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod money;
pub mod motive;
pub mod output;
pub mod points;
pub mod programme;
pub mod rejection;
pub mod segment;
pub mod state;
pub mod tier;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod testkit;
