// Cross-entropy of [M, C] logits with label smoothing e (see engine/src/ops/cross_entropy):
// per row, log p = log_softmax(logits), loss = −((1 − e) log p[label] + (e / C) Σ log p), and
// the probabilities p are kept for the backward pass, (p − target) · g / M.

const WG: u32 = 256u;

struct Params {
    rows: u32,
    classes: u32,
    // 1 − e and e / C.
    on_label: f32,
    uniform: f32,
}

@group(0) @binding(0) var<uniform> params: Params;

// workgroup_sum and workgroup_max: workgroup_reduce.wgsl, put in front by the loader.

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> probs: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;

// One workgroup per row.
@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if row >= params.rows {
        return;
    }
    let base = row * params.classes;
    var m = -3.40282347e+38;
    for (var j = lid; j < params.classes; j += WG) {
        m = max(m, logits[base + j]);
    }
    m = workgroup_max(lid, m);
    var s = 0.0;
    for (var j = lid; j < params.classes; j += WG) {
        s += exp(logits[base + j] - m);
    }
    let log_sum = log(workgroup_sum(lid, s));
    var sum_log_p = 0.0;
    for (var j = lid; j < params.classes; j += WG) {
        let log_p = (logits[base + j] - m) - log_sum;
        sum_log_p += log_p;
        probs[base + j] = exp(log_p);
    }
    sum_log_p = workgroup_sum(lid, sum_log_p);
    if lid == 0u {
        let label_log_p = (logits[base + labels[row]] - m) - log_sum;
        row_loss[row] = -(params.on_label * label_log_p + params.uniform * sum_log_p);
    }
}

@group(0) @binding(1) var<storage, read> bprobs: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> blabels: array<u32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

// One invocation per logit: (p − e/C − (1 − e)[j = label]) · g / M.
@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= params.rows * params.classes {
        return;
    }
    let scale = grad[0] / f32(params.rows);
    let on_label = select(0.0, params.on_label, (i % params.classes) == blabels[i / params.classes]);
    dlogits[i] = (bprobs[i] - params.uniform - on_label) * scale;
}
