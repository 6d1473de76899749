// Arithmetic of two tensors with NumPy broadcasting: out[i] = a[ia] op b[ib], where ia and
// ib come from i's multi-index and each operand's strides (0 along broadcast dimensions).
// OP codes match `BinaryOp` in engine/src/ops/binary/gpu.rs.

override OP: u32 = 0u;
const WG: u32 = 256u;

struct Params {
    n: u32,
    rank: u32,
    // Output dimensions and each operand's strides, up to 8 (4 per vec4).
    dims: array<vec4<u32>, 2>,
    stride_a: array<vec4<u32>, 2>,
    stride_b: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn apply(x: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        default: { return x / y; }
    }
}

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Both operands have the output's shape: no index arithmetic.
@compute @workgroup_size(WG)
fn same_shape(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n {
        return;
    }
    out[i] = apply(a[i], b[i]);
}

@compute @workgroup_size(WG)
fn broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n {
        return;
    }
    var rest = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(params.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = params.dims[k / 4u][k % 4u];
        let idx = rest % size;
        rest = rest / size;
        ia += idx * params.stride_a[k / 4u][k % 4u];
        ib += idx * params.stride_b[k / 4u][k % 4u];
    }
    out[i] = apply(a[ia], b[ib]);
}
