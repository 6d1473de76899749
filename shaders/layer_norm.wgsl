// Layer normalisation over rows of d values (the last dimension): one workgroup per row for
// the forward pass and the input gradient, one invocation per column for the weight and bias
// gradients. See engine/src/ops/layer_norm/cpu.rs for the formulas.

const WG: u32 = 256u;

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    // Whether a weight / bias is bound (otherwise x stands in for it, never read).
    has_weight: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// workgroup_sum and workgroup_max: workgroup_reduce.wgsl, put in front by the loader.

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;

@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_of(wid, nwg);
    if row >= params.rows {
        return;
    }
    let base = row * params.d;
    let inv_d = 1.0 / f32(params.d);
    var s = 0.0;
    for (var j = lid; j < params.d; j += WG) {
        s += x[base + j];
    }
    let mu = workgroup_sum(lid, s) * inv_d;
    // Two passes (mean, then squared deviations) avoid the cancellation of E[x²] − E[x]².
    var dev = 0.0;
    for (var j = lid; j < params.d; j += WG) {
        let c = x[base + j] - mu;
        dev += c * c;
    }
    let rs = 1.0 / sqrt(workgroup_sum(lid, dev) * inv_d + params.eps);
    for (var j = lid; j < params.d; j += WG) {
        var v = (x[base + j] - mu) * rs;
        if params.has_weight == 1u {
            v *= weight[j];
        }
        if params.has_bias == 1u {
            v += bias[j];
        }
        y[base + j] = v;
    }
    if lid == 0u {
        mean_out[row] = mu;
        rstd_out[row] = rs;
    }
}

@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bweight: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// With x̂ = (x − mean)·rstd and ĝ = g·weight: dx = rstd (ĝ − mean(ĝ) − x̂ mean(ĝ x̂)).
@compute @workgroup_size(WG)
fn backward_input(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_of(wid, nwg);
    if row >= params.rows {
        return;
    }
    let base = row * params.d;
    let mu = mean[row];
    let rs = rstd[row];
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var j = lid; j < params.d; j += WG) {
        var gh = grad[base + j];
        if params.has_weight == 1u {
            gh *= bweight[j];
        }
        sum_g += gh;
        sum_gx += gh * (bx[base + j] - mu) * rs;
    }
    let inv_d = 1.0 / f32(params.d);
    let mean_g = workgroup_sum(lid, sum_g) * inv_d;
    let mean_gx = workgroup_sum(lid, sum_gx) * inv_d;
    for (var j = lid; j < params.d; j += WG) {
        var gh = grad[base + j];
        if params.has_weight == 1u {
            gh *= bweight[j];
        }
        dx[base + j] = rs * (gh - mean_g - (bx[base + j] - mu) * rs * mean_gx);
    }
}

@group(0) @binding(1) var<storage, read> px: array<f32>;
@group(0) @binding(2) var<storage, read> pgrad: array<f32>;
@group(0) @binding(3) var<storage, read> pmean: array<f32>;
@group(0) @binding(4) var<storage, read> prstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbias: array<f32>;

// dweight[j] = Σ_rows g x̂, dbias[j] = Σ_rows g: one invocation per column.
@compute @workgroup_size(WG)
fn backward_params(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = gid.x + gid.y * nwg.x * WG;
    if j >= params.d {
        return;
    }
    var dw = 0.0;
    var db = 0.0;
    for (var r = 0u; r < params.rows; r++) {
        let g = pgrad[r * params.d + j];
        dw += g * (px[r * params.d + j] - pmean[r]) * prstd[r];
        db += g;
    }
    dweight[j] = dw;
    dbias[j] = db;
}
