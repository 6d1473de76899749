//! Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_.
use std::collections::HashSet;

use crate::{no_grad, Error, Result, Tensor};

/// Rescales the gradients of `params` so that their global L2 norm is at most `max_norm`, and
/// returns the norm they had before. Parameters without a gradient are skipped.
///
/// Like torch, the scale is `max_norm / (norm + 1e-6)`, applied when it is below 1. A NaN or
/// infinite norm is returned without touching the gradients: the caller decides (the training
/// loop stops), instead of every gradient silently becoming NaN as in torch.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid(
            "clip_grad_norm",
            format!("max_norm {max_norm} must be finite and > 0"),
        ));
    }
    let _g = no_grad();
    let mut seen = HashSet::new();
    let mut grads = Vec::new();
    let mut sum_of_squares = 0.0;
    for p in params {
        if !seen.insert(p.id()) {
            continue;
        }
        let Some(g) = p.grad() else { continue };
        sum_of_squares += g.mul(&g)?.sum_all()?.to_scalar()?;
        grads.push((p, g));
    }
    let norm = sum_of_squares.sqrt();
    if !norm.is_finite() {
        return Ok(norm);
    }
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for (p, g) in grads {
            // A new tensor, not an in-place scale: backward may hand two leaves the very same
            // gradient tensor (the two inputs of an add), which must not be scaled twice.
            p.set_grad(Some(g.mul_scalar(scale)?));
        }
    }
    Ok(norm)
}
