//! What the gradient check found, per layer type, and the table printed before training.
use super::nan_max;
use crate::train::error::{Result, TrainError};

/// One layer type's result.
#[derive(Clone, Debug)]
pub struct Row {
    pub layer_type: String,
    /// The tensors checked.
    pub tensors: Vec<String>,
    pub coords: usize,
    /// Coordinates whose gradient is below what an f32 difference resolves.
    pub unresolved: usize,
    /// Largest |analytic - numeric| relative to the tensor's largest gradient.
    pub max_rel_error: f64,
    /// The same beyond the resolution of f32 differences: what the verdict is based on.
    pub max_unexplained: f64,
}

impl Row {
    pub fn passed(&self, tolerance: f64) -> bool {
        // Written so that a NaN fails.
        self.max_unexplained <= tolerance
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
    /// The largest error beyond f32 resolution (NaN if any is NaN): what is judged.
    pub fn max_error(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| r.max_unexplained)
            .fold(0.0, nan_max)
    }

    /// The largest plain relative error.
    pub fn max_raw_error(&self) -> f64 {
        self.rows.iter().map(|r| r.max_rel_error).fold(0.0, nan_max)
    }

    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed(self.tolerance))
    }

    pub fn coords(&self) -> usize {
        self.rows.iter().map(|r| r.coords).sum()
    }

    pub fn unresolved(&self) -> usize {
        self.rows.iter().map(|r| r.unresolved).sum()
    }

    /// The table printed before training.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<30} {:<40} {:>6} {:>10} {:>10}\n",
            "layer type", "parameters checked", "coords", "rel err", "beyond f32"
        );
        for r in &self.rows {
            let mut note = String::new();
            if !r.passed(self.tolerance) {
                note += "  FAIL";
            }
            if r.unresolved > 0 {
                note += &format!("  ({} below f32 resolution)", r.unresolved);
            }
            out += &format!(
                "{:<30} {:<40} {:>6} {:>10.2e} {:>10.2e}{note}\n",
                shorten(&r.layer_type, 30),
                shorten(&r.tensors.join(", "), 40),
                r.coords,
                r.max_rel_error,
                r.max_unexplained
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
