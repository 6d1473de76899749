//! The mean of per-episode accuracies with its 95% confidence interval, as few-shot papers
//! report it: mean ± t_{0.975, n-1} · s / sqrt(n), with s the sample standard deviation
//! (ddof = 1) and t the Student-t quantile.
use super::student_t;

/// A mean and the half-width of its 95% confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanCi {
    pub mean: f64,
    /// The interval is `mean - ci95 ..= mean + ci95`.
    pub ci95: f64,
}

impl MeanCi {
    /// Needs at least two samples (one sample has no spread to estimate).
    pub fn of(samples: &[f64]) -> Option<MeanCi> {
        let n = samples.len();
        if n < 2 {
            return None;
        }
        let mean = samples.iter().sum::<f64>() / n as f64;
        let variance =
            samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        let t = student_t::quantile(0.975, (n - 1) as f64);
        Some(MeanCi {
            mean,
            ci95: t * variance.sqrt() / (n as f64).sqrt(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_interval() {
        // Samples 1, 2, 3, 4, 5: mean 3, s² = 10 / 4 = 2.5, t_{0.975,4} = 2.776445,
        // half-width = 2.776445 · sqrt(2.5) / sqrt(5) = 2.776445 / sqrt(2) = 1.963243.
        let ci = MeanCi::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert!((ci.mean - 3.0).abs() < 1e-15);
        assert!((ci.ci95 - 1.963243).abs() < 2e-6, "{}", ci.ci95);
    }

    #[test]
    fn constant_samples_have_zero_width_and_one_sample_has_none() {
        let ci = MeanCi::of(&[0.8; 10]).unwrap();
        assert!((ci.mean - 0.8).abs() < 1e-15 && ci.ci95.abs() < 1e-15);
        assert!(MeanCi::of(&[0.5]).is_none());
        assert!(MeanCi::of(&[]).is_none());
    }
}
