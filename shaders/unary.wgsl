// Elementwise functions of one tensor: out[i] = f(x[i]).
// OP selects f (one pipeline per op, specialised at pipeline creation); the codes match
// `UnaryOp` in engine/src/ops/unary/gpu.rs.

override OP: u32 = 0u;
const WG: u32 = 256u;

struct Params {
    n: u32,
    // The scalar of powf / add_scalar / mul_scalar.
    c: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// x^p with the CPU's answers where WGSL's pow (exp2(p * log2(x))) has none: negative bases
// with integer exponents, and p = 0.
fn powf(v: f32, p: f32) -> f32 {
    if p == 0.0 {
        return 1.0;
    }
    // pow(NaN, p) is 0 on some drivers (lavapipe); the CPU's and PyTorch's is NaN.
    if is_nan(v) {
        return v;
    }
    if v < 0.0 && p == round(p) {
        let m = pow(-v, p);
        return select(m, -m, (i32(p) & 1) == 1);
    }
    return pow(v, p);
}

fn apply(v: f32) -> f32 {
    switch OP {
        case 0u: { return exp(v); }
        case 1u: { return log(v); }
        case 2u: { return sqrt(v); }
        case 3u: { return -v; }
        // max and clamp return their other operand for a NaN (IEEE maxNum); PyTorch's relu
        // and tanh propagate it.
        case 4u: { return select(max(v, 0.0), v, is_nan(v)); }
        case 5u: { return gelu(v); }
        // Clamped: some drivers compute tanh from exp and return NaN for large |v|.
        case 6u: { return select(tanh(clamp(v, -15.0, 15.0)), v, is_nan(v)); }
        case 7u: { return 1.0 / (1.0 + exp(-v)); }
        case 8u: { return powf(v, params.c); }
        case 9u: { return v + params.c; }
        case 10u: { return v * params.c; }
        case 11u: { return select(0.0, 1.0, v > 0.0); }
        case 12u: { return gelu_grad(v); }
        default: { return v; }
    }
}

// fill: out[i] = c, for tensors made on the device (Tensor::full) rather than uploaded.
// Its own binding 1, as the written buffer (kernel.rs numbers reads before writes).
@group(0) @binding(1) var<storage, read_write> filled: array<f32>;

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    filled[i] = params.c;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    out[i] = apply(x[i]);
}

// times: out = g[i] * f(t[i]), the chain rule of relu (t its output, f step) and gelu (t its
// input, f gelu_grad) in one dispatch rather than f then a product. Bindings of its own
// after x (t), as fill has.
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> product: array<f32>;

@compute @workgroup_size(WG)
fn times(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    product[i] = g[i] * apply(x[i]);
}
