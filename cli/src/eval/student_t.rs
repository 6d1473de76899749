//! Student's t distribution: the CDF through the regularised incomplete beta function, and
//! its quantile by bisection on the CDF. Needed for the 95% confidence interval of the mean
//! few-shot accuracy, mean ± t_{0.975, n-1} · s / sqrt(n).

/// Relative accuracy at which the continued fraction of the incomplete beta stops.
const EPS: f64 = 1e-15;
/// Keeps the continued fraction's denominators away from zero (modified Lentz method).
const TINY: f64 = 1e-300;

/// P(T <= t) for T ~ Student-t with `dof` degrees of freedom (`dof` > 0).
///
/// For t >= 0, P(T > t) = I_x(dof/2, 1/2) / 2 with x = dof / (dof + t²).
pub fn cdf(t: f64, dof: f64) -> f64 {
    let tail = 0.5 * regularized_incomplete_beta(dof / 2.0, 0.5, dof / (dof + t * t));
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The t with P(T <= t) = p, for 0 < p < 1 and `dof` > 0 (non-integer `dof` is allowed).
///
/// Bisection on the monotone CDF: slower than Newton but cannot diverge, and 200 halvings
/// are nothing next to an evaluation of 3,000 episodes.
pub fn quantile(p: f64, dof: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "quantile of p = {p}: needs 0 < p < 1");
    assert!(dof > 0.0, "Student-t needs dof > 0, got {dof}");
    if p < 0.5 {
        return -quantile(1.0 - p, dof);
    }
    let mut hi = 1.0;
    while cdf(hi, dof) < p {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if cdf(mid, dof) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// I_x(a, b) = B(x; a, b) / B(a, b), for a, b > 0 and 0 <= x <= 1.
///
/// The continued fraction converges fast for x < (a + 1) / (a + b + 2); beyond that the
/// symmetry I_x(a, b) = 1 - I_{1-x}(b, a) brings x back into that range
/// (Numerical Recipes, 3rd ed., section 6.4).
pub fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let log_front =
        libm::lgamma(a + b) - libm::lgamma(a) - libm::lgamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        log_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - log_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction for I_x(a, b), evaluated with the modified Lentz method.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..=10_000 {
        let m = m as f64;
        // Even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        h *= d * c;
        // Odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_tables() {
        // Two-sided 95% critical values from standard t tables (4 decimals), and the normal
        // limit 1.95996 for large dof.
        for (dof, expected) in [
            (1.0, 12.7062),
            (2.0, 4.3027),
            (4.0, 2.7764),
            (9.0, 2.2622),
            (29.0, 2.0452),
            (99.0, 1.9842),
            (599.0, 1.9639),
            (2999.0, 1.9608),
        ] {
            let t = quantile(0.975, dof);
            assert!((t - expected).abs() < 6e-5, "dof {dof}: {t} vs {expected}");
        }
        // One-sided 99.5% and 90% values.
        assert!((quantile(0.995, 5.0) - 4.0321).abs() < 6e-5);
        assert!((quantile(0.9, 10.0) - 1.3722).abs() < 6e-5);
    }

    #[test]
    fn cdf_has_closed_forms_for_one_and_two_dof() {
        // dof 1 is the Cauchy distribution; dof 2 has F(t) = 1/2 + t / (2 sqrt(2 + t²)).
        for t in [-30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 100.0] {
            let cauchy = 0.5 + f64::atan(t) / std::f64::consts::PI;
            assert!((cdf(t, 1.0) - cauchy).abs() < 1e-13, "t {t}");
            let two = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
            assert!((cdf(t, 2.0) - two).abs() < 1e-13, "t {t}");
        }
    }

    #[test]
    fn quantile_inverts_cdf_and_is_symmetric() {
        for dof in [1.0, 3.0, 7.5, 40.0] {
            for p in [0.01, 0.3, 0.5, 0.8, 0.999] {
                let t = quantile(p, dof);
                assert!((cdf(t, dof) - p).abs() < 1e-12, "dof {dof} p {p}");
                assert!((quantile(1.0 - p, dof) + t).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn incomplete_beta_known_values() {
        // I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1 - x)^b.
        for x in [0.0, 0.1, 0.5, 0.93, 1.0] {
            assert!((regularized_incomplete_beta(1.0, 1.0, x) - x).abs() < 1e-14);
            assert!((regularized_incomplete_beta(3.5, 1.0, x) - x.powf(3.5)).abs() < 1e-13);
            let expected = 1.0 - (1.0 - x).powf(2.25);
            assert!((regularized_incomplete_beta(1.0, 2.25, x) - expected).abs() < 1e-13);
        }
    }
}
