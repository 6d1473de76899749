//! Everything that can stop a fine-tuning or evaluation run, each with a message that says what
//! to do about it.
use std::path::PathBuf;

use crate::data::DataError;
use crate::eval::EvalError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Engine(#[from] clce_engine::Error),
    #[error(transparent)]
    Model(#[from] clce_models::Error),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file of the run directory exists but is not what this program writes.
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// The loss or the gradient stopped being a finite number.
    #[error("{}", non_finite_message(what, *value, *step, *epoch))]
    NonFinite {
        what: &'static str,
        value: f64,
        step: usize,
        epoch: usize,
    },
    /// A training step failed on the GPU (out of memory, a buffer over the adapter's limit,
    /// a lost device).
    #[error(
        "step {step} failed on {device} with --batch-size {batch_size} ({views} views): {msg}. \
         If the GPU ran out of memory or a buffer is over its limit, try --batch-size {half}; \
         checkpoints already written are kept",
        views = 2 * batch_size,
        half = (batch_size / 2).max(1)
    )]
    GpuStep {
        step: usize,
        device: String,
        batch_size: usize,
        msg: String,
    },
    /// The analytic gradients disagree with finite differences.
    #[error(
        "gradient check failed (max relative error {max_error:.2e} > tolerance {tolerance:.0e}): \
         refusing to train with wrong gradients. --no-gradcheck skips the check"
    )]
    GradcheckFailed { max_error: f64, tolerance: f64 },
    /// A setting or combination of settings that cannot work.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

/// What a non-finite loss or gradient means depends on when it came: before any update
/// (step 0 is the gradient check, step 1 the first step's forward pass) no learning rate is
/// to blame, and only epochs already finished have a checkpoint.
fn non_finite_message(what: &str, value: f64, step: usize, epoch: usize) -> String {
    if step <= 1 {
        return format!(
            "the {what} is {value} before any update (step {step}): not the learning rate but \
             the inputs. Weights are checked when loaded, so look at the data (an image of \
             constant colour normalises fine; a corrupt file does not) and the loss settings \
             (--tau near 0 overflows). Nothing was trained and no checkpoint written"
        );
    }
    let kept = if epoch > 1 {
        format!("the checkpoint of epoch {} is kept", epoch - 1)
    } else {
        "no checkpoint was written yet (they are written at the end of every epoch)".into()
    };
    format!(
        "the {what} is {value} at step {step} (epoch {epoch}); stopping: {kept}. Try a lower \
         --lr, --clip-grad, or more --warmup-epochs"
    )
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        TrainError::Corrupt {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
