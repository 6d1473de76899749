// Moving values without arithmetic (permute, narrow, concat, index_select, gather) and the
// adjoints of the index moves (index_add, scatter_add). A tensor is viewed as
// [outer, n, inner] around the axis an op works on.
//
// Entry points use different bindings: each group below declares its own, numbered from 1
// after the shared parameter block.

const WG: u32 = 256u;

struct Params {
    outer: u32,
    inner: u32,
    // Size of the axis in the source.
    n: u32,
    // Entries along the axis in the result (narrow: its length; index ops: index count).
    k: u32,
    // copy_block: where the block starts along the axis in the source / the destination,
    // and the destination's size along it.
    src_start: u32,
    dst_start: u32,
    dst_n: u32,
    // permute: output dimensions and the matching input strides.
    rank: u32,
    dims: array<vec4<u32>, 2>,
    strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// ---- permute and copy_block: src -> dst

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// dst[t] = src[offset of t's multi-index through the permuted strides]; `outer` is the
// element count.
@compute @workgroup_size(WG)
fn permute(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.outer {
        return;
    }
    var rest = t;
    var offset = 0u;
    for (var d = i32(params.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = params.dims[k / 4u][k % 4u];
        offset += (rest % size) * params.strides[k / 4u][k % 4u];
        rest = rest / size;
    }
    dst[t] = src[offset];
}

// dst[o, dst_start + j, i] = src[o, src_start + j, i] for j < k: narrow reads a block out,
// concat writes each part's block in.
@compute @workgroup_size(WG)
fn copy_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.outer * params.k * params.inner {
        return;
    }
    let i = t % params.inner;
    let j = (t / params.inner) % params.k;
    let o = t / (params.inner * params.k);
    dst[(o * params.dst_n + params.dst_start + j) * params.inner + i] =
        src[(o * params.n + params.src_start + j) * params.inner + i];
}

// The adjoint of narrow: dst[o, j, i] = src[o, j - dst_start, i] where dst_start <= j <
// dst_start + k, else 0, for a dst with dst_n entries along the axis. Writing the zeros here
// saves a zero-filled tensor per side and a concat.
@compute @workgroup_size(WG)
fn pad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.outer * params.dst_n * params.inner {
        return;
    }
    let i = t % params.inner;
    let j = (t / params.inner) % params.dst_n;
    let o = t / (params.inner * params.dst_n);
    var v = 0.0;
    if j >= params.dst_start && j < params.dst_start + params.k {
        v = src[(o * params.k + j - params.dst_start) * params.inner + i];
    }
    dst[t] = v;
}

// ---- index_select, gather and scatter_add: (values, indices) -> result

@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> result: array<f32>;

// result[o, j, i] = src[o, indices[j], i]
@compute @workgroup_size(WG)
fn index_select(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.outer * params.k * params.inner {
        return;
    }
    let i = t % params.inner;
    let j = (t / params.inner) % params.k;
    let o = t / (params.inner * params.k);
    result[t] = src[(o * params.n + indices[j]) * params.inner + i];
}

// result[o, j, i] = src[o, indices[o, j, i], i]
@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.outer * params.k * params.inner {
        return;
    }
    let i = t % params.inner;
    let o = t / (params.inner * params.k);
    result[t] = src[(o * params.n + indices[t]) * params.inner + i];
}

// The adjoint of gather: result[o, r, i] = sum over j with indices[o, j, i] == r of
// src[o, j, i]. One invocation per result element scans its k candidates, so no two
// invocations write the same element (WGSL has no float atomics); k is small in practice
// (the labels of a cross-entropy are k = 1).
@compute @workgroup_size(WG)
fn scatter_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.outer * params.n * params.inner {
        return;
    }
    let i = t % params.inner;
    let r = (t / params.inner) % params.n;
    let o = t / (params.inner * params.n);
    var acc = 0.0;
    for (var j = 0u; j < params.k; j++) {
        let at = (o * params.k + j) * params.inner + i;
        if indices[at] == r {
            acc += src[at];
        }
    }
    result[t] = acc;
}

// ---- index_add: the adjoint of index_select, (gradient, CSR lists) -> result

@group(0) @binding(2) var<storage, read> row_starts: array<u32>;
@group(0) @binding(3) var<storage, read> row_sources: array<u32>;
@group(0) @binding(4) var<storage, read_write> summed: array<f32>;

// summed[o, r, i] = sum over j with indices[j] == r of src[o, j, i]. The host inverts the
// index list: the j of row r are row_sources[row_starts[r] .. row_starts[r + 1]].
@compute @workgroup_size(WG)
fn index_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.outer * params.n * params.inner {
        return;
    }
    let i = t % params.inner;
    let r = (t / params.inner) % params.n;
    let o = t / (params.inner * params.n);
    var acc = 0.0;
    for (var p = row_starts[r]; p < row_starts[r + 1u]; p++) {
        acc += src[(o * params.k + row_sources[p]) * params.inner + i];
    }
    summed[t] = acc;
}
