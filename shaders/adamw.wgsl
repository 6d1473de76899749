// AdamW for several parameters in one dispatch (torch's single-tensor arithmetic, as
// engine/src/optim/cpu.rs). WGSL has no array of buffers every adapter supports, so the loader
// (`shaders::adamw` in engine/src/gpu/shaders.rs) writes the block between `//>> slot` and
// `//<< slot` and the `//>> case` line out once per parameter slot, replacing {k} by the slot
// and {p} .. {vn} by its binding numbers. The dispatch covers
// the slots' elements one after another: slot k owns [ends[k-1], ends[k]).
// Buffers are never written in place: each slot writes the new parameter and moments into
// fresh buffers, which then replace the old ones.

const WG: u32 = 256u;

struct Params {
    total: u32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    beta1: f32,
    // Per slot (up to 8; the scalars are prepared on the host in f64, as torch does in
    // Python floats, per parameter: groups differ in lr and decay, parameters in step).
    ends: array<vec4<u32>, 2>,
    decay: array<vec4<f32>, 2>,
    neg_step_size: array<vec4<f32>, 2>,
    bias_correction2_sqrt: array<vec4<f32>, 2>,
    // For bias correction after steps skipped by loss scaling: each slot's lr and update
    // count including the skipped steps.
    lr: array<vec4<f32>, 2>,
    step: array<vec4<f32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
// The step guard's state (shaders/guard.wgsl): [0] first bad step, [3] the gradients' factor
// (clip / loss scale), [7] steps skipped so far, [8] whether this step is skipped.
@group(0) @binding(1) var<storage, read> guard: array<f32>;

// The new (p, m, v) of one element of slot k.
fn adamw(p: f32, g_raw: f32, m: f32, v: f32, k: u32) -> vec3<f32> {
    // 1 / loss scale times --clip-grad's factor, as torch multiplies the gradients by them.
    let g = g_raw * guard[3];
    // Skipped steps never happened for bias correction. The host's f64 scalars hold for no
    // skipped steps; after one, recomputed here in f32 (as torch's capturable AdamW does).
    var neg_step_size = params.neg_step_size[k / 4u][k % 4u];
    var bias_correction2_sqrt = params.bias_correction2_sqrt[k / 4u][k % 4u];
    if guard[7] != 0.0 {
        let t = max(params.step[k / 4u][k % 4u] - guard[7], 1.0);
        neg_step_size = -params.lr[k / 4u][k % 4u] / (1.0 - pow(params.beta1, t));
        bias_correction2_sqrt = sqrt(1.0 - pow(params.beta2, t));
    }
    // Decoupled weight decay shrinks the weights before, and apart from, Adam.
    var p_new = p * params.decay[k / 4u][k % 4u];
    let m_new = m + params.one_minus_beta1 * (g - m);
    let v_new = v * params.beta2 + params.one_minus_beta2 * g * g;
    let denom = sqrt(v_new) / bias_correction2_sqrt + params.eps;
    p_new += neg_step_size * m_new / denom;
    return vec3<f32>(p_new, m_new, v_new);
}

//>> slot
@group(0) @binding({p}) var<storage, read> p{k}: array<f32>;
@group(0) @binding({g}) var<storage, read> g{k}: array<f32>;
@group(0) @binding({m}) var<storage, read> m{k}: array<f32>;
@group(0) @binding({v}) var<storage, read> v{k}: array<f32>;
@group(0) @binding({pn}) var<storage, read_write> p_new{k}: array<f32>;
@group(0) @binding({mn}) var<storage, read_write> m_new{k}: array<f32>;
@group(0) @binding({vn}) var<storage, read_write> v_new{k}: array<f32>;

fn update{k}(i: u32) {
    // A step skipped by loss scaling changes nothing (torch's scaler.step skips
    // optimizer.step), nor does anything after a bad step until the host notices.
    if guard[0] != 0.0 || guard[8] != 0.0 {
        p_new{k}[i] = p{k}[i];
        m_new{k}[i] = m{k}[i];
        v_new{k}[i] = v{k}[i];
        return;
    }
    let r = adamw(p{k}[i], g{k}[i], m{k}[i], v{k}[i], {k}u);
    p_new{k}[i] = r.x;
    m_new{k}[i] = r.y;
    v_new{k}[i] = r.z;
}
//<< slot

@compute @workgroup_size(WG)
fn adamw_slots(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.total {
        return;
    }
    // i < total = the last slot's end, so this stops at a slot.
    var k = 0u;
    var start = 0u;
    loop {
        let end = params.ends[k / 4u][k % 4u];
        if i < end {
            break;
        }
        start = end;
        k += 1u;
    }
    switch k {
        //>> case case {k}u: { update{k}(i - start); }
        default: {}
    }
}
