//! Every differentiable op, one folder per op family: `mod.rs` has the op (its forward and
//! its backward rule), `cpu.rs` its CPU kernels, `gpu.rs` its GPU dispatch (WGSL in
//! `shaders/`), and `tests.rs` its tests. Each family lists its gradient-check cases.
pub mod attention;
pub mod batch_norm;
pub mod bias_gelu;
pub mod binary;
pub mod cast;
pub mod conv2d;
pub mod cross_entropy;
pub mod dropout;
pub mod l2_normalize;
mod lanes;
pub mod layer_norm;
pub mod layout;
mod map;
pub mod matmul;
#[cfg(test)]
mod nan_tests;
pub mod pool;
pub mod reduce;
pub mod residual;
mod saved_input;
pub mod softmax;
pub mod unary;

pub(crate) use lanes::map_lanes;

/// Below this many elements a rayon split costs more than it saves.
pub(crate) const CPU_PAR_MIN: usize = 1 << 15;

/// The gradient-check cases of every op, in the order `clce-cli gradcheck` prints them.
pub fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    let mut cases = Vec::new();
    cases.extend(unary::gradcheck_cases());
    cases.extend(bias_gelu::gradcheck_cases());
    cases.extend(binary::gradcheck_cases());
    cases.extend(reduce::gradcheck_cases());
    cases.extend(layout::gradcheck_cases());
    cases.extend(matmul::gradcheck_cases());
    cases.extend(conv2d::gradcheck_cases());
    cases.extend(pool::gradcheck_cases());
    cases.extend(softmax::gradcheck_cases());
    cases.extend(layer_norm::gradcheck_cases());
    cases.extend(batch_norm::gradcheck_cases());
    cases.extend(dropout::gradcheck_cases());
    cases.extend(residual::gradcheck_cases());
    cases.extend(l2_normalize::gradcheck_cases());
    cases.extend(cross_entropy::gradcheck_cases());
    cases.extend(attention::gradcheck_cases());
    cases.extend(cast::gradcheck_cases());
    cases.extend(crate::loss::gradcheck_cases());
    cases
}
