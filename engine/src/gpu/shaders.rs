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
}

shader!(UNARY, "unary.wgsl");
shader!(BINARY, "binary.wgsl");
shader!(REDUCE, "reduce.wgsl");
shader!(LAYOUT, "layout.wgsl");
shader!(MATMUL, "matmul.wgsl");
