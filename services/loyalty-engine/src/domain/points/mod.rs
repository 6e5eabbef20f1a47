//! Points: a loyalty currency whose balance is derived, never stored on its own (issue 16; see
//! `docs/design/points.md`). Pure like the rest of the domain: no I/O, `now` is a parameter.
//!
//! - [`config`]: the `[points]` programme section and its checks.
//! - [`ledger`]: movements (earn, redeem, cancel, clawback, adjust, activity) and [`ledger::fold`],
//!   which turns them into lots and balances at a given time, spending closest-to-expiry first.
//! - [`earn`]: what a purchase earns, and what a refund takes back.
//! - [`redeem`]: whether a redemption may go ahead.
//! - [`referral`]: the referrer's bonus, and its cancellation when the referred order is refunded.
//! - [`summary`]: what changed between two moments, and what expires soon.
//! - [`book`]: a customer's book in their state: events in, movements recorded, notices out.

pub mod book;
pub mod config;
pub mod earn;
pub mod ledger;
pub mod redeem;
pub mod referral;
mod stored;
pub mod summary;

pub use book::{Balances, Decision, Notice, Outcome, PointsBook, Refusal};
pub use config::{PointsConfigError, PointsRules};
pub use ledger::{Folded, Lot, Movement, MovementKind, fold};

#[cfg(test)]
mod tests;
