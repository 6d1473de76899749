// Exact GELU (x Phi(x), torch.nn.GELU()) and its derivative, shared by unary.wgsl and
// bias_gelu.wgsl so that the fused op and gelu() give the same values.

const FRAC_1_SQRT_2: f32 = 0.70710678118654752;
const FRAC_1_SQRT_2PI: f32 = 0.39894228040143268;

// The standard normal CDF Phi(v) = erfc(-v / sqrt 2) / 2, with erfc(a), a >= 0, from
// Abramowitz & Stegun 7.1.26 (error below 1.5e-7; WGSL has no erf). Computing the small tail
// directly, rather than as 1 + erf(v / sqrt 2), keeps gelu accurate for negative v.
fn normal_cdf(v: f32) -> f32 {
    let a = abs(v) * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let tail = 0.5 * poly * exp(-a * a);
    return select(1.0 - tail, tail, v < 0.0);
}

fn gelu(v: f32) -> f32 {
    return v * normal_cdf(v);
}

// d gelu / dx = Phi(v) + v phi(v)
fn gelu_grad(v: f32) -> f32 {
    return normal_cdf(v) + v * FRAC_1_SQRT_2PI * exp(-0.5 * v * v);
}
