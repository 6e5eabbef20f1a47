//! `kizuna-sim`: simulated customers of an e-commerce shop, and their purchase, support-ticket
//! and survey events, for Kizuna demos, load tests, backfills and churn benchmarks.
//!
//! - [`persona`]: who the customers are (truly loyal, high-value not loyal, price- and
//!   programme-driven, angels, hostages, rebels, quiet churners) and the mix they come in;
//! - [`catalog`], [`calendar`]: categories with their cadence and prices, sales, survey waves;
//! - [`orders`], [`service`]: orders, discounts and refunds; tickets and survey answers;
//! - [`customer`]: one customer's life; [`world`]: all of them, merged in time order;
//! - [`sink`]: Kafka or JSON lines; [`truth`]: the ground-truth CSV; [`run`]: pace and progress.

pub mod calendar;
pub mod catalog;
pub mod customer;
pub mod orders;
pub mod persona;
pub mod rng;
pub mod run;
pub mod service;
pub mod sink;
pub mod truth;
pub mod world;
