//! What can go wrong in evaluation and analysis: bad arguments, unreadable or malformed files,
//! the data pipeline's errors, and chart drawing.
use std::path::PathBuf;

use crate::data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Arguments that do not fit the data (too few images for the episode, unknown class, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that exists but does not hold what it should.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("drawing {path}: {msg}")]
    Plot { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, EvalError>;

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        EvalError::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
