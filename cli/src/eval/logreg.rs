//! Multinomial logistic regression with an L2 penalty, the few-shot classifier of the paper:
//! scikit-learn's `LogisticRegression(C=1.0, multi_class='multinomial', solver='lbfgs')`.
//!
//! For n samples x_i with labels y_i in 0..K, one weight row w_k and one intercept b_k per
//! class (all K classes, as scikit-learn does), z_ik = w_k · x_i + b_k, and the objective is
//!
//! ```text
//! f(W, b) = Σ_i [ logsumexp_k z_ik - z_{i,y_i} ]  +  ||W||² / (2C)
//! ```
//!
//! The intercept is not penalised. f is strictly convex in W and convex in b; the only flat
//! direction is adding one constant to every b_k, which changes no prediction. Its gradient is
//!
//! ```text
//! ∂f/∂w_k = Σ_i (p_ik - [y_i = k]) x_i + w_k / C,    ∂f/∂b_k = Σ_i (p_ik - [y_i = k])
//! ```
//!
//! with p_i = softmax(z_i). We minimise it with L-BFGS (as scikit-learn does), starting from
//! zero, until max |∂f| <= 1e-9 or 1000 iterations: far tighter than scikit-learn's default
//! tolerance, so the fit is the optimum itself rather than wherever a solver stopped.
use super::lbfgs::{dot, Lbfgs, Minimum};

/// The settings of the classifier.
#[derive(Clone, Copy, Debug)]
pub struct LogisticRegression {
    /// Inverse penalty strength: the penalty is ||W||² / (2C).
    pub c: f64,
    pub solver: Lbfgs,
}

impl Default for LogisticRegression {
    fn default() -> Self {
        LogisticRegression {
            c: 1.0,
            solver: Lbfgs::default(),
        }
    }
}

/// A fitted classifier.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub classes: usize,
    pub dim: usize,
    /// `classes × dim`, row k is w_k.
    pub weights: Vec<f64>,
    pub intercepts: Vec<f64>,
    /// The objective at the fit, the largest gradient entry and the L-BFGS iterations.
    pub objective: f64,
    pub grad_max: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// The training samples of one fit, rows of `x` are samples.
#[derive(Clone, Copy)]
pub struct Samples<'a> {
    pub x: &'a [f64],
    pub labels: &'a [usize],
    pub dim: usize,
    pub classes: usize,
}

impl Samples<'_> {
    fn check(&self) -> Result<(), String> {
        if self.dim == 0 || self.classes < 2 {
            return Err(format!(
                "logistic regression needs dim >= 1 and >= 2 classes, got dim {} and {} classes",
                self.dim, self.classes
            ));
        }
        if self.x.len() != self.labels.len() * self.dim {
            return Err(format!(
                "{} feature values do not make {} samples of dimension {}",
                self.x.len(),
                self.labels.len(),
                self.dim
            ));
        }
        match self.labels.iter().find(|&&y| y >= self.classes) {
            Some(y) => Err(format!("label {y} with only {} classes", self.classes)),
            None => Ok(()),
        }
    }
}

impl LogisticRegression {
    pub fn fit(&self, samples: Samples) -> Result<Fitted, String> {
        samples.check()?;
        let (k, d) = (samples.classes, samples.dim);
        let Minimum {
            x,
            value,
            grad_max,
            iterations,
            converged,
        } = self.solver.minimize(vec![0.0; k * d + k], |params, grad| {
            objective(params, grad, samples, self.c)
        });
        let (weights, intercepts) = x.split_at(k * d);
        Ok(Fitted {
            classes: k,
            dim: d,
            weights: weights.to_vec(),
            intercepts: intercepts.to_vec(),
            objective: value,
            grad_max,
            iterations,
            converged,
        })
    }
}

/// f(W, b) and its gradient; `params` and `grad` hold W (row-major, `classes × dim`) then b.
pub fn objective(params: &[f64], grad: &mut [f64], s: Samples, c: f64) -> f64 {
    let (k, d) = (s.classes, s.dim);
    let (w, b) = params.split_at(k * d);
    let (grad_w, grad_b) = grad.split_at_mut(k * d);
    // Penalty first: f = ||W||² / 2C, ∂f/∂W = W / C.
    let mut value = dot(w, w) / (2.0 * c);
    for (g, wi) in grad_w.iter_mut().zip(w) {
        *g = wi / c;
    }
    grad_b.fill(0.0);
    let mut z = vec![0.0; k];
    for (xi, &yi) in s.x.chunks_exact(d).zip(s.labels) {
        for (class, zk) in z.iter_mut().enumerate() {
            *zk = dot(&w[class * d..(class + 1) * d], xi) + b[class];
        }
        let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
        value += max + sum.ln() - z[yi];
        for class in 0..k {
            let residual = (z[class] - max).exp() / sum - f64::from(u8::from(class == yi));
            grad_b[class] += residual;
            let row = &mut grad_w[class * d..(class + 1) * d];
            row.iter_mut().zip(xi).for_each(|(g, x)| *g += residual * x);
        }
    }
    value
}

impl Fitted {
    /// The decision scores z = W x + b of every row of `x`, `rows × classes`.
    pub fn scores(&self, x: &[f64]) -> Vec<f64> {
        x.chunks_exact(self.dim)
            .flat_map(|xi| {
                (0..self.classes).map(move |k| {
                    dot(&self.weights[k * self.dim..(k + 1) * self.dim], xi) + self.intercepts[k]
                })
            })
            .collect()
    }

    /// The predicted class of every row of `x` (the highest score; ties go to the lower class).
    pub fn predict(&self, x: &[f64]) -> Vec<usize> {
        self.scores(x)
            .chunks_exact(self.classes)
            .map(|z| (0..self.classes).fold(0, |best, k| if z[k] > z[best] { k } else { best }))
            .collect()
    }
}

#[cfg(test)]
mod tests;
