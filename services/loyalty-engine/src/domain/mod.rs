//! The loyalty domain: pure functions from state and events to new state and outputs.
//! Nothing in here does I/O or reads a clock.

pub mod apply;
pub mod event;
pub mod ids;
pub mod money;
pub mod output;
pub mod programme;
pub mod state;
