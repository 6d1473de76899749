//! What the gradient check found, per layer type, and the table printed before training.
use super::{nan_max, TensorCheck};
use crate::train::error::{Result, TrainError};

/// One layer type's result.
#[derive(Clone, Debug)]
pub struct Row {
    pub layer_type: String,
    /// The tensors checked.
    pub tensors: Vec<String>,
    /// Coordinates compared with finite differences.
    pub coords: usize,
    /// Of those, skipped: an activation pattern (ReLU, max-pool) changes within the step.
    pub kinked: usize,
    /// Largest |device gradient - f64 CPU gradient| relative to the tensor's largest gradient.
    pub device_error: f64,
    /// Largest |f64 gradient - f64 finite difference| beyond rounding, relative likewise.
    pub difference_error: f64,
}

impl Row {
    pub(super) fn new(layer_type: String) -> Row {
        Row {
            layer_type,
            tensors: Vec::new(),
            coords: 0,
            kinked: 0,
            device_error: 0.0,
            difference_error: 0.0,
        }
    }

    pub(super) fn add(&mut self, name: &str, t: &TensorCheck) {
        self.tensors.push(name.to_string());
        self.coords += t.coords;
        self.kinked += t.kinked;
        self.device_error = nan_max(self.device_error, t.device_error);
        self.difference_error = nan_max(self.difference_error, t.difference_error);
    }

    /// The larger of the two errors (NaN if either is).
    pub fn error(&self) -> f64 {
        nan_max(self.device_error, self.difference_error)
    }

    pub fn passed(&self, tolerance: f64) -> bool {
        // Written so that a NaN fails.
        self.error() <= tolerance
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub rows: Vec<Row>,
    pub tolerance: f64,
    /// The objective at the unperturbed parameters.
    pub loss: f64,
}

impl Report {
    /// The largest error of either comparison (NaN if any is NaN): what is judged.
    pub fn max_error(&self) -> f64 {
        self.rows.iter().map(Row::error).fold(0.0, nan_max)
    }

    /// The largest error of the device's gradient against the f64 CPU one.
    pub fn max_device_error(&self) -> f64 {
        self.rows.iter().map(|r| r.device_error).fold(0.0, nan_max)
    }

    /// The largest error of the f64 gradient against f64 differences.
    pub fn max_difference_error(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| r.difference_error)
            .fold(0.0, nan_max)
    }

    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed(self.tolerance))
    }

    pub fn coords(&self) -> usize {
        self.rows.iter().map(|r| r.coords).sum()
    }

    pub fn kinked(&self) -> usize {
        self.rows.iter().map(|r| r.kinked).sum()
    }

    /// The table printed before training.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<30} {:<40} {:>6} {:>10} {:>10}\n",
            "layer type", "parameters checked", "coords", "vs f64", "vs diff"
        );
        for r in &self.rows {
            let mut note = String::new();
            if !r.passed(self.tolerance) {
                note += "  FAIL";
            }
            if r.kinked > 0 {
                note += &format!("  ({} skipped: kink within the step)", r.kinked);
            }
            out += &format!(
                "{:<30} {:<40} {:>6} {:>10.2e} {:>10.2e}{note}\n",
                shorten(&r.layer_type, 30),
                shorten(&r.tensors.join(", "), 40),
                r.coords,
                r.device_error,
                r.difference_error
            );
        }
        out
    }

    /// Turns a failed check into the error that stops the run.
    pub fn into_result(self) -> Result<Report> {
        if self.passed() {
            Ok(self)
        } else {
            Err(TrainError::GradcheckFailed {
                max_error: self.max_error(),
                tolerance: self.tolerance,
            })
        }
    }
}

fn shorten(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let head: String = s.chars().take(width - 3).collect();
        head + "..."
    }
}
