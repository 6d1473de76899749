// LACLN, CLCE's contrastive loss, and its baselines SupCon and H-SCL on the GPU, launched by
// engine/src/loss/gpu.rs. The `LOSS` override picks one: 0 LACLN, 1 SupCon, 2 H-SCL. They
// share one file because they share everything but a few lines: the row statistics of
// S = z zᵀ / τ (log-sum-exps over an anchor's positives and negatives) and the closed-form
// dL/dS built from them.
//
// LACLN is METHOD.md's "LACLN, exactly",
//   ℓ_i = -log(m_i / (m_i + n_i)),  m_i = mean_{p∈P(i)} e^{s_ip},  n_i = Σ_{k∈N(i)} w_ik e^{s_ik},
// in the log-space form that engine/src/loss/lacln.rs derives (with its dL/dS):
//   ℓ_i = softplus(u_i),  u_i = log n_i - log m_i,
//   log m_i = LSE_{p∈P(i)} s_ip - log|P(i)|,
//   log n_i = log|N(i)| + LSE_{k∈N(i)} (1+β) s_ik - LSE_{k∈N(i)} β s_ik.
// SupCon and H-SCL follow engine/src/loss/supcon.rs and hscl.rs the same way.
//
// Every log-sum-exp (LSE) is accumulated shifted by its running maximum: at τ = 0.07 and
// β = 1, (1+β) s reaches 28.6, and e^{28.6} summed over a row would lose all precision in f32.

override LOSS: u32;
const WG: u32 = 256u;
// The running maximum of an empty LSE. A finite stand-in for -inf: merging two empty LSEs
// computes 0 · e^{NEG - NEG} = 0, where -inf - -inf would be NaN.
const NEG: f32 = -3.0e38;

struct Params {
    m: u32,
    inv_tau: f32,
    beta: f32,
    // 1/A for LACLN and SupCon (A anchors with a positive), 1/T for H-SCL (T positive
    // pairs); 0 when there are none, which zeroes the loss and every gradient.
    inv_count: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
// z zᵀ, [M, M]; s_ij = gram[i M + j] / τ.
@group(0) @binding(1) var<storage, read> gram: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;

// Four LSEs at once, one per lane: the running maximum and the sum of e^{v - maximum}.
struct Lse {
    hi: vec4<f32>,
    sum: vec4<f32>,
}

fn lse_empty() -> Lse {
    return Lse(vec4(NEG), vec4(0.0));
}

// Adds v to the lanes where `take` is set.
fn lse_add(acc: Lse, v: vec4<f32>, take: vec4<bool>) -> Lse {
    let hi = select(acc.hi, max(acc.hi, v), take);
    let term = select(vec4(0.0), exp(select(hi, v, take) - hi), take);
    return Lse(hi, acc.sum * exp(acc.hi - hi) + term);
}

fn lse_merge(a: Lse, b: Lse) -> Lse {
    let hi = max(a.hi, b.hi);
    return Lse(hi, a.sum * exp(a.hi - hi) + b.sum * exp(b.hi - hi));
}

// log Σ e^v per lane; NEG for an empty lane, whose value no caller uses.
fn lse_value(a: Lse) -> vec4<f32> {
    // A NaN sum (a NaN feature) must stay NaN, not become the empty lane's NEG.
    return select(vec4(NEG), a.hi + log(a.sum), a.sum > vec4(0.0) | is_nan4(a.sum));
}

var<workgroup> scratch_hi: array<vec4<f32>, WG>;
var<workgroup> scratch_sum: array<vec4<f32>, WG>;

// Merges every invocation's LSEs; every invocation gets the result.
fn reduce_lse(lid: u32, a: Lse) -> Lse {
    scratch_hi[lid] = a.hi;
    scratch_sum[lid] = a.sum;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if lid < width {
            let r = lse_merge(
                Lse(scratch_hi[lid], scratch_sum[lid]),
                Lse(scratch_hi[lid + width], scratch_sum[lid + width]),
            );
            scratch_hi[lid] = r.hi;
            scratch_sum[lid] = r.sum;
        }
        workgroupBarrier();
    }
    let total = Lse(scratch_hi[0], scratch_sum[0]);
    workgroupBarrier();
    return total;
}

fn reduce_sum(lid: u32, v: vec4<f32>) -> vec4<f32> {
    scratch_sum[lid] = v;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if lid < width {
            scratch_sum[lid] += scratch_sum[lid + width];
        }
        workgroupBarrier();
    }
    let total = scratch_sum[0];
    workgroupBarrier();
    return total;
}

// log(1 + x) accurate for tiny x (WGSL has no log1p): when ℓ_i = softplus(u) is ~e^u ≪ 1,
// log(1 + e^u) in f32 would round it to 0.
fn log1p(x: f32) -> f32 {
    let y = 1.0 + x;
    if y == 1.0 {
        return x;
    }
    return log(y) * (x / (y - 1.0));
}

// log(1 + e^u) without overflow.
fn softplus(u: f32) -> f32 {
    return max(u, 0.0) + log1p(exp(-abs(u)));
}

fn sigmoid(u: f32) -> f32 {
    if u >= 0.0 {
        return 1.0 / (1.0 + exp(-u));
    }
    let e = exp(u);
    return e / (1.0 + e);
}

// Per anchor: what the backward pass needs, and the anchor's term of the mean (already
// divided by A or T, so that one sum finishes the loss).
//   LACLN:  (σ(u_i) / A, LSE_P s, LSE_N β s, LSE_N (1+β) s)
//   SupCon: (1 / A, LSE_{a≠i} s, 1 / |P(i)|, 0)
//   H-SCL:  (Σ_{p∈P(i)} σ(log g_i - s_ip) / T, log g_i, LSE_N β s, LSE_N (1+β) s)
// and all zeros for an anchor with no gradient (no positive; no negative for LACLN and H-SCL).
@group(0) @binding(3) var<storage, read_write> stats_out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;

// One workgroup per anchor i, its invocations striding over row i of S.
@compute @workgroup_size(WG)
fn anchors(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = wid.x + wid.y * nwg.x;
    let m = params.m;
    if i >= m {
        return;
    }
    let beta = params.beta;
    let yi = labels[i];
    // Lanes: x over P(i) (LACLN) or over every a ≠ i (SupCon); y and z over N(i), of β s
    // and (1+β) s (LACLN, H-SCL).
    let negatives = LOSS != 1u;
    var acc = lse_empty();
    // (|P(i)|, |N(i)|, Σ_{p∈P(i)} s_ip, 0)
    var counts = vec4(0.0);
    for (var j = lid; j < m; j += WG) {
        if j == i {
            continue;
        }
        let s = gram[i * m + j] * params.inv_tau;
        let positive = labels[j] == yi;
        let take = vec4((positive && LOSS == 0u) || LOSS == 1u, !positive && negatives, !positive && negatives, false);
        acc = lse_add(acc, vec4(s, beta * s, (1.0 + beta) * s, 0.0), take);
        counts += select(vec4(0.0, 1.0, 0.0, 0.0), vec4(1.0, 0.0, s, 0.0), positive);
    }
    let lse = lse_value(reduce_lse(lid, acc));
    let n = reduce_sum(lid, counts);
    let n_pos = n.x;
    let n_neg = n.y;
    var stat = vec4(0.0);
    var loss = 0.0;
    if LOSS == 0u {
        // An anchor without negatives has n_i = 0: ℓ_i = 0 with no gradient.
        if n_pos > 0.0 && n_neg > 0.0 {
            let log_m = lse.x - log(n_pos);
            let log_n = log(n_neg) + lse.z - lse.y;
            let u = log_n - log_m;
            loss = softplus(u);
            stat = vec4(sigmoid(u) * params.inv_count, lse.x, lse.y, lse.z);
        }
    } else if LOSS == 1u {
        if n_pos > 0.0 {
            loss = lse.x - n.z / n_pos;
            stat = vec4(params.inv_count, lse.x, 1.0 / n_pos, 0.0);
        }
    } else {
        // g_i = (M-2) Σ_k q_ik e^{s_ik} needs all of the row's negatives before any
        // ℓ_ip = softplus(log g_i - s_ip), so the positives take a second sweep. g_i = 0 (no
        // negative, or M = 2) makes every ℓ_ip 0.
        let has_g = m > 2u && n_neg > 0.0;
        let log_g = log(f32(max(m, 3u) - 2u)) + lse.z - lse.y;
        var terms = vec4(0.0);
        if has_g {
            for (var j = lid; j < m; j += WG) {
                if j != i && labels[j] == yi {
                    let r = log_g - gram[i * m + j] * params.inv_tau;
                    terms += vec4(softplus(r), sigmoid(r), 0.0, 0.0);
                }
            }
        }
        let t = reduce_sum(lid, terms);
        if has_g {
            loss = t.x;
            stat = vec4(t.y * params.inv_count, log_g, lse.y, lse.z);
        }
    }
    if lid == 0u {
        stats_out[i] = stat;
        row_loss[i] = loss * params.inv_count;
    }
}

@group(0) @binding(3) var<storage, read> stats: array<vec4<f32>>;
// dL/d(loss), one value.
@group(0) @binding(4) var<storage, read> upstream: array<f32>;
@group(0) @binding(5) var<storage, read_write> dsim: array<f32>;

// ∂ℓ/∂s_ij of anchor i's terms, s = s_ij (derived beside grad_similarity in lacln.rs,
// supcon.rs and hscl.rs).
fn d_anchor(i: u32, j: u32, s: f32) -> f32 {
    let st = stats[i];
    if i == j || st.x == 0.0 {
        return 0.0;
    }
    let positive = labels[i] == labels[j];
    if LOSS == 1u {
        return st.x * (exp(s - st.y) - select(0.0, st.z, positive));
    }
    if positive {
        if LOSS == 0u {
            return -st.x * exp(s - st.y);
        }
        return -sigmoid(st.y - s) * params.inv_count;
    }
    // Through n_i (LACLN) or g_i (H-SCL): (1+β) π_ik - β q_ik, the weights not detached.
    let beta = params.beta;
    return st.x * ((1.0 + beta) * exp((1.0 + beta) * s - st.w) - beta * exp(beta * s - st.z));
}

// One invocation per element of (G + Gᵀ) · upstream / τ, G = dL/dS: since S = z zᵀ / τ,
// dz = (G + Gᵀ) z / τ, and with the factors folded in here one matmul finishes dz.
@compute @workgroup_size(WG)
fn d_similarity(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    let m = params.m;
    if t >= m * m {
        return;
    }
    let i = t / m;
    let j = t % m;
    let g = d_anchor(i, j, gram[t] * params.inv_tau) + d_anchor(j, i, gram[j * m + i] * params.inv_tau);
    dsim[t] = g * upstream[0] * params.inv_tau;
}
