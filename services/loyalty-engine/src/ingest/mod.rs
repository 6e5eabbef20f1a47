//! Ingest: the Kafka consume loop and its rebalance protocol; each batch is applied by
//! `engine::batch` in one PostgreSQL transaction.

pub mod consumer;
pub mod failure;
pub mod gate;
pub mod rebalance;
pub mod source;

#[cfg(test)]
mod tests;
