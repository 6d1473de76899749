//! The WGSL sources, one file per kernel family, compiled into the binary.
use std::sync::OnceLock;

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
///   invocations, for the kernels that give one workgroup to a row;
/// - `gelu`: GELU and its derivative (unary and the fused bias + GELU);
/// - `random_bits`: the dropout mask's hash (dropout and the fused residual add).
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

shader!(UNARY, "unary.wgsl", nan, gelu);
shader!(BIAS_GELU, "bias_gelu.wgsl", gelu);
shader!(BINARY, "binary.wgsl");
shader!(REDUCE, "reduce.wgsl", nan);
shader!(LAYOUT, "layout.wgsl");
shader!(POOL, "pool.wgsl", nan);
shader!(CONV2D, "conv2d.wgsl");
shader!(OPTIM, "optim.wgsl");
shader!(SOFTMAX, "softmax.wgsl", workgroup_reduce);
shader!(LAYER_NORM, "layer_norm.wgsl", workgroup_reduce);
shader!(CROSS_ENTROPY, "cross_entropy.wgsl", workgroup_reduce);
shader!(L2_NORMALIZE, "l2_normalize.wgsl", nan, workgroup_reduce);
shader!(DROPOUT, "dropout.wgsl", random_bits);
shader!(RESIDUAL, "residual.wgsl", nan, random_bits);
shader!(BATCH_NORM, "batch_norm.wgsl", workgroup_reduce);
shader!(LACLN, "lacln.wgsl", nan);
shader!(CAST, "cast.wgsl");

/// The matmul kernels (matmul.wgsl) for the storage types of A and B and one register
/// block: the file after a header naming `ElemA` and `ElemB` (f32, or f16 behind `enable
/// f16`, compiled only where shader-f16 exists) and TM x TN (4 x 4, or 8 x 8 with `wide`).
/// One source, so the f16 and wide kernels share every staging loop; a module with an f16
/// operand names its entry points with `f16`, as the launch check for f16 storage wants.
pub fn matmul(a_f16: bool, b_f16: bool, wide: bool) -> &'static Shader {
    const NAMES: [&str; 8] = [
        "matmul.wgsl",
        "matmul.wgsl[8x8]",
        "matmul.wgsl[f16 B]",
        "matmul.wgsl[f16 B, 8x8]",
        "matmul.wgsl[f16 A]",
        "matmul.wgsl[f16 A, 8x8]",
        "matmul.wgsl[f16]",
        "matmul.wgsl[f16, 8x8]",
    ];
    static SHADERS: [OnceLock<Shader>; 8] = [const { OnceLock::new() }; 8];
    let i = 4 * a_f16 as usize + 2 * b_f16 as usize + wide as usize;
    SHADERS[i].get_or_init(|| {
        let block = if wide { 8 } else { 4 };
        let elem = |f16| if f16 { "f16" } else { "f32" };
        let enable = if a_f16 || b_f16 { "enable f16;\n" } else { "" };
        let mut source = format!(
            "{enable}alias ElemA = {};\nalias ElemB = {};\nconst TM: u32 = {block}u;\nconst TN: u32 = {block}u;\n{}",
            elem(a_f16),
            elem(b_f16),
            include_str!("../../../shaders/matmul.wgsl")
        );
        if a_f16 || b_f16 {
            source = source.replace("fn matmul", "fn matmul_f16");
        }
        Shader {
            name: NAMES[i],
            source: Box::leak(source.into_boxed_str()),
        }
    })
}

/// The fused attention kernels (attention.wgsl) with q, k and v in f32, or (`f16`) as f16
/// storage, two halves to a 32-bit word, read through core WGSL's unpack2x16float (no
/// shader-f16 needed): the saved copies that `--precision f16`'s backward reads as they are.
/// The header declares the three bindings and a reader for each; the f16 module names its
/// backward entry points with `f16`, as the launch check for f16 storage wants.
pub fn attention(f16: bool) -> &'static Shader {
    static SHADERS: [OnceLock<Shader>; 2] = [const { OnceLock::new() }; 2];
    SHADERS[f16 as usize].get_or_init(|| {
        let operand = |name: &str, binding: u32| {
            if f16 {
                format!(
                    "@group(0) @binding({binding}) var<storage, read> {name}: array<u32>;\n\
                     fn load_{name}(i: u32) -> f32 {{ return unpack2x16float({name}[i / 2u])[i % 2u]; }}\n"
                )
            } else {
                format!(
                    "@group(0) @binding({binding}) var<storage, read> {name}: array<f32>;\n\
                     fn load_{name}(i: u32) -> f32 {{ return {name}[i]; }}\n"
                )
            }
        };
        let mut source = format!(
            "{}{}{}{}",
            operand("q", 1),
            operand("k", 2),
            operand("v", 3),
            include_str!("../../../shaders/attention.wgsl")
        );
        if f16 {
            source = source
                .replace("fn backward_query(", "fn backward_query_f16(")
                .replace("fn backward_key(", "fn backward_key_f16(");
        }
        Shader {
            name: if f16 {
                "attention.wgsl[f16 q, k, v]"
            } else {
                "attention.wgsl"
            },
            source: Box::leak(source.into_boxed_str()),
        }
    })
}

/// Most parameters one AdamW dispatch updates (the per-slot arrays of adamw.wgsl's `Params`).
pub const ADAMW_MAX_SLOTS: usize = 8;

/// adamw.wgsl written out for `slots` parameters (1 ..= [`ADAMW_MAX_SLOTS`]): each slot
/// needs seven storage bindings of its own, so how many fit depends on the adapter.
pub fn adamw(slots: usize) -> &'static Shader {
    static SHADERS: [OnceLock<Shader>; ADAMW_MAX_SLOTS] =
        [const { OnceLock::new() }; ADAMW_MAX_SLOTS];
    assert!(
        (1..=ADAMW_MAX_SLOTS).contains(&slots),
        "callers clamp slots"
    );
    SHADERS[slots - 1].get_or_init(|| {
        // Bindings: 0 params, 1 the guard, then (p, g, m, v) per slot, then (p', m', v').
        let source = write_out(
            include_str!("../../../shaders/adamw.wgsl"),
            slots,
            |k| {
                let (read, write) = (2 + 4 * k, 2 + 4 * slots + 3 * k);
                vec![
                    ("{p}", read),
                    ("{g}", read + 1),
                    ("{m}", read + 2),
                    ("{v}", read + 3),
                    ("{pn}", write),
                    ("{mn}", write + 1),
                    ("{vn}", write + 2),
                ]
            },
            &[],
        );
        leaked("adamw.wgsl", slots, source)
    })
}

/// Most gradients one `sum_squares` launch of guard.wgsl reads (its `n` array).
pub const GUARD_MAX_SLOTS: usize = 31;

/// guard.wgsl written out for `slots` gradients per `sum_squares` launch (1 ..=
/// [`GUARD_MAX_SLOTS`]).
pub fn guard(slots: usize) -> &'static Shader {
    static SHADERS: [OnceLock<Shader>; GUARD_MAX_SLOTS] =
        [const { OnceLock::new() }; GUARD_MAX_SLOTS];
    assert!(
        (1..=GUARD_MAX_SLOTS).contains(&slots),
        "callers clamp slots"
    );
    SHADERS[slots - 1].get_or_init(|| {
        // Bindings: 0 params, the gradients from 1, then the state (its loss scale), partials.
        let source = write_out(
            include_str!("../../../shaders/guard.wgsl"),
            slots,
            |k| vec![("{x}", 1 + k)],
            &[("{scale}", 1 + slots), ("{partials}", 2 + slots)],
        );
        leaked("guard.wgsl", slots, source)
    })
}

/// A generated source, kept for the process's lifetime like the compiled-in ones.
fn leaked(file: &str, slots: usize, source: String) -> Shader {
    Shader {
        name: Box::leak(format!("{file}[{slots}]").into_boxed_str()),
        source: Box::leak(source.into_boxed_str()),
    }
}

/// `template` with its `//>> slot` .. `//<< slot` block written out once per slot and its
/// `//>> case ...` line once per slot (the text after the marker), {k} replaced by the slot
/// and each (placeholder, binding) of `bindings(k)` put in; then `globals` everywhere.
fn write_out(
    template: &str,
    slots: usize,
    bindings: impl Fn(usize) -> Vec<(&'static str, usize)>,
    globals: &[(&str, usize)],
) -> String {
    let (head, rest) = template.split_once("//>> slot\n").expect("a slot block");
    let (block, tail) = rest.split_once("//<< slot\n").expect("a slot block");
    let per_slot = |text: &str, k: usize| {
        let mut t = text.replace("{k}", &k.to_string());
        for (name, binding) in bindings(k) {
            t = t.replace(name, &binding.to_string());
        }
        t
    };
    let mut out = head.to_string();
    for k in 0..slots {
        out.push_str(&per_slot(block, k));
    }
    for line in tail.lines() {
        match line.trim_start().strip_prefix("//>> case ") {
            Some(case) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                for k in 0..slots {
                    out.push_str(&format!("{indent}{}\n", per_slot(case, k)));
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (name, binding) in globals {
        out = out.replace(name, &binding.to_string());
    }
    out
}
