use super::UnaryOp;
use crate::ops::map::{map1, map2};
use crate::{CpuStorage, Elem};

pub(crate) fn unary(s: &CpuStorage, op: UnaryOp) -> CpuStorage {
    match s {
        CpuStorage::F32(x) if op == UnaryOp::Gelu => CpuStorage::F32(map1(x, fast::gelu)),
        CpuStorage::F32(x) => CpuStorage::F32(apply(x, op)),
        CpuStorage::F64(x) => CpuStorage::F64(apply(x, op)),
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

/// The ops that run on whole activations every step (relu on ResNet's, the scalar ops on
/// the loss scaling and averages) get a closure of their own so that their loop
/// vectorises; the rest evaluate through `eval`.
fn apply<T: Elem>(x: &[T], op: UnaryOp) -> Vec<T> {
    match op {
        UnaryOp::Relu => map1(x, relu),
        UnaryOp::Step => map1(x, step),
        UnaryOp::Neg => map1(x, |v| -v),
        UnaryOp::AddScalar(c) => {
            let c = T::c(c);
            map1(x, move |v| v + c)
        }
        UnaryOp::MulScalar(c) => {
            let c = T::c(c);
            map1(x, move |v| v * c)
        }
        _ => map1(x, move |v| eval(v, op)),
    }
}

/// g · op(t) element by element (same shapes and dtypes).
pub(crate) fn times(g: &CpuStorage, t: &CpuStorage, op: UnaryOp) -> CpuStorage {
    fn zip<T: Elem>(g: &[T], t: &[T], op: UnaryOp) -> Vec<T> {
        match op {
            // relu's backward: the gradient where the output is positive (times, not a
            // select, so that a NaN or infinite gradient still poisons a masked-off zero as
            // g * 0 does).
            UnaryOp::Step => map2(g, t, |g, t| g * step(t)),
            _ => map2(g, t, move |g, t| g * eval(t, op)),
        }
    }
    match (g, t) {
        (CpuStorage::F32(g), CpuStorage::F32(t)) if op == UnaryOp::GeluGrad => {
            CpuStorage::F32(map2(g, t, |g, x| g * fast::gelu_grad(x)))
        }
        (CpuStorage::F32(g), CpuStorage::F32(t)) => CpuStorage::F32(zip(g, t, op)),
        (CpuStorage::F64(g), CpuStorage::F64(t)) => CpuStorage::F64(zip(g, t, op)),
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// max(v, 0) that keeps a NaN (`NaN <= 0` is false), as PyTorch's relu does.
#[inline(always)]
pub(crate) fn relu<T: Elem>(v: T) -> T {
    if v <= T::zero() {
        T::zero()
    } else {
        v
    }
}

/// 1 where v > 0, else 0: relu's derivative.
#[inline(always)]
fn step<T: Elem>(v: T) -> T {
    if v > T::zero() {
        T::one()
    } else {
        T::zero()
    }
}

#[inline]
pub(crate) fn eval<T: Elem>(v: T, op: UnaryOp) -> T {
    let half = T::c(0.5);
    let one = T::one();
    match op {
        UnaryOp::Exp => v.exp(),
        UnaryOp::Log => v.ln(),
        UnaryOp::Sqrt => v.sqrt(),
        UnaryOp::Neg => -v,
        UnaryOp::Relu => relu(v),
        UnaryOp::Gelu => v * half * (one + (v * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf()),
        UnaryOp::Tanh => v.tanh(),
        UnaryOp::Sigmoid => one / (one + (-v).exp()),
        UnaryOp::Powf(p) => v.powf(T::c(p)),
        UnaryOp::AddScalar(c) => v + T::c(c),
        UnaryOp::MulScalar(c) => v * T::c(c),
        UnaryOp::Step => step(v),
        UnaryOp::GeluGrad => {
            let cdf = half * (one + (v * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf());
            let pdf = (-(v * v) * half).exp()
                * T::c(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
            cdf + v * pdf
        }
    }
}

/// GELU and its derivative in f32 without calls into libm, so that loops over them vectorise:
/// erf as Eigen's rational approximation for floats (`generic_fast_erf_float`, the one
/// TensorFlow and XLA use; within a few ulp of erf), exp by Cody-Waite reduction and a
/// degree-6 polynomial. f64 keeps libm (gradient checks run in f64).
pub(crate) mod fast {
    use std::f32::consts::{FRAC_1_SQRT_2, LN_2, LOG2_E};

    #[inline(always)]
    pub(crate) fn erf(x: f32) -> f32 {
        // Beyond ±4, erf is ±1 in f32.
        let x = x.clamp(-4.0, 4.0);
        let x2 = x * x;
        let mut p = x2 * -2.726_142_2e-10 + 2.770_681_4e-8;
        p = x2 * p + -2.101_024e-6;
        p = x2 * p + -5.692_506_4e-5;
        p = x2 * p + -7.349_906_3e-4;
        p = x2 * p + -2.954_599_8e-3;
        p = x2 * p + -1.609_603_3e-2;
        let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
        q = x2 * q + -1.682_827e-3;
        q = x2 * q + -7.373_329_2e-3;
        q = x2 * q + -1.426_473_9e-2;
        x * p / q
    }

    /// e^a for a <= 0 (what the GELU derivative and a softmax's shifted scores need); 0
    /// below -87 (and for -inf), NaN for NaN.
    #[inline(always)]
    pub(crate) fn exp_nonpositive(a: f32) -> f32 {
        let underflows = a < -87.0;
        // A select rather than `max`, which would turn a NaN into -87.
        let a = if underflows { -87.0 } else { a };
        // n = round(a / ln 2) by the 1.5·2^23 trick (no call to round), r = a - n ln 2 in
        // two parts, e^a = 2^n e^r.
        const SHIFT: f32 = 12_582_912.0;
        let shifted = a * LOG2_E + SHIFT;
        let n = shifted - SHIFT;
        let r = (a - n * 0.693_359_4) - n * (LN_2 - 0.693_359_4);
        let mut p = 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        // 2^n from the integer n that the shift left in the low bits of `shifted`'s
        // mantissa, with integer arithmetic that vectorises: `n as i32` saturates and maps NaN
        // to 0, which compiles to scalar code per element. (For a NaN, p is NaN anyway.)
        let two_n = shifted
            .to_bits()
            .wrapping_sub(SHIFT.to_bits())
            .wrapping_add(127)
            << 23;
        let e = p * f32::from_bits(two_n);
        if underflows {
            0.0
        } else {
            e
        }
    }

    #[inline(always)]
    pub(crate) fn gelu(x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
    }

    /// Phi(x) + x phi(x).
    #[inline(always)]
    pub(crate) fn gelu_grad(x: f32) -> f32 {
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
        cdf + x * INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x)
    }
}
