// Optimiser updates, one invocation per parameter element, in the order of torch's
// single-tensor implementations (engine/src/optim/cpu.rs has the same arithmetic). Buffers
// are never updated in place (see engine/src/gpu): each entry writes the new parameter and
// state into fresh buffers, which then replace the old ones.

const WG: u32 = 256u;

struct Params {
    n: u32,
    // SGD
    neg_lr: f32,
    weight_decay: f32,
    momentum: f32,
    nesterov: u32,
    // AdamW (scalars prepared on the host in f64, as torch does in Python floats)
    decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    neg_step_size: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    // For bias correction after steps skipped by loss scaling: the lr, beta1 and this
    // parameter's update count including the skipped steps.
    lr: f32,
    beta1: f32,
    step: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// ---- AdamW: (p, g, m, v, guard) -> (p', m', v')

@group(0) @binding(3) var<storage, read> m: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
// The step guard's state (shaders/guard.wgsl): [0] first bad step, [3] the gradients' factor
// (clip / loss scale), [7] steps skipped so far, [8] whether this step is skipped.
@group(0) @binding(5) var<storage, read> guard: array<f32>;
@group(0) @binding(6) var<storage, read_write> p_new: array<f32>;
@group(0) @binding(7) var<storage, read_write> m_new: array<f32>;
@group(0) @binding(8) var<storage, read_write> v_new: array<f32>;

@compute @workgroup_size(WG)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n {
        return;
    }
    // A step skipped by loss scaling changes nothing (torch's scaler.step skips
    // optimizer.step), nor does anything after a bad step until the host notices.
    if guard[0] != 0.0 || guard[8] != 0.0 {
        p_new[i] = p[i];
        m_new[i] = m[i];
        v_new[i] = v[i];
        return;
    }
    // 1 / loss scale times --clip-grad's factor, as torch multiplies the gradients by them.
    let gi = g[i] * guard[3];
    // Skipped steps never happened for bias correction. The host's f64 scalars hold for no
    // skipped steps; after one, recomputed here in f32 (as torch's capturable AdamW does).
    var neg_step_size = params.neg_step_size;
    var bias_correction2_sqrt = params.bias_correction2_sqrt;
    if guard[7] != 0.0 {
        let t = max(params.step - guard[7], 1.0);
        neg_step_size = -params.lr / (1.0 - pow(params.beta1, t));
        bias_correction2_sqrt = sqrt(1.0 - pow(params.beta2, t));
    }
    // Decoupled weight decay shrinks the weights before, and apart from, Adam.
    var pi = p[i] * params.decay;
    let mi = m[i] + params.one_minus_beta1 * (gi - m[i]);
    let vi = v[i] * params.beta2 + params.one_minus_beta2 * gi * gi;
    let denom = sqrt(vi) / bias_correction2_sqrt + params.eps;
    pi += neg_step_size * mi / denom;
    p_new[i] = pi;
    m_new[i] = mi;
    v_new[i] = vi;
}

// ---- SGD without momentum: (p, g) -> p'

@group(0) @binding(3) var<storage, read_write> sgd_p_new: array<f32>;

// The descent direction before momentum: the gradient plus the coupled weight decay
// (skipped at 0, as torch does, so that 0 * inf cannot turn into NaN).
fn direction(pi: f32, gi: f32) -> f32 {
    if params.weight_decay != 0.0 {
        return gi + params.weight_decay * pi;
    }
    return gi;
}

@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n {
        return;
    }
    sgd_p_new[i] = p[i] + params.neg_lr * direction(p[i], g[i]);
}

// ---- SGD with momentum: (p, g, buffer) -> (p', buffer')

@group(0) @binding(3) var<storage, read> buffer: array<f32>;
@group(0) @binding(4) var<storage, read_write> momentum_p_new: array<f32>;
@group(0) @binding(5) var<storage, read_write> buffer_new: array<f32>;

@compute @workgroup_size(WG)
fn sgd_momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n {
        return;
    }
    var d = direction(p[i], g[i]);
    let b = buffer[i] * params.momentum + d;
    if params.nesterov == 1u {
        d = d + params.momentum * b;
    } else {
        d = b;
    }
    momentum_p_new[i] = p[i] + params.neg_lr * d;
    buffer_new[i] = b;
}
