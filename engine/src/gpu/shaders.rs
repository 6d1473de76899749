//! The WGSL sources, one file per kernel family, compiled into the binary.
pub struct Shader {
    /// The file name, used in error messages and as the cache key.
    pub name: &'static str,
    pub source: &'static str,
}

/// `shader!(NAME, "file.wgsl", prelude...)`: the file with shared snippets in front, each a
/// file of shaders/ named without its extension, so that one source serves every kernel
/// family that needs it:
/// - `nan`: `is_nan`, for the kernels of max-style ops, which must let NaN through as the CPU
///   and PyTorch do;
/// - `workgroup_reduce`: `workgroup_sum` and `workgroup_max` over a workgroup of `WG`
///   invocations, for the kernels that give one workgroup to a row.
macro_rules! shader {
    ($const:ident, $file:literal $(, $prelude:ident)*) => {
        pub const $const: Shader = Shader {
            name: $file,
            source: concat!(
                $(include_str!(concat!("../../../shaders/", stringify!($prelude), ".wgsl")),)*
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
shader!(SOFTMAX, "softmax.wgsl", workgroup_reduce);
shader!(LAYER_NORM, "layer_norm.wgsl", workgroup_reduce);
shader!(CROSS_ENTROPY, "cross_entropy.wgsl", workgroup_reduce);
shader!(L2_NORMALIZE, "l2_normalize.wgsl", nan, workgroup_reduce);
shader!(DROPOUT, "dropout.wgsl");
shader!(BATCH_NORM, "batch_norm.wgsl", workgroup_reduce);
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
