// softmax / log_softmax along an axis, one workgroup per lane. A tensor is viewed as
// [outer, n, inner]; lane (o, i) holds the n values at (o·n + k)·inner + i. Rows are shifted
// by their maximum before exp, as on the CPU.

const WG: u32 = 256u;

struct Params {
    lanes: u32,
    n: u32,
    inner: u32,
    // 1: log_softmax.
    log: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// workgroup_sum and workgroup_max: workgroup_reduce.wgsl, put in front by the loader.

fn lane_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Index of element k of lane `lane`.
fn at(lane: u32, k: u32) -> u32 {
    let o = lane / params.inner;
    let i = lane % params.inner;
    return (o * params.n + k) * params.inner + i;
}

const NEG_INF: f32 = -3.40282347e+38;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lane_of(wid, nwg);
    if lane >= params.lanes {
        return;
    }
    var m = NEG_INF;
    for (var k = lid; k < params.n; k += WG) {
        m = max(m, x[at(lane, k)]);
    }
    m = workgroup_max(lid, m);
    var s = 0.0;
    for (var k = lid; k < params.n; k += WG) {
        s += exp(x[at(lane, k)] - m);
    }
    s = workgroup_sum(lid, s);
    let log_sum = log(s);
    for (var k = lid; k < params.n; k += WG) {
        let shifted = x[at(lane, k)] - m;
        // Two subtractions, not one by (m + log_sum): see log_softmax_row in cpu.rs.
        y[at(lane, k)] = select(exp(shifted) / s, shifted - log_sum, params.log == 1u);
    }
}

@group(0) @binding(1) var<storage, read> out: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// softmax: dx = y (g − Σ g y); log_softmax: dx = g − exp(y) Σ g.
@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lane_of(wid, nwg);
    if lane >= params.lanes {
        return;
    }
    var partial = 0.0;
    for (var k = lid; k < params.n; k += WG) {
        let i = at(lane, k);
        partial += select(grad[i] * out[i], grad[i], params.log == 1u);
    }
    let total = workgroup_sum(lid, partial);
    for (var k = lid; k < params.n; k += WG) {
        let i = at(lane, k);
        dx[i] = select(out[i] * (grad[i] - total), grad[i] - exp(out[i]) * total, params.log == 1u);
    }
}
