// Batched matrix product C[b] = op(A[b]) · op(B[b]), op = identity or transpose, f32
// accumulation.
//
// Tiling: a workgroup of WG_X x WG_Y invocations computes a BM x BN tile of C, with
// BM = WG_Y * TM and BN = WG_X * TN: each invocation owns TM x TN outputs (a register block).
// The workgroup walks k in steps of BK; each step stages a BM x BK slice of op(A) and a
// BK x BN slice of op(B) in workgroup memory, so each value loaded from global memory is
// used BN (resp. BM) times. An invocation's outputs are strided by WG_Y rows and WG_X
// columns, so neighbouring invocations read neighbouring workgroup-memory words and write
// neighbouring addresses of C. Out-of-range rows, columns and k are loaded as zeros and never
// written, so no size needs to be a multiple of a tile.

override BK: u32 = 16u;
override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
override BM: u32 = WG_Y * TM;
override BN: u32 = WG_X * TN;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Elements between consecutive matrices of A and B (0: one matrix shared by the batch).
    a_batch_stride: u32,
    b_batch_stride: u32,
    trans_a: u32,
    trans_b: u32,
    // First batch entry of this launch (launches hold at most 65535 entries each).
    batch_base: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Stored k-major: a_tile[kk * BM + row], b_tile[kk * BN + col].
var<workgroup> a_tile: array<f32, BK * BM>;
var<workgroup> b_tile: array<f32, BK * BN>;

// op(A)[row, kk] of the current batch entry, or 0 outside the matrix.
fn load_a(base: u32, row: u32, kk: u32) -> f32 {
    if row >= params.m || kk >= params.k {
        return 0.0;
    }
    // A is stored [m, k], or [k, m] when transposed.
    let at = select(row * params.k + kk, kk * params.m + row, params.trans_a == 1u);
    return a[base + at];
}

// op(B)[kk, col], or 0 outside the matrix.
fn load_b(base: u32, kk: u32, col: u32) -> f32 {
    if kk >= params.k || col >= params.n {
        return 0.0;
    }
    // B is stored [k, n], or [n, k] when transposed.
    let at = select(kk * params.n + col, col * params.k + kk, params.trans_b == 1u);
    return b[base + at];
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) flat: u32,
) {
    let batch = params.batch_base + wid.z;
    let a_base = batch * params.a_batch_stride;
    let b_base = batch * params.b_batch_stride;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let threads = WG_X * WG_Y;

    var acc: array<array<f32, TN>, TM>;
    var a_reg: array<f32, TM>;
    var b_reg: array<f32, TN>;

    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        // Stage the tiles. The element order follows each operand's storage order, so that
        // consecutive invocations load consecutive addresses.
        for (var e = flat; e < BM * BK; e += threads) {
            var row = e / BK;
            var kk = e % BK;
            if params.trans_a == 1u {
                row = e % BM;
                kk = e / BM;
            }
            a_tile[kk * BM + row] = load_a(a_base, row0 + row, k0 + kk);
        }
        for (var e = flat; e < BK * BN; e += threads) {
            var col = e % BN;
            var kk = e / BN;
            if params.trans_b == 1u {
                col = e / BK;
                kk = e % BK;
            }
            b_tile[kk * BN + col] = load_b(b_base, k0 + kk, col0 + col);
        }
        workgroupBarrier();

        for (var kk = 0u; kk < BK; kk++) {
            for (var i = 0u; i < TM; i++) {
                a_reg[i] = a_tile[kk * BM + lid.y + i * WG_Y];
            }
            for (var j = 0u; j < TN; j++) {
                b_reg[j] = b_tile[kk * BN + lid.x + j * WG_X];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i][j] = fma(a_reg[i], b_reg[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    let c_base = batch * params.m * params.n;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + lid.y + i * WG_Y;
        for (var j = 0u; j < TN; j++) {
            let col = col0 + lid.x + j * WG_X;
            if row < params.m && col < params.n {
                c[c_base + row * params.n + col] = acc[i][j];
            }
        }
    }
}
