//! The isotropy score of Mu & Viswanath ("All-but-the-Top", ICLR 2018), as METHOD.md defines
//! it for a set of embeddings W (one per row):
//!
//! ```text
//! C = the eigenvectors of WᵀW,   Z(c) = Σ_i exp(c · w_i),   IS = min_{c∈C} Z(c) / max_{c∈C} Z(c)
//! ```
//!
//! IS lies in (0, 1]; 1 means the embeddings spread equally in every principal direction.
//!
//! Two details the definition leaves open, fixed here:
//! - An eigenvector is only defined up to its sign, and Z(c) ≠ Z(-c) in general. We orient
//!   every eigenvector towards the embeddings' sum (Σ_i c · w_i >= 0), falling back to "largest
//!   entry positive" when that sum is zero; the score then does not change when the
//!   embeddings are rotated. (numpy-based implementations take whatever sign LAPACK returns.)
//! - Z(c) overflows f64 once c · w_i passes ~709 (unnormalised features can); we compare
//!   log Z(c), a log-sum-exp, and return exp(min log Z - max log Z).
use faer::{Mat, Side};

use super::embeddings::Embeddings;
use super::error::{EvalError, Result};

pub fn isotropy(embeddings: &Embeddings) -> Result<f64> {
    let (n, d) = (embeddings.len(), embeddings.dim);
    if n == 0 {
        return Err(EvalError::Invalid("isotropy of an empty set".into()));
    }
    let w = Mat::<f64>::from_fn(n, d, |i, j| f64::from(embeddings.row(i)[j]));
    let gram = w.transpose() * &w;
    let eigen = gram
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| EvalError::Invalid(format!("eigen-decomposition of WᵀW failed: {e:?}")))?;
    let u = eigen.U();
    // Column c of W·U holds c · w_i for every embedding i.
    let projections = &w * u;
    let mut log_z_min = f64::INFINITY;
    let mut log_z_max = f64::NEG_INFINITY;
    for c in 0..d {
        let column: Vec<f64> = (0..n).map(|i| projections[(i, c)]).collect();
        let sign = orientation(&column, (0..d).map(|j| u[(j, c)]));
        let log_z = log_sum_exp(column.iter().map(|p| sign * p));
        log_z_min = log_z_min.min(log_z);
        log_z_max = log_z_max.max(log_z);
    }
    Ok((log_z_min - log_z_max).exp())
}

/// +1 or -1: the sign that points the eigenvector towards the sum of the embeddings, or,
/// when it is orthogonal to that sum, makes its largest entry positive.
fn orientation(projections: &[f64], entries: impl Iterator<Item = f64>) -> f64 {
    let sum: f64 = projections.iter().sum();
    let scale: f64 = projections.iter().map(|p| p.abs()).sum();
    if sum.abs() > 1e-9 * scale {
        return sum.signum();
    }
    let largest = entries.fold(
        0.0f64,
        |best, x| if x.abs() > best.abs() { x } else { best },
    );
    if largest < 0.0 {
        -1.0
    } else {
        1.0
    }
}

fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, StandardNormal};

    use super::*;

    fn embeddings(rows: &[Vec<f32>]) -> Embeddings {
        let dim = rows[0].len();
        Embeddings::new(rows.concat(), dim, vec![0; rows.len()], vec!["all".into()]).unwrap()
    }

    /// Rows (3,0,0), (0,2,0), (0,0,1), (0,0,-1/2): WᵀW = diag(9, 4, 5/4), so the eigenvectors
    /// are the axes, each oriented positively (the row sums along them are 3, 2 and 1/2).
    /// Z(e1) = e³ + 3, Z(e2) = e² + 3, Z(e3) = e + e^{-1/2} + 2.
    fn hand_case() -> (Vec<Vec<f32>>, f64) {
        let rows = vec![
            vec![3.0, 0.0, 0.0],
            vec![0.0, 2.0, 0.0],
            vec![0.0, 0.0, 1.0],
            vec![0.0, 0.0, -0.5],
        ];
        let e = std::f64::consts::E;
        let z = [e.powi(3) + 3.0, e * e + 3.0, e + (-0.5f64).exp() + 2.0];
        (rows, z[2] / z[0])
    }

    #[test]
    fn hand_computed_score() {
        let (rows, expected) = hand_case();
        let score = isotropy(&embeddings(&rows)).unwrap();
        assert!((score - expected).abs() < 1e-12, "{score} vs {expected}");
    }

    #[test]
    fn rotating_the_embeddings_keeps_the_score() {
        let (rows, expected) = hand_case();
        // A rotation: Givens rotations in the (0,1), (1,2) and (0,2) planes.
        let rotate = |v: &mut [f32], a: usize, b: usize, angle: f32| {
            let (s, c) = angle.sin_cos();
            let (x, y) = (v[a], v[b]);
            v[a] = c * x - s * y;
            v[b] = s * x + c * y;
        };
        let rotated: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| {
                let mut v = r.clone();
                rotate(&mut v, 0, 1, 0.7);
                rotate(&mut v, 1, 2, -1.9);
                rotate(&mut v, 0, 2, 2.4);
                v
            })
            .collect();
        let score = isotropy(&embeddings(&rotated)).unwrap();
        assert!((score - expected).abs() < 1e-6, "{score} vs {expected}");
    }

    #[test]
    fn spread_embeddings_score_higher_than_a_narrow_cone() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let gaussian = |rng: &mut rand::rngs::StdRng, scale: f32| -> Vec<f32> {
            (0..16)
                .map(|_| scale * Distribution::<f32>::sample(&StandardNormal, rng))
                .collect()
        };
        // Small isotropic Gaussian vectors: Z(c) ≈ n for every direction.
        let spread: Vec<Vec<f32>> = (0..2000).map(|_| gaussian(&mut rng, 0.05)).collect();
        let spread_score = isotropy(&embeddings(&spread)).unwrap();
        assert!(spread_score > 0.95, "{spread_score}");
        // The same vectors plus a large common offset: one direction dominates.
        let offset: Vec<f32> = (0..16).map(|_| rng.random_range(0.5..1.0)).collect();
        let cone: Vec<Vec<f32>> = spread
            .iter()
            .map(|v| v.iter().zip(&offset).map(|(a, b)| a + 3.0 * b).collect())
            .collect();
        let cone_score = isotropy(&embeddings(&cone)).unwrap();
        assert!(cone_score < 0.01, "{cone_score}");
    }

    #[test]
    fn huge_features_do_not_overflow() {
        // Projections reach 800, where exp overflows f64. Z(e1) = e^800 + 2,
        // Z(e2) = 1 + e^400 + e^399, so IS = (1 + e^-1) e^-400 to within e^-399 relative.
        let rows = vec![vec![800.0, 0.0], vec![0.0, 400.0], vec![0.0, 399.0]];
        let score = isotropy(&embeddings(&rows)).unwrap();
        let expected = (1.0 + (-1.0f64).exp()) * (-400.0f64).exp();
        assert!(
            ((score - expected) / expected).abs() < 1e-9,
            "{score} vs {expected}"
        );
    }
}
