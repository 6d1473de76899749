//! Exact t-SNE (van der Maaten & Hinton, JMLR 2008) to two dimensions, with the optimisation
//! schedule of scikit-learn's `TSNE(perplexity=30, init='random', method='exact')`: early
//! exaggeration 12 for 250 iterations, momentum 0.5 then 0.8, per-coordinate gains
//! (delta-bar-delta) and learning rate max(n / 12 / 4, 50). O(n²) per iteration, which is fine
//! for the few thousand points of a 20-class figure.
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::error::{EvalError, Result};
use crate::data::rng::{stream, Purpose};

#[derive(Clone, Copy, Debug)]
pub struct Tsne {
    pub perplexity: f64,
    pub iterations: usize,
    pub seed: u64,
}

impl Default for Tsne {
    fn default() -> Self {
        Tsne {
            perplexity: 30.0,
            iterations: 1000,
            seed: 0,
        }
    }
}

const EXAGGERATION: f64 = 12.0;
const EXAGGERATION_ITERATIONS: usize = 250;
const MIN_GAIN: f64 = 0.01;

impl Tsne {
    /// 2-D coordinates of the `n` points of `x` (`n × dim`, row-major).
    pub fn embed(&self, x: &[f32], dim: usize) -> Result<Vec<[f64; 2]>> {
        let n = x.len() / dim.max(1);
        if dim == 0 || n * dim != x.len() || n < 2 {
            return Err(EvalError::Invalid(format!(
                "t-SNE needs at least 2 points (got {} values of dimension {dim})",
                x.len()
            )));
        }
        if self.perplexity <= 0.0 || self.perplexity >= (n - 1) as f64 {
            return Err(EvalError::Invalid(format!(
                "t-SNE perplexity {} must lie between 0 and the number of points - 1 ({})",
                self.perplexity,
                n - 1
            )));
        }
        let p = joint_probabilities(x, dim, self.perplexity);
        let normal = Normal::new(0.0, 1e-4).expect("valid standard deviation");
        let mut rng = stream(self.seed, Purpose::Analysis, &[n as u64]);
        let mut y: Vec<[f64; 2]> = (0..n)
            .map(|_| [normal.sample(&mut rng), normal.sample(&mut rng)])
            .collect();
        let mut velocity = vec![[0.0; 2]; n];
        let mut gains = vec![[1.0f64; 2]; n];
        let learning_rate = (n as f64 / EXAGGERATION / 4.0).max(50.0);
        for it in 0..self.iterations {
            let (exaggeration, momentum) = if it < EXAGGERATION_ITERATIONS {
                (EXAGGERATION, 0.5)
            } else {
                (1.0, 0.8)
            };
            let grad = gradient(&p, &y, exaggeration);
            for i in 0..n {
                for k in 0..2 {
                    // Grow the gain where the step keeps going downhill (the gradient
                    // opposes the velocity), shrink it where it overshot (Jacobs 1988).
                    gains[i][k] = if grad[i][k] * velocity[i][k] < 0.0 {
                        gains[i][k] + 0.2
                    } else {
                        (gains[i][k] * 0.8).max(MIN_GAIN)
                    };
                    velocity[i][k] =
                        momentum * velocity[i][k] - learning_rate * gains[i][k] * grad[i][k];
                    y[i][k] += velocity[i][k];
                }
            }
        }
        Ok(y)
    }
}

/// p_ij = (p_{j|i} + p_{i|j}) / 2n, with p_{j|i} ∝ exp(-β_i |x_i - x_j|²) and β_i set so
/// that the conditional distribution has perplexity 2^H = `perplexity`.
pub fn joint_probabilities(x: &[f32], dim: usize, perplexity: f64) -> Vec<f64> {
    let n = x.len() / dim;
    let conditional: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &x[i * dim..(i + 1) * dim];
            let distances: Vec<f64> = (0..n)
                .map(|j| {
                    let xj = &x[j * dim..(j + 1) * dim];
                    xi.iter()
                        .zip(xj)
                        .map(|(a, b)| f64::from(a - b).powi(2))
                        .sum()
                })
                .collect();
            conditional_row(&distances, i, perplexity.ln())
        })
        .collect();
    let mut p = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            p[i * n + j] = ((conditional[i][j] + conditional[j][i]) / (2.0 * n as f64)).max(1e-12);
        }
        p[i * n + i] = 0.0;
    }
    p
}

/// The row p_{·|i} whose entropy (in nats) is `target_entropy`, by bisection on β_i.
fn conditional_row(distances: &[f64], i: usize, target_entropy: f64) -> Vec<f64> {
    let (mut lo, mut hi, mut beta) = (0.0, f64::INFINITY, 1.0);
    let mut row = vec![0.0; distances.len()];
    for _ in 0..200 {
        // Shift by the nearest distance so the largest weight is exp(0) = 1.
        let nearest = distances
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .fold(f64::INFINITY, |m, (_, &d)| m.min(d));
        let mut sum = 0.0;
        for (j, &d) in distances.iter().enumerate() {
            row[j] = if j == i {
                0.0
            } else {
                (-beta * (d - nearest)).exp()
            };
            sum += row[j];
        }
        // H = log Σ w_j + β Σ p_j (d_j - nearest).
        let mean_gap: f64 = row
            .iter()
            .zip(distances)
            .map(|(w, &d)| w * (d - nearest))
            .sum::<f64>()
            / sum;
        let entropy = sum.ln() + beta * mean_gap;
        row.iter_mut().for_each(|w| *w /= sum);
        if (entropy - target_entropy).abs() < 1e-10 {
            break;
        }
        // Larger β: narrower kernel, lower entropy.
        if entropy > target_entropy {
            lo = beta;
            beta = if hi.is_finite() {
                (lo + hi) / 2.0
            } else {
                beta * 2.0
            };
        } else {
            hi = beta;
            beta = (lo + hi) / 2.0;
        }
    }
    row
}

/// ∂KL(P || Q)/∂y_i = 4 Σ_j (α p_ij - q_ij) (y_i - y_j) / (1 + |y_i - y_j|²), with α the
/// early exaggeration and q_ij = (1 + |y_i - y_j|²)^-1 / Σ_{k≠l} (1 + |y_k - y_l|²)^-1.
fn gradient(p: &[f64], y: &[[f64; 2]], exaggeration: f64) -> Vec<[f64; 2]> {
    let n = y.len();
    let kernel = |i: usize, j: usize| {
        let (dx, dy) = (y[i][0] - y[j][0], y[i][1] - y[j][1]);
        1.0 / (1.0 + dx * dx + dy * dy)
    };
    // Row sums in parallel, their total in a fixed order: a parallel float sum would depend
    // on how rayon splits the work, and the same seed must give the same map.
    let row_sums: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| {
            (0..n)
                .filter(|&j| j != i)
                .map(|j| kernel(i, j))
                .sum::<f64>()
        })
        .collect();
    let normaliser: f64 = row_sums.iter().sum();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut g = [0.0; 2];
            for j in (0..n).filter(|&j| j != i) {
                let k = kernel(i, j);
                let coefficient = 4.0 * (exaggeration * p[i * n + j] - k / normaliser) * k;
                g[0] += coefficient * (y[i][0] - y[j][0]);
                g[1] += coefficient * (y[i][1] - y[j][1]);
            }
            g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_distr::StandardNormal;

    use super::*;

    #[test]
    fn conditional_rows_have_the_requested_perplexity() {
        let distances: Vec<f64> = (0..50)
            .map(|j| (j as f64 * 0.37).sin().abs() * 4.0)
            .collect();
        for perplexity in [2.0, 10.0, 30.0] {
            let row = conditional_row(&distances, 3, f64::ln(perplexity));
            assert_eq!(row[3], 0.0);
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let entropy: f64 = row.iter().filter(|&&p| p > 0.0).map(|p| -p * p.ln()).sum();
            assert!((entropy.exp() - perplexity).abs() < 1e-6, "{perplexity}");
        }
    }

    #[test]
    fn separated_clusters_stay_separated() {
        // Three Gaussian clusters in 10-D, far apart: in the map, every point's nearest
        // neighbour must belong to its own cluster.
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let (per, dim) = (30, 10);
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for c in 0..3 {
            for _ in 0..per {
                for k in 0..dim {
                    let centre = if k == c { 20.0 } else { 0.0 };
                    let noise: f32 = StandardNormal.sample(&mut rng);
                    x.push(centre + noise);
                }
                labels.push(c);
            }
        }
        let tsne = Tsne {
            perplexity: 10.0,
            iterations: 400,
            seed: 0,
        };
        let y = tsne.embed(&x, dim).unwrap();
        assert!(y.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
        for i in 0..y.len() {
            let nearest = (0..y.len())
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let d = |j: usize| (y[i][0] - y[j][0]).powi(2) + (y[i][1] - y[j][1]).powi(2);
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            assert_eq!(labels[i], labels[nearest], "point {i}");
        }
        // The same seed gives the same map.
        assert_eq!(y, tsne.embed(&x, dim).unwrap());
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(Tsne::default().embed(&[1.0, 2.0], 2).is_err());
        let x = vec![0.0f32; 20];
        assert!(Tsne::default().embed(&x, 2).is_err()); // perplexity 30 with 10 points
    }
}
