// The fused bias + GELU of a linear layer: out = gelu(x + bias), the bias broadcast along the
// last dimension (of size d). One kernel instead of a broadcast add and a gelu, and in the
// backward one instead of gelu_grad and a product (the bias' gradient is a sum_to after it).

const WG: u32 = 256u;

struct Params {
    n: u32,
    d: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// x as `--precision f16` saves it, two halves to a word (core WGSL's unpack2x16float reads it,
// so no shader-f16 is needed); only backward_f16 uses this view.
@group(0) @binding(1) var<storage, read> x_half: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    out[i] = gelu(x[i] + bias[i % params.d]);
}

// out = g * gelu'(x + bias): the gradient of x + bias (of x itself, and of the bias summed).
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    dz[i] = g[i] * gelu_grad(x[i] + bias[i % params.d]);
}

@compute @workgroup_size(WG)
fn backward_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    let x_i = unpack2x16float(x_half[i / 2u])[i % 2u];
    dz[i] = g[i] * gelu_grad(x_i + bias[i % params.d]);
}
