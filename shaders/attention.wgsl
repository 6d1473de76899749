// Fused attention: O = softmax(scale · Q Kᵀ + bias) V for q, k, v [B, H, N, D] and an
// optional bias [H, N, N] shared by the batch, without ever storing the N × N scores.
//
// Forward (online softmax, as in FlashAttention): a workgroup owns ROWS query rows of one
// (batch, head) and streams K and V through workgroup memory, TILE key rows at a time. Each
// row keeps a running maximum m of its scores, a running sum l = Σ exp(s − m) and the
// unnormalised output acc = Σ exp(s − m) v. When a tile raises the maximum to m', l and acc
// are rescaled by exp(m − m'), so after the last tile acc / l is exactly softmax(s) V, with
// the same max-shift as the two-pass softmax. The row's logsumexp L = m + log l is saved:
// it is all the backward needs to rebuild any probability as P = exp(S − L).
//
// Backward, with S and P recomputed tile by tile from Q, K and L:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − δ),  δ_i = Σ_j P_ij dP_ij = dO_i · O_i,
//   dQ = scale · dS K,  dK = scale · dSᵀ Q,  dBias = Σ_batch dS.
// δ comes in with L in `stats` (computed beforehand from dO and O). `backward_query` owns
// query rows and produces dQ and dBias; `backward_key` owns key rows and produces dK and dV.
// Every output element is written by exactly one invocation, so there are no atomics: the
// workgroup of (head, query rows) loops over the batch entries of its group and adds their
// dS into its own rows of dBias (the host adds the groups' partial sums when there are
// several).
//
// Layout: 256 invocations per workgroup, ROWS owned rows × TD = 256 / ROWS invocations per
// row. Invocation (r, t) computes the score of owned row r with streamed row t (t < TILE),
// and holds columns t, t + TD, ... of row r's D-wide accumulators (at most MAX_COLS, so
// D ≤ MAX_COLS · TD). Rows in workgroup memory are STRIDE = D + 1 apart so that invocations
// reading one column of different rows hit different memory banks. Rows past N are staged as
// zeros, their scores are ignored and they are never written, so N needs no rounding.

const WG: u32 = 256u;
const MAX_COLS: u32 = 4u;
const NEG_INF: f32 = -3.40282347e+38;

override ROWS: u32 = 16u;
override TILE: u32 = 8u;
// The head dimension.
override D: u32 = 64u;
override TD: u32 = WG / ROWS;
override STRIDE: u32 = D + 1u;

struct Params {
    batch: u32,
    heads: u32,
    n: u32,
    // Workgroups per (batch, head): ceil(N / ROWS).
    row_blocks: u32,
    scale: f32,
    has_bias: u32,
    // backward_query: batch entries per workgroup (the dBias sum of one group), and whether
    // it writes dBias.
    group_size: u32,
    write_dbias: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// q, k, v (bindings 1 to 3) and their readers load_q, load_k, load_v (element i as f32) come
// from the header `shaders::attention` puts in front of this file: f32 arrays, or, for the
// backward of `--precision f16`, the saved f16 copies read as packed halves.
// [H, N, N]; without a bias some other buffer is bound here and never read.
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// Workgroup memory; each entry point uses its own part.
var<workgroup> q_own: array<f32, ROWS * STRIDE>;
var<workgroup> do_own: array<f32, ROWS * STRIDE>;
var<workgroup> k_own: array<f32, ROWS * STRIDE>;
var<workgroup> v_own: array<f32, ROWS * STRIDE>;
var<workgroup> q_tile: array<f32, TILE * STRIDE>;
var<workgroup> do_tile: array<f32, TILE * STRIDE>;
var<workgroup> k_tile: array<f32, TILE * STRIDE>;
var<workgroup> v_tile: array<f32, TILE * STRIDE>;
// Scores, probabilities and dS of the owned rows with the streamed ones: [ROWS, TILE].
var<workgroup> s_tile: array<f32, ROWS * TILE>;
var<workgroup> p_tile: array<f32, ROWS * TILE>;
var<workgroup> ds_tile: array<f32, ROWS * TILE>;
// (L, δ) of the owned or streamed query rows.
var<workgroup> stats_own: array<vec2<f32>, ROWS>;
var<workgroup> stats_tile: array<vec2<f32>, TILE>;

fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// bias[head, i, j], or 0 without a bias.
fn bias_at(head: u32, i: u32, j: u32) -> f32 {
    if params.has_bias == 0u {
        return 0.0;
    }
    return bias[(head * params.n + i) * params.n + j];
}

// ---------------------------------------------------------------------------------------
// Forward: O [B, H, N, D] and the logsumexp L [B, H, N] of each score row.

@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;

@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let flat = workgroup_index(wid, nwg);
    if flat >= params.batch * params.heads * params.row_blocks {
        return;
    }
    let n = params.n;
    let bh = flat / params.row_blocks;
    let head = bh % params.heads;
    let base = bh * n * D;
    let row0 = (flat % params.row_blocks) * ROWS;
    let r = lid / TD;
    let t = lid % TD;
    let row = row0 + r;

    for (var e = lid; e < ROWS * D; e += WG) {
        let i = row0 + e / D;
        let at = (e / D) * STRIDE + e % D;
        q_own[at] = 0.0;
        if i < n {
            q_own[at] = load_q(base + i * D + e % D);
        }
    }
    var m = NEG_INF;
    var l = 0.0;
    var acc: array<f32, MAX_COLS>;
    for (var key0 = 0u; key0 < n; key0 += TILE) {
        // Everyone is done with the previous tile (and, the first time, Q is staged).
        workgroupBarrier();
        for (var e = lid; e < TILE * D; e += WG) {
            let j = key0 + e / D;
            let at = (e / D) * STRIDE + e % D;
            k_tile[at] = 0.0;
            v_tile[at] = 0.0;
            if j < n {
                k_tile[at] = load_k(base + j * D + e % D);
                v_tile[at] = load_v(base + j * D + e % D);
            }
        }
        workgroupBarrier();
        if t < TILE {
            let key = key0 + t;
            var s = NEG_INF;
            if row < n && key < n {
                var dot = 0.0;
                for (var c = 0u; c < D; c++) {
                    dot = fma(q_own[r * STRIDE + c], k_tile[t * STRIDE + c], dot);
                }
                s = params.scale * dot + bias_at(head, row, key);
            }
            s_tile[r * TILE + t] = s;
        }
        workgroupBarrier();
        // Every invocation of row r takes the new maximum from the same scores, so each
        // holds the row's m and l; each probability is computed once, by its scorer.
        var m_new = m;
        for (var j = 0u; j < TILE; j++) {
            m_new = max(m_new, s_tile[r * TILE + j]);
        }
        if t < TILE {
            p_tile[r * TILE + t] = exp(s_tile[r * TILE + t] - m_new);
        }
        workgroupBarrier();
        let rescale = exp(m - m_new);
        l *= rescale;
        for (var x = 0u; x < MAX_COLS; x++) {
            acc[x] *= rescale;
        }
        for (var j = 0u; j < TILE; j++) {
            let p = p_tile[r * TILE + j];
            l += p;
            for (var x = 0u; x < MAX_COLS; x++) {
                let c = t + x * TD;
                if c < D {
                    acc[x] = fma(p, v_tile[j * STRIDE + c], acc[x]);
                }
            }
        }
        m = m_new;
    }
    if row < n {
        for (var x = 0u; x < MAX_COLS; x++) {
            let c = t + x * TD;
            if c < D {
                out[base + row * D + c] = acc[x] / l;
            }
        }
        if t == 0u {
            lse[bh * n + row] = m + log(l);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Backward. `stats` is [2, B·H·N]: L, then δ.

@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read> grad: array<f32>;

fn row_stats(bh_row: u32) -> vec2<f32> {
    let rows = params.batch * params.heads * params.n;
    return vec2<f32>(stats[bh_row], stats[rows + bh_row]);
}

@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
// [groups, H, N, N]: each group's sum of dS over its batch entries.
@group(0) @binding(8) var<storage, read_write> dbias: array<f32>;

// dQ [B, H, N, D] and dBias for the query rows of one head, over the batch entries of one
// group (one entry when there is no bias, so the grid is as wide as the forward's).
@compute @workgroup_size(WG)
fn backward_query(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let groups = (params.batch + params.group_size - 1u) / params.group_size;
    let flat = workgroup_index(wid, nwg);
    if flat >= groups * params.heads * params.row_blocks {
        return;
    }
    let n = params.n;
    let row0 = (flat % params.row_blocks) * ROWS;
    let head = (flat / params.row_blocks) % params.heads;
    let group = flat / (params.row_blocks * params.heads);
    let first = group * params.group_size;
    let end = min(first + params.group_size, params.batch);
    let bias_base = (group * params.heads + head) * n * n;
    let r = lid / TD;
    let t = lid % TD;
    let row = row0 + r;

    for (var b = first; b < end; b++) {
        let bh = b * params.heads + head;
        let base = bh * n * D;
        // Everyone is done with the previous batch entry's rows.
        workgroupBarrier();
        for (var e = lid; e < ROWS * D; e += WG) {
            let i = row0 + e / D;
            let at = (e / D) * STRIDE + e % D;
            q_own[at] = 0.0;
            do_own[at] = 0.0;
            if i < n {
                q_own[at] = load_q(base + i * D + e % D);
                do_own[at] = grad[base + i * D + e % D];
            }
        }
        if lid < ROWS && row0 + lid < n {
            stats_own[lid] = row_stats(bh * n + row0 + lid);
        }
        var acc: array<f32, MAX_COLS>;
        for (var key0 = 0u; key0 < n; key0 += TILE) {
            workgroupBarrier();
            for (var e = lid; e < TILE * D; e += WG) {
                let j = key0 + e / D;
                let at = (e / D) * STRIDE + e % D;
                k_tile[at] = 0.0;
                v_tile[at] = 0.0;
                if j < n {
                    k_tile[at] = load_k(base + j * D + e % D);
                    v_tile[at] = load_v(base + j * D + e % D);
                }
            }
            workgroupBarrier();
            if t < TILE {
                let key = key0 + t;
                var ds = 0.0;
                if row < n && key < n {
                    var s = 0.0;
                    var dp = 0.0;
                    for (var c = 0u; c < D; c++) {
                        s = fma(q_own[r * STRIDE + c], k_tile[t * STRIDE + c], s);
                        dp = fma(do_own[r * STRIDE + c], v_tile[t * STRIDE + c], dp);
                    }
                    let st = stats_own[r];
                    let p = exp(params.scale * s + bias_at(head, row, key) - st.x);
                    ds = p * (dp - st.y);
                    if params.write_dbias == 1u {
                        // Only this invocation touches this element, for every b.
                        let at = bias_base + row * n + key;
                        if b == first {
                            dbias[at] = ds;
                        } else {
                            dbias[at] += ds;
                        }
                    }
                }
                ds_tile[r * TILE + t] = ds;
            }
            workgroupBarrier();
            for (var j = 0u; j < TILE; j++) {
                let ds = ds_tile[r * TILE + j];
                for (var x = 0u; x < MAX_COLS; x++) {
                    let c = t + x * TD;
                    if c < D {
                        acc[x] = fma(ds, k_tile[j * STRIDE + c], acc[x]);
                    }
                }
            }
        }
        if row < n {
            for (var x = 0u; x < MAX_COLS; x++) {
                let c = t + x * TD;
                if c < D {
                    dq[base + row * D + c] = params.scale * acc[x];
                }
            }
        }
    }
}

@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;

// dK and dV [B, H, N, D] for ROWS key rows of one (batch, head), streaming the query rows.
@compute @workgroup_size(WG)
fn backward_key(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let flat = workgroup_index(wid, nwg);
    if flat >= params.batch * params.heads * params.row_blocks {
        return;
    }
    let n = params.n;
    let bh = flat / params.row_blocks;
    let head = bh % params.heads;
    let base = bh * n * D;
    let key0 = (flat % params.row_blocks) * ROWS;
    let r = lid / TD;
    let t = lid % TD;
    let key = key0 + r;

    for (var e = lid; e < ROWS * D; e += WG) {
        let j = key0 + e / D;
        let at = (e / D) * STRIDE + e % D;
        k_own[at] = 0.0;
        v_own[at] = 0.0;
        if j < n {
            k_own[at] = load_k(base + j * D + e % D);
            v_own[at] = load_v(base + j * D + e % D);
        }
    }
    var dk_acc: array<f32, MAX_COLS>;
    var dv_acc: array<f32, MAX_COLS>;
    for (var row0 = 0u; row0 < n; row0 += TILE) {
        workgroupBarrier();
        for (var e = lid; e < TILE * D; e += WG) {
            let i = row0 + e / D;
            let at = (e / D) * STRIDE + e % D;
            q_tile[at] = 0.0;
            do_tile[at] = 0.0;
            if i < n {
                q_tile[at] = load_q(base + i * D + e % D);
                do_tile[at] = grad[base + i * D + e % D];
            }
        }
        if lid < TILE && row0 + lid < n {
            stats_tile[lid] = row_stats(bh * n + row0 + lid);
        }
        workgroupBarrier();
        if t < TILE {
            let row = row0 + t;
            var p = 0.0;
            var ds = 0.0;
            if row < n && key < n {
                var s = 0.0;
                var dp = 0.0;
                for (var c = 0u; c < D; c++) {
                    s = fma(q_tile[t * STRIDE + c], k_own[r * STRIDE + c], s);
                    dp = fma(do_tile[t * STRIDE + c], v_own[r * STRIDE + c], dp);
                }
                let st = stats_tile[t];
                p = exp(params.scale * s + bias_at(head, row, key) - st.x);
                ds = p * (dp - st.y);
            }
            p_tile[r * TILE + t] = p;
            ds_tile[r * TILE + t] = ds;
        }
        workgroupBarrier();
        for (var i = 0u; i < TILE; i++) {
            let p = p_tile[r * TILE + i];
            let ds = ds_tile[r * TILE + i];
            for (var x = 0u; x < MAX_COLS; x++) {
                let c = t + x * TD;
                if c < D {
                    dv_acc[x] = fma(p, do_tile[i * STRIDE + c], dv_acc[x]);
                    dk_acc[x] = fma(ds, q_tile[i * STRIDE + c], dk_acc[x]);
                }
            }
        }
    }
    if key < n {
        for (var x = 0u; x < MAX_COLS; x++) {
            let c = t + x * TD;
            if c < D {
                dk[base + key * D + c] = params.scale * dk_acc[x];
                dv[base + key * D + c] = dv_acc[x];
            }
        }
    }
}
