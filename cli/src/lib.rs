//! The library half of `clce-cli`: the pieces its commands share and that integration tests
//! reach directly.
pub mod data;
pub mod eval;
pub mod train;
