//! The engine's error type: every failure a user can cause is one of these, never a panic.
use crate::{DType, Shape};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: shape mismatch: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("{op}: cannot broadcast {lhs:?} with {rhs:?}")]
    Broadcast {
        op: &'static str,
        lhs: Shape,
        rhs: Shape,
    },
    #[error("{op}: axis {axis} is out of range for a tensor of rank {rank}")]
    Axis {
        op: &'static str,
        axis: isize,
        rank: usize,
    },
    #[error("{op}: dtype mismatch: {lhs:?} vs {rhs:?}")]
    DType {
        op: &'static str,
        lhs: DType,
        rhs: DType,
    },
    #[error(
        "{op}: tensors live on different devices ({lhs} and {rhs}); move one with .to_device()"
    )]
    Device {
        op: &'static str,
        lhs: String,
        rhs: String,
    },
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    #[error("backward: {0}")]
    Backward(String),
    #[error("gpu: {0}")]
    Gpu(String),
    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
}

/// Returns early with an [`Error::Shape`] when `cond` is false.
#[macro_export]
macro_rules! ensure_shape {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Error::shape($op, format!($($fmt)+)));
        }
    };
}
