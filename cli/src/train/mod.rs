//! Fine-tuning and evaluation: what `clce-cli finetune` and `clce-cli eval` run.
//!
//! - `config.rs`: the flags, their defaults, and the resolved configuration of a run;
//! - `run_dir.rs`: the run directory and atomic file replacement;
//! - `trainer.rs`: the training loop (one step, one epoch, stopping and resuming);
//!   `micro_batch.rs`: a step's views in chunks, with the whole batch's exact gradient;
//!   `distributed/`: a step's views on several ranks (`--distributed`, over MPI), the same;
//! - `gradcheck.rs`: the finite-difference check of the whole objective before training;
//! - `eval.rs`: top-1, top-5 and per-class accuracy; `fewshot.rs`: the per-epoch few-shot
//!   evaluation (`--fewshot-eval`);
//! - `metrics.rs`, `checkpoint.rs`, `progress.rs`: what a run writes and shows;
//! - `network.rs`: what all of this needs from a model; `model.rs`: the product's models;
//! - `plan.rs`: the memory of one step, planned on the meta device (`clce-cli plan`,
//!   `--memory-budget`).
pub mod checkpoint;
pub mod config;
pub mod distributed;
pub mod error;
pub mod eval;
pub mod fewshot;
pub mod gradcheck;
pub mod metrics;
pub mod micro_batch;
pub mod model;
pub mod network;
pub mod plan;
pub mod progress;
pub mod run_dir;
pub mod trainer;

pub use config::{ModelFacts, Precision, TrainConfig, TrainFlags};
pub use error::{Result, TrainError};
pub use network::{GroupOptions, Mode, Network, Output};
pub use run_dir::RunDir;
