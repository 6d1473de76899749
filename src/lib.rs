//! clce: fine-tuning image models with the CLCE objective on any GPU and on the CPU.
//!
//! This crate only re-exports the workspace crates; it owns the integration tests (`tests/`)
//! and the criterion benchmarks (`benches/`).
pub use clce_engine as engine;
pub use clce_models as models;
