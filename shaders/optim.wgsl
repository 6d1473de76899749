// SGD's updates (AdamW's are in adamw.wgsl), one invocation per parameter element, in the
// order of torch's single-tensor implementations (engine/src/optim/cpu.rs has the same arithmetic). Buffers
// are never updated in place (see engine/src/gpu): each entry writes the new parameter and
// state into fresh buffers, which then replace the old ones.

const WG: u32 = 256u;

struct Params {
    n: u32,
    neg_lr: f32,
    weight_decay: f32,
    momentum: f32,
    nesterov: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
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
