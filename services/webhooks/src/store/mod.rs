//! PostgreSQL (the engine's database; the schema is in the engine's migrations,
//! `0003_webhooks.sql`). Each submodule owns one table and its queries.

pub mod attempts;
pub mod dead_letters;
pub mod queue;
pub mod replay;
pub mod subscriptions;
