//! What can go wrong when building, loading or saving a model. Every failure a user can cause
//! (a bad file, a wrong shape, a missing tensor) is one of these, never a panic.
use std::path::PathBuf;

use crate::checkpoint::LoadReport;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a readable safetensors file (truncated, corrupt, unsupported dtype).
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// The file's tensors do not fit the model: the report lists every problem.
    #[error("{path}: the checkpoint does not fit the model\n{report}")]
    Mismatch {
        path: PathBuf,
        report: Box<LoadReport>,
    },
    /// An architecture or config that cannot be built or inferred.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Engine(#[from] clce_engine::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
}
