// Dropout and drop path: out = x · scale where the mask keeps the element's group, else 0.
// The mask bit of group j is random_bits(key, j) >= threshold (random_bits.wgsl, a bit-for-bit
// copy of the CPU's), so both devices drop the same elements for the same seed.

const WG: u32 = 256u;

struct Params {
    n: u32,
    key: u32,
    threshold: u32,
    // Consecutive elements sharing one decision: 1 for dropout, a sample's size for drop path.
    group: u32,
    scale: f32,
    // Where the groups sit in the step's batch (SamplePlace in engine/src/ops/dropout):
    // groups 0..split are the batch's first_group.., the rest its second_group..
    first_group: u32,
    split: u32,
    second_group: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn masked(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n {
        return;
    }
    let g = i / params.group;
    let in_batch = select(params.second_group + (g - params.split), params.first_group + g, g < params.split);
    let keep = random_bits(params.key, in_batch) >= params.threshold;
    // A product, not a select: a dropped NaN stays NaN (0 · NaN), as on the CPU and in PyTorch.
    out[i] = x[i] * select(0.0, params.scale, keep);
}
