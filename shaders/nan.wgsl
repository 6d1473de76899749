// Prepended to the shaders that must let NaN through (engine/src/gpu/shaders.rs). The test is
// on the bits: WGSL lets compilers assume floats are never NaN, and `v != v` is folded to
// false (lavapipe does), as is max's and clamp's NaN operand dropped (IEEE maxNum).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_nan4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4(0x7fffffffu)) > vec4(0x7f800000u);
}

