//! Everything that can go wrong while finding, reading or decoding a data set.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The `--data` string is not one of the known forms.
    #[error("--data {given:?}: {msg}")]
    Spec { given: String, msg: String },
    /// The data set's files are not where they should be.
    #[error("{0}")]
    Missing(String),
    /// A file exists but cannot be read at all.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file was read but its content is not what the format says (truncated, corrupt, ...).
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// An image file the `image` crate cannot decode.
    #[error("cannot decode image {path}: {source}")]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    /// A caller asked for something the data cannot give (index out of range, zero batch size).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub(crate) fn corrupt(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        DataError::Corrupt {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
