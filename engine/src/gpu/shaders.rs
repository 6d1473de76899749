//! The WGSL sources, one file per kernel family, compiled into the binary.
pub struct Shader {
    /// The file name, used in error messages and as the cache key.
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! shader {
    ($const:ident, $file:literal) => {
        pub const $const: Shader = Shader {
            name: $file,
            source: include_str!(concat!("../../../shaders/", $file)),
        };
    };
    // With `is_nan` (nan.wgsl) in front: the kernels of max-style ops, which must let NaN
    // through as the CPU and PyTorch do.
    ($const:ident, $file:literal, nan) => {
        pub const $const: Shader = Shader {
            name: $file,
            source: concat!(
                include_str!("../../../shaders/nan.wgsl"),
                include_str!(concat!("../../../shaders/", $file))
            ),
        };
    };
}

shader!(UNARY, "unary.wgsl", nan);
shader!(BINARY, "binary.wgsl");
shader!(REDUCE, "reduce.wgsl", nan);
shader!(LAYOUT, "layout.wgsl");
shader!(MATMUL, "matmul.wgsl");
shader!(POOL, "pool.wgsl", nan);
shader!(CONV2D, "conv2d.wgsl");
shader!(OPTIM, "optim.wgsl");
shader!(GUARD, "guard.wgsl");
shader!(SOFTMAX, "softmax.wgsl");
shader!(LAYER_NORM, "layer_norm.wgsl");
shader!(CROSS_ENTROPY, "cross_entropy.wgsl");
shader!(L2_NORMALIZE, "l2_normalize.wgsl", nan);
shader!(DROPOUT, "dropout.wgsl");
shader!(BATCH_NORM, "batch_norm.wgsl");
shader!(ATTENTION, "attention.wgsl");
shader!(LACLN, "lacln.wgsl", nan);
shader!(CAST, "cast.wgsl");

/// matmul.wgsl with the f16-storage entry points of matmul_f16.wgsl: one module, so the
/// f16 kernels share the f32 ones' tiling code, compiled only where shader-f16 exists
/// (`enable f16` fails elsewhere).
pub const MATMUL_F16: Shader = Shader {
    name: "matmul_f16.wgsl",
    source: concat!(
        "enable f16;\n",
        include_str!("../../../shaders/matmul.wgsl"),
        include_str!("../../../shaders/matmul_f16.wgsl"),
    ),
};
