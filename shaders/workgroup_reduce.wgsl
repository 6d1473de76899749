// The reduction shared by the kernels that give one workgroup to a row (layer_norm, softmax,
// cross_entropy, l2_normalize, batch_norm): the shader loader (engine/src/gpu/shaders.rs,
// `shader!(..., reduce)`) puts this file in front of theirs. The including file defines
// `const WG: u32`, its workgroup size and a power of two (module-scope declarations may come
// in any order in WGSL). Every invocation of the workgroup must call these together (they
// hold barriers); each gets the result. The tree order is fixed: results do not depend on
// the adapter.

var<workgroup> scratch: array<f32, WG>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    scratch[lid] = v;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if lid < width {
            scratch[lid] += scratch[lid + width];
        }
        workgroupBarrier();
    }
    let total = scratch[0];
    // No invocation may overwrite scratch (the next reduction) before all have read it.
    workgroupBarrier();
    return total;
}

fn workgroup_max(lid: u32, v: f32) -> f32 {
    scratch[lid] = v;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if lid < width {
            scratch[lid] = max(scratch[lid], scratch[lid + width]);
        }
        workgroupBarrier();
    }
    let total = scratch[0];
    workgroupBarrier();
    return total;
}
