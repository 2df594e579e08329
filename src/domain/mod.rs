//! Plain domain types and pure decisions: no IO, no clock (callers pass `now`).

pub mod alert;
pub mod ids;
pub mod time;
