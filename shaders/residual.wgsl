// The residual add of a pre-norm block: out = x + drop_path(gamma * branch), gamma (layer
// scale) along the last dimension. Drop path keeps or drops a whole sample (`group`
// consecutive elements) as dropout.wgsl does, from the same bits; without it the host sends
// threshold 0 and scale 1 (every sample kept, times 1: exact). d = 0: no gamma (the launch
// binds `branch` in its place).

const WG: u32 = 256u;

struct Params {
    n: u32,
    d: u32,
    key: u32,
    threshold: u32,
    group: u32,
    scale: f32,
    first_group: u32,
    split: u32,
    second_group: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

fn factor(i: u32) -> f32 {
    let g = i / params.group;
    let in_batch = select(params.second_group + (g - params.split), params.first_group + g, g < params.split);
    // A product with 0, not a select: a dropped NaN stays NaN, as on the CPU and in PyTorch.
    return select(0.0, params.scale, random_bits(params.key, in_batch) >= params.threshold);
}

fn layer_scale(i: u32) -> f32 {
    return select(1.0, gamma[i % max(params.d, 1u)], params.d > 0u);
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> branch: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    // In the order of the unfused ops: (branch * gamma) * mask, then + x.
    var t = branch[i];
    if params.d > 0u {
        t = t * layer_scale(i);
    }
    out[i] = x[i] + t * factor(i);
}

// The gradients of branch and (before its sum over rows) gamma: with m = g * mask,
// d_branch = m * gamma and d_gamma_rows = m * branch.
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_branch: array<f32>;
@group(0) @binding(5) var<storage, read_write> d_gamma_rows: array<f32>;

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    let m = g[i] * factor(i);
    d_branch[i] = m * layer_scale(i);
    d_gamma_rows[i] = m * branch[i];
}

// add_relu: out = relu(x + branch), ResNet's residual add and ReLU; NaN passes as in relu.
@group(0) @binding(3) var<storage, read_write> sum_relu: array<f32>;

@compute @workgroup_size(WG)
fn add_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    let v = x[i] + branch[i];
    sum_relu[i] = select(max(v, 0.0), v, is_nan(v));
}
