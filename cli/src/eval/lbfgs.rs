//! Limited-memory BFGS (Nocedal & Wright, "Numerical Optimization", algorithms 7.4 and 7.5)
//! for smooth convex objectives, with a backtracking line search.
//!
//! Near the optimum the decrease f(x + t·d) - f(x) falls below the rounding error of f, and the
//! Armijo test can no longer see progress although the gradient still shrinks. A step is then
//! also accepted when f did not rise beyond that rounding error and the slope along d has
//! shrunk (the "approximate Wolfe" idea of Hager & Zhang, 2005). This lets the solver drive
//! the gradient down to ~1e-10 instead of stalling at ~1e-8.
use std::collections::VecDeque;

/// Settings of the solver.
#[derive(Clone, Copy, Debug)]
pub struct Lbfgs {
    /// Correction pairs kept (scikit-learn / SciPy use 10).
    pub memory: usize,
    pub max_iter: usize,
    /// Converged when max_i |∂f/∂x_i| <= tol.
    pub tol: f64,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Lbfgs {
            memory: 10,
            max_iter: 1000,
            tol: 1e-9,
        }
    }
}

/// Where the solver stopped.
#[derive(Clone, Debug)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    /// max_i |∂f/∂x_i| at `x`.
    pub grad_max: f64,
    pub iterations: usize,
    /// Whether the gradient tolerance was reached (rather than the iteration limit, or a line
    /// search that found no step because f and its gradient are at rounding level).
    pub converged: bool,
}

/// Sufficient-decrease constant of the Armijo test.
const ARMIJO: f64 = 1e-4;
const MAX_HALVINGS: usize = 60;

impl Lbfgs {
    /// Minimises `f` from `x0`. `f(x, grad)` returns f(x) and writes ∇f(x) into `grad`.
    pub fn minimize<F>(&self, x0: Vec<f64>, mut f: F) -> Minimum
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        let n = x0.len();
        let mut x = x0;
        let mut g = vec![0.0; n];
        let mut value = f(&x, &mut g);
        // (s, y, 1 / yᵀs) of the latest steps, oldest first.
        let mut pairs: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
        let mut x_new = vec![0.0; n];
        let mut g_new = vec![0.0; n];
        let mut iterations = 0;
        let mut converged = max_abs(&g) <= self.tol;

        while !converged && iterations < self.max_iter {
            let mut d = two_loop_direction(&g, &pairs);
            let mut slope = dot(&g, &d);
            if slope >= 0.0 {
                // The curvature pairs stopped describing f: restart from steepest descent.
                pairs.clear();
                d = g.iter().map(|v| -v).collect();
                slope = -dot(&g, &g);
            }
            // Without curvature information the first step would have the gradient's size,
            // which can be far too long; scale it to a unit step.
            let mut step = if pairs.is_empty() {
                1.0 / norm(&d).max(1.0)
            } else {
                1.0
            };
            let rounding = 1e-12 * value.abs().max(1.0);
            let mut accepted = None;
            for _ in 0..MAX_HALVINGS {
                for i in 0..n {
                    x_new[i] = x[i] + step * d[i];
                }
                let v = f(&x_new, &mut g_new);
                let armijo = v <= value + ARMIJO * step * slope;
                let approximate = v <= value + rounding && dot(&g_new, &d).abs() <= slope.abs();
                if v.is_finite() && (armijo || approximate) {
                    accepted = Some(v);
                    break;
                }
                step *= 0.5;
            }
            let Some(v) = accepted else {
                break;
            };
            iterations += 1;

            let s: Vec<f64> = (0..n).map(|i| x_new[i] - x[i]).collect();
            let y: Vec<f64> = (0..n).map(|i| g_new[i] - g[i]).collect();
            let ys = dot(&y, &s);
            // Keep only pairs of positive curvature: they keep the inverse-Hessian estimate
            // positive definite, so every direction goes downhill.
            if ys > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
                if pairs.len() == self.memory {
                    pairs.pop_front();
                }
                pairs.push_back((s, y, 1.0 / ys));
            }
            std::mem::swap(&mut x, &mut x_new);
            std::mem::swap(&mut g, &mut g_new);
            value = v;
            converged = max_abs(&g) <= self.tol;
        }
        Minimum {
            grad_max: max_abs(&g),
            x,
            value,
            iterations,
            converged,
        }
    }
}

/// d = -H g, with H the L-BFGS inverse-Hessian estimate from the stored pairs and the initial
/// scaling γ = sᵀy / yᵀy of the newest pair (Nocedal & Wright, eq. 7.20).
fn two_loop_direction(g: &[f64], pairs: &VecDeque<(Vec<f64>, Vec<f64>, f64)>) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alphas = Vec::with_capacity(pairs.len());
    for (s, y, rho) in pairs.iter().rev() {
        let alpha = rho * dot(s, &q);
        axpy(-alpha, y, &mut q);
        alphas.push(alpha);
    }
    if let Some((s, y, _)) = pairs.back() {
        let gamma = dot(s, y) / dot(y, y);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for ((s, y, rho), alpha) in pairs.iter().zip(alphas.into_iter().rev()) {
        let beta = rho * dot(y, &q);
        axpy(alpha - beta, s, &mut q);
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_an_ill_conditioned_quadratic_exactly() {
        // f(x) = Σ c_i (x_i - i)² / 2 with curvatures from 1e-2 to 1e2: minimum at x_i = i.
        let c: Vec<f64> = (0..20)
            .map(|i| 10f64.powf(-2.0 + 4.0 * i as f64 / 19.0))
            .collect();
        let min = Lbfgs::default().minimize(vec![0.0; 20], |x, g| {
            let mut v = 0.0;
            for i in 0..20 {
                let r = x[i] - i as f64;
                v += 0.5 * c[i] * r * r;
                g[i] = c[i] * r;
            }
            v
        });
        assert!(min.converged, "{min:?}");
        for (i, xi) in min.x.iter().enumerate() {
            // The gradient c_i (x_i - i) is below the tolerance, so x_i is within tol / c_i.
            assert!(c[i] * (xi - i as f64).abs() <= 1e-9, "x[{i}] = {xi}");
            assert!((xi - i as f64).abs() < 1e-6, "x[{i}] = {xi}");
        }
    }

    #[test]
    fn minimises_rosenbrock() {
        // Not convex, but the classic test of a quasi-Newton method: minimum at (1, 1).
        let min = Lbfgs::default().minimize(vec![-1.2, 1.0], |x, g| {
            let (a, b) = (1.0 - x[0], x[1] - x[0] * x[0]);
            g[0] = -2.0 * a - 400.0 * x[0] * b;
            g[1] = 200.0 * b;
            a * a + 100.0 * b * b
        });
        assert!(min.converged, "{min:?}");
        assert!((min.x[0] - 1.0).abs() < 1e-8 && (min.x[1] - 1.0).abs() < 1e-8);
    }

    #[test]
    fn stops_at_the_iteration_limit() {
        let solver = Lbfgs {
            max_iter: 3,
            ..Lbfgs::default()
        };
        let min = solver.minimize(vec![-1.2, 1.0], |x, g| {
            let (a, b) = (1.0 - x[0], x[1] - x[0] * x[0]);
            g[0] = -2.0 * a - 400.0 * x[0] * b;
            g[1] = 200.0 * b;
            a * a + 100.0 * b * b
        });
        assert_eq!(min.iterations, 3);
        assert!(!min.converged);
    }
}
