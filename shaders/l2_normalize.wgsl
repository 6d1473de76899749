// x / max(‖x‖, eps) along an axis, one workgroup per lane (as in softmax.wgsl: lane (o, i)
// holds the n values at (o·n + k)·inner + i).

const WG: u32 = 256u;

struct Params {
    lanes: u32,
    n: u32,
    inner: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;

// workgroup_sum and workgroup_max: workgroup_reduce.wgsl, put in front by the loader.

fn at(lane: u32, k: u32) -> u32 {
    return ((lane / params.inner) * params.n + k) * params.inner + lane % params.inner;
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn lane_norm(lane: u32, lid: u32) -> f32 {
    var s = 0.0;
    for (var k = lid; k < params.n; k += WG) {
        let v = x[at(lane, k)];
        s += v * v;
    }
    return sqrt(workgroup_sum(lid, s));
}

@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = wid.x + wid.y * nwg.x;
    if lane >= params.lanes {
        return;
    }
    let norm = lane_norm(lane, lid);
    // max(NaN, eps) is eps (IEEE maxNum): keep a NaN norm, as F.normalize does.
    let inv = 1.0 / select(max(norm, params.eps), norm, is_nan(norm));
    for (var k = lid; k < params.n; k += WG) {
        y[at(lane, k)] = x[at(lane, k)] * inv;
    }
}

@group(0) @binding(2) var<storage, read> out: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

// Above eps: dx = (g − y (y·g)) / ‖x‖; below it the denominator is the constant eps.
@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = wid.x + wid.y * nwg.x;
    if lane >= params.lanes {
        return;
    }
    let norm = lane_norm(lane, lid);
    var partial = 0.0;
    for (var k = lid; k < params.n; k += WG) {
        partial += out[at(lane, k)] * grad[at(lane, k)];
    }
    let dot = workgroup_sum(lid, partial);
    for (var k = lid; k < params.n; k += WG) {
        let i = at(lane, k);
        dx[i] = select(grad[i] / params.eps, (grad[i] - out[i] * dot) / norm, norm > params.eps);
    }
}
