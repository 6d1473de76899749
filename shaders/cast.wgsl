// Element type conversions between f32 and f16 storage.
//
// f16 storage holds two values to a 32-bit word (element 2i in the low half, 2i + 1 in the
// high half; an odd length pads the last high half with zero). Each invocation converts one
// word, so no two invocations write the same word, and the core pack2x16float /
// unpack2x16float do the conversion. f32 values beyond f16's range (|x| > 65504) have no
// defined f16 value in WGSL.

const WG: u32 = 256u;

struct Params {
    // Elements (not words).
    len: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Each entry point uses one view of bindings 1 and 2; no entry point uses two views of one.
@group(0) @binding(1) var<storage, read> wide_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> half_out: array<u32>;
@group(0) @binding(1) var<storage, read> half_in: array<u32>;
@group(0) @binding(2) var<storage, read_write> wide_out: array<f32>;

@compute @workgroup_size(WG)
fn f32_to_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * WG;
    let i = 2u * w;
    if i >= params.len {
        return;
    }
    var high = 0.0;
    if i + 1u < params.len {
        high = wide_in[i + 1u];
    }
    half_out[w] = pack2x16float(vec2<f32>(wide_in[i], high));
}

@compute @workgroup_size(WG)
fn f16_to_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * WG;
    let i = 2u * w;
    if i >= params.len {
        return;
    }
    let v = unpack2x16float(half_in[w]);
    wide_out[i] = v.x;
    if i + 1u < params.len {
        wide_out[i + 1u] = v.y;
    }
}
