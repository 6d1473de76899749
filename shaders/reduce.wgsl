// Reductions over one axis and their companions. A tensor is viewed as [outer, n, inner]
// around the reduced axis; the result is [outer, inner].
// OP: 0 = sum, 1 = max (NaN wins, as on the CPU).

override OP: u32 = 0u;
const WG: u32 = 256u;

struct Params {
    outer: u32,
    n: u32,
    inner: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn combine(acc: f32, v: f32) -> f32 {
    if OP == 0u {
        return acc + v;
    }
    return select(acc, v, v > acc || is_nan(v));
}

fn identity() -> f32 {
    if OP == 0u {
        return 0.0;
    }
    return bitcast<f32>(0xff800000u); // -inf
}

// inner > 1: one invocation per output walks down its column; neighbouring invocations
// read neighbouring addresses.
@compute @workgroup_size(WG)
fn reduce_axis(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if t >= params.outer * params.inner {
        return;
    }
    let o = t / params.inner;
    let i = t % params.inner;
    var acc = identity();
    for (var k = 0u; k < params.n; k++) {
        acc = combine(acc, x[(o * params.n + k) * params.inner + i]);
    }
    out[t] = acc;
}

var<workgroup> partial: array<f32, WG>;

// inner == 1: one workgroup per contiguous row; invocations stride over the row, then a
// tree reduction in workgroup memory.
@compute @workgroup_size(WG)
fn reduce_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if row >= params.outer {
        return;
    }
    var acc = identity();
    for (var k = lid; k < params.n; k += WG) {
        acc = combine(acc, x[row * params.n + k]);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if lid < width {
            partial[lid] = combine(partial[lid], partial[lid + width]);
        }
        workgroupBarrier();
    }
    if lid == 0u {
        out[row] = partial[0];
    }
}

// ---- max backward: the gradient of each maximum goes to the first element equal to it.

@group(0) @binding(0) var<uniform> mb_params: Params;
@group(0) @binding(1) var<storage, read> mb_x: array<f32>;
@group(0) @binding(2) var<storage, read> mb_max: array<f32>;
@group(0) @binding(3) var<storage, read> mb_grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> mb_dx: array<f32>;

// One invocation per output writes its whole column of dx, zeros included.
@compute @workgroup_size(WG)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if t >= mb_params.outer * mb_params.inner {
        return;
    }
    let o = t / mb_params.inner;
    let i = t % mb_params.inner;
    let target_value = mb_max[t];
    var found = false;
    for (var k = 0u; k < mb_params.n; k++) {
        let at = (o * mb_params.n + k) * mb_params.inner + i;
        let v = mb_x[at];
        let hit = !found && (v == target_value || (is_nan(v) && is_nan(target_value)));
        mb_dx[at] = select(0.0, mb_grad[t], hit);
        found = found || hit;
    }
}

// ---- sum_to and broadcast_to, through strides over up to 8 (collapsed) dimensions.

struct StridedParams {
    n_out: u32,
    rank: u32,
    // The number of input elements summed into each output (sum_to).
    n_reduced: u32,
    // Sizes of the dimensions that index the output (1 where sum_to reduces).
    out_dims: array<vec4<u32>, 2>,
    // Sizes of the dimensions sum_to reduces (1 elsewhere).
    reduced_dims: array<vec4<u32>, 2>,
    // Input strides.
    strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> sp: StridedParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn dim(v: array<vec4<u32>, 2>, k: u32) -> u32 {
    return v[k / 4u][k % 4u];
}

// Input offset of digit string `index` written in the mixed radix `sizes`.
fn offset_of(index: u32, sizes: array<vec4<u32>, 2>) -> u32 {
    var rest = index;
    var offset = 0u;
    for (var d = i32(sp.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = dim(sizes, k);
        offset += (rest % size) * dim(sp.strides, k);
        rest = rest / size;
    }
    return offset;
}

// One invocation per output sums every input element that broadcasts onto it.
@compute @workgroup_size(WG)
fn sum_to(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if t >= sp.n_out {
        return;
    }
    let base = offset_of(t, sp.out_dims);
    var acc = 0.0;
    for (var r = 0u; r < sp.n_reduced; r++) {
        acc += src[base + offset_of(r, sp.reduced_dims)];
    }
    dst[t] = acc;
}

// One invocation per output reads its source through broadcast strides (0 on repeated dims).
@compute @workgroup_size(WG)
fn broadcast_to(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if t >= sp.n_out {
        return;
    }
    dst[t] = src[offset_of(t, sp.out_dims)];
}
