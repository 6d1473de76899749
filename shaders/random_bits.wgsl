// The dropout mask's bits, a bit-for-bit copy of `random_bits` in engine/src/ops/dropout/mod.rs,
// shared by dropout.wgsl and residual.wgsl.

// PCG-RXS-M-XS as a hash (Jarzynski and Olano, JCGT 2020).
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn random_bits(key: u32, index: u32) -> u32 {
    return pcg_hash(pcg_hash(index ^ key) + key);
}
