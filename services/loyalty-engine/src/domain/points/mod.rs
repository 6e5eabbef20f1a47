//! Points: a loyalty currency whose balance is derived, never stored on its own (issue 16; see
//! `docs/design/points.md`). Pure like the rest of the domain: no I/O, `now` is a parameter.
//!
//! - [`config`]: the `[points]` programme section and its checks.
//! - [`ledger`]: movements (earn, redeem, cancel, clawback, adjust, activity) and [`ledger::fold`],
//!   which turns them into lots and balances at a given time, spending closest-to-expiry first.
//! - [`earn`]: what a purchase earns, and what a refund takes back.
//! - [`redeem`]: whether a redemption may go ahead.
//! - [`summary`]: what changed between two moments, and what expires soon.
//!
//! Not wired into the engine, the store or HTTP yet.

pub mod config;
pub mod earn;
pub mod ledger;
pub mod redeem;
pub mod summary;

pub use config::{PointsConfigError, PointsRules};
pub use ledger::{Folded, Lot, Movement, MovementKind, fold};

#[cfg(test)]
mod tests;
