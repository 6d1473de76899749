// Batch normalisation of x viewed as [n, c, s] (s = H·W, or 1 for [N, C] inputs): per-channel
// sums run one workgroup per channel; elementwise passes one invocation per element. See
// engine/src/ops/batch_norm/cpu.rs for the formulas.

const WG: u32 = 256u;

struct Params {
    n: u32,
    c: u32,
    s: u32,
    // 1: mean and rstd are batch statistics (they depend on x).
    training: u32,
    // `running` only: the running statistics' momentum, eps, and n·s / (n·s − 1).
    momentum: f32,
    eps: f32,
    unbiased: f32,
}

@group(0) @binding(0) var<uniform> params: Params;

// workgroup_sum and workgroup_max: workgroup_reduce.wgsl, put in front by the loader.

// Flat index of the e-th of channel ch's n·s values.
fn channel_at(ch: u32, e: u32) -> u32 {
    return ((e / params.s) * params.c + ch) * params.s + e % params.s;
}

fn channel_of(i: u32) -> u32 {
    return (i / params.s) % params.c;
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> var_out: array<f32>;

// Mean and biased variance per channel, in two passes (no E[x²] − E[x]² cancellation).
@compute @workgroup_size(WG)
fn stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let ch = wid.x + wid.y * nwg.x;
    if ch >= params.c {
        return;
    }
    let count = params.n * params.s;
    var s = 0.0;
    for (var e = lid; e < count; e += WG) {
        s += x[channel_at(ch, e)];
    }
    let mean = workgroup_sum(lid, s) / f32(count);
    var dev = 0.0;
    for (var e = lid; e < count; e += WG) {
        let d = x[channel_at(ch, e)] - mean;
        dev += d * d;
    }
    let variance = workgroup_sum(lid, dev) / f32(count);
    if lid == 0u {
        mean_out[ch] = mean;
        var_out[ch] = variance;
    }
}

// What training does with a channel's batch statistics besides normalising, in one pass
// instead of seven elementwise ones: rstd = 1 / sqrt(var + eps), and the running statistics
// moved towards the batch's (the variance unbiased, as PyTorch does).
@group(0) @binding(1) var<storage, read> batch_mean: array<f32>;
@group(0) @binding(2) var<storage, read> batch_var: array<f32>;
@group(0) @binding(3) var<storage, read> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read> running_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> running_mean_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> running_var_out: array<f32>;

@compute @workgroup_size(WG)
fn running(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = gid.x + gid.y * nwg.x * WG;
    if ch >= params.c {
        return;
    }
    let m = params.momentum;
    rstd_out[ch] = 1.0 / sqrt(batch_var[ch] + params.eps);
    running_mean_out[ch] = (1.0 - m) * running_mean[ch] + m * batch_mean[ch];
    running_var_out[ch] = (1.0 - m) * running_var[ch] + m * (batch_var[ch] * params.unbiased);
}

@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n * params.c * params.s {
        return;
    }
    let ch = channel_of(i);
    y[i] = (x[i] - mean[ch]) * rstd[ch] * weight[ch] + bias[ch];
}

@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> gmean: array<f32>;
@group(0) @binding(4) var<storage, read> grstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> sums_out: array<f32>;

// sums = [dweight; dbias]: dbias = Σ g and dweight = Σ g (x − mean) · rstd per channel.
@compute @workgroup_size(WG)
fn grad_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let ch = wid.x + wid.y * nwg.x;
    if ch >= params.c {
        return;
    }
    let count = params.n * params.s;
    var sum_g = 0.0;
    var sum_g_xc = 0.0;
    for (var e = lid; e < count; e += WG) {
        let i = channel_at(ch, e);
        sum_g += grad[i];
        sum_g_xc += grad[i] * (x[i] - gmean[ch]);
    }
    sum_g = workgroup_sum(lid, sum_g);
    sum_g_xc = workgroup_sum(lid, sum_g_xc);
    if lid == 0u {
        sums_out[ch] = sum_g_xc * grstd[ch];
        sums_out[params.c + ch] = sum_g;
    }
}

@group(0) @binding(5) var<storage, read> bn_weight: array<f32>;
@group(0) @binding(6) var<storage, read> sums: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;

// dx = a x + b g + c per channel: eval mode b = weight · rstd (a = c = 0); training mode
// also carries the statistics' dependence on x (see backward_t in cpu.rs).
@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.n * params.c * params.s {
        return;
    }
    let ch = channel_of(i);
    let b = bn_weight[ch] * grstd[ch];
    var a = 0.0;
    var c = 0.0;
    if params.training == 1u {
        let inv_count = 1.0 / f32(params.n * params.s);
        let slope = b * grstd[ch] * sums[ch] * inv_count;
        a = -slope;
        c = slope * gmean[ch] - b * sums[params.c + ch] * inv_count;
    }
    dx[i] = a * x[i] + b * grad[i] + c;
}
