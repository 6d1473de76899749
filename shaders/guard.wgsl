// The step guard (engine/src/optim/guard.rs): the global gradient norm, its clip factor and
// the first non-finite step, computed on the device so that a training step reads nothing
// back. State slots: 0 first bad step (0: none), 1 what (1 loss, 2 gradient norm), 2 its
// value, 3 the factor AdamW scales this step's gradients by (clip factor / loss scale), 4
// this step's gradient norm (unscaled); loss scaling (torch's _amp_update_scale_): 5 the loss
// scale of the next step, 6 good steps since it changed, 7 steps skipped so far, 8 whether
// this step is skipped. Without loss scaling the scale stays 1 (growth_interval 0).

const WG: u32 = 256u;
const STATE_LEN: u32 = 12u;
// guard.rs's LOSS_SCALE_FLOOR.
const SCALE_FLOOR: f32 = 1.0;

struct Params {
    // sum_squares: the slot of partials that x0 fills (x1 the next, ...)
    slot: u32,
    // check: the step (from 1), how many partials, whether to clip, to what
    step: u32,
    parts: u32,
    clip: u32,
    max_norm: f32,
    // check: good steps in a row that double the loss scale (0: no loss scaling)
    growth_interval: u32,
    // sum_squares: the lengths of x0, x1, ...
    n: array<vec4<u32>, 8>,
}

@group(0) @binding(0) var<uniform> params: Params;

// ---- sum_squares: workgroup w sums the squares of x_w / loss scale into partials[slot + w],
// for as many gradients per launch as the adapter's storage bindings allow (up to 31, two
// bindings left for the state and partials): the loader (`shaders::guard` in
// engine/src/gpu/shaders.rs) writes the block between `//>> slot` and `//<< slot` out once per
// gradient and the `//>> case` line once per gradient, {k} replaced by its number and {x} /
// {scale} / {partials} by binding numbers. Unscaling before squaring keeps a large scale from
// overflowing the sum of finite gradients (torch looks for non-finite elements, not norms).
// partials is the guard's own scratch buffer, filled by consecutive launches before `check`
// reads it.

//>> slot
@group(0) @binding({x}) var<storage, read> x{k}: array<f32>;
//<< slot
@group(0) @binding({scale}) var<storage, read> scale_state: array<f32>;
@group(0) @binding({partials}) var<storage, read_write> partials: array<f32>;

var<workgroup> acc: array<f32, WG>;

fn element(which: u32, i: u32) -> f32 {
    switch which {
        //>> case case {k}u: { return x{k}[i]; }
        default: { return 0.0; }
    }
}

@compute @workgroup_size(WG)
fn sum_squares(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let which = wid.x;
    let n = params.n[which / 4u][which % 4u];
    let inv_scale = 1.0 / scale_state[5];
    var s = 0.0;
    for (var i = t; i < n; i += WG) {
        let v = element(which, i) * inv_scale;
        s += v * v;
    }
    acc[t] = s;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w /= 2u) {
        if t < w {
            acc[t] += acc[t + w];
        }
        workgroupBarrier();
    }
    if t == 0u {
        partials[params.slot + which] = acc[0];
    }
}

// ---- check: (state, loss, partials) -> state'

@group(0) @binding(1) var<storage, read> state: array<f32>;
@group(0) @binding(2) var<storage, read> loss: array<f32>;
@group(0) @binding(3) var<storage, read> parts: array<f32>;
@group(0) @binding(4) var<storage, read_write> state_new: array<f32>;

// By the bits, which no compiler may fold away (x - x == 0 can be, under fast math).
fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(1)
fn check() {
    var total = 0.0;
    for (var i = 0u; i < params.parts; i++) {
        total += parts[i];
    }
    let norm = sqrt(total);
    for (var k = 0u; k < STATE_LEN; k++) {
        state_new[k] = state[k];
    }
    state_new[4] = norm;
    var clip = 1.0;
    if params.clip == 1u {
        // torch's clip_grad_norm_: max_norm / (norm + 1e-6), applied when below 1.
        let c = params.max_norm / (norm + 1e-6);
        if c < 1.0 {
            clip = c;
        }
    }
    // Unscaling and clipping in one factor: AdamW reads the scaled gradients.
    state_new[3] = clip * (1.0 / state[5]);
    state_new[8] = 0.0;
    if state[0] == 0.0 {
        let l = loss[0];
        if !is_finite(l) {
            state_new[0] = f32(params.step);
            state_new[1] = 1.0;
            state_new[2] = l;
        } else if !is_finite(norm) {
            if state[5] <= SCALE_FLOOR {
                state_new[0] = f32(params.step);
                state_new[1] = 2.0;
                state_new[2] = norm;
            } else {
                state_new[8] = 1.0;
                state_new[7] = state[7] + 1.0;
                state_new[5] = state[5] * 0.5;
                state_new[6] = 0.0;
            }
        } else if params.growth_interval > 0u {
            let good = state[6] + 1.0;
            state_new[6] = good;
            if good >= f32(params.growth_interval) {
                let grown = state[5] * 2.0;
                if is_finite(grown) {
                    state_new[5] = grown;
                }
                state_new[6] = 0.0;
            }
        }
    }
}
