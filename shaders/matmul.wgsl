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
//
// Entry points differ only in how they stage tiles: `matmul` loads one f32 at a time and
// takes any size; `matmul_vec4` loads 16-byte vectors and needs each operand's contiguous
// dimension (k for A, n for B; m for Aᵀ, k for Bᵀ) to be a multiple of 4 and BK too, so a
// vector never straddles a row or the edge of the matrix. shaders/matmul_f16.wgsl adds the
// f16-storage entry points to this file.

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
// Each entry point uses one view of A and B; WGSL allows the aliases because no entry point
// uses two views of one binding.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Stored k-major: a_tile[kk * BM + row], b_tile[kk * BN + col].
var<workgroup> a_tile: array<f32, BK * BM>;
var<workgroup> b_tile: array<f32, BK * BN>;

// Where a workgroup works: its batch entry, the first row and column of its tile of C, and
// the start of each operand's matrix.
struct Block {
    batch: u32,
    row0: u32,
    col0: u32,
    a_base: u32,
    b_base: u32,
}

fn block_of(wid: vec3<u32>) -> Block {
    let batch = params.batch_base + wid.z;
    return Block(
        batch,
        wid.y * BM,
        wid.x * BN,
        batch * params.a_batch_stride,
        batch * params.b_batch_stride,
    );
}

// Element offset of op(A)[row, kk] within its matrix: A is stored [m, k], or [k, m] when
// transposed.
fn a_offset(row: u32, kk: u32) -> u32 {
    return select(row * params.k + kk, kk * params.m + row, params.trans_a == 1u);
}

// Element offset of op(B)[kk, col]: B is stored [k, n], or [n, k] when transposed.
fn b_offset(kk: u32, col: u32) -> u32 {
    return select(kk * params.n + col, col * params.k + kk, params.trans_b == 1u);
}

// Position [i, j] in a tile of op(X) (extent `rows` x `cols`) of staged element `e`. The
// element order follows X's storage order, so that consecutive invocations load consecutive
// addresses: j is the contiguous index, or i when X is stored transposed.
fn stage_position(e: u32, rows: u32, cols: u32, transposed: bool) -> vec2<u32> {
    if transposed {
        return vec2<u32>(e % rows, e / rows);
    }
    return vec2<u32>(e / cols, e % cols);
}

fn stage_a_scalar(blk: Block, k0: u32, flat: u32) {
    for (var e = flat; e < BM * BK; e += WG_X * WG_Y) {
        let p = stage_position(e, BM, BK, params.trans_a == 1u);
        let row = blk.row0 + p.x;
        let kk = k0 + p.y;
        var v = 0.0;
        if row < params.m && kk < params.k {
            v = a[blk.a_base + a_offset(row, kk)];
        }
        a_tile[p.y * BM + p.x] = v;
    }
}

fn stage_b_scalar(blk: Block, k0: u32, flat: u32) {
    for (var e = flat; e < BK * BN; e += WG_X * WG_Y) {
        let p = stage_position(e, BK, BN, params.trans_b == 1u);
        let kk = k0 + p.x;
        let col = blk.col0 + p.y;
        var v = 0.0;
        if kk < params.k && col < params.n {
            v = b[blk.b_base + b_offset(kk, col)];
        }
        b_tile[p.x * BN + p.y] = v;
    }
}

// Vector staging: each e covers 4 elements along the contiguous dimension. Because that
// dimension is a multiple of 4, as are the tile origins, a vector lies wholly inside or
// wholly outside the matrix.
fn stage_a_vec4(blk: Block, k0: u32, flat: u32) {
    for (var e = flat; e < BM * BK / 4u; e += WG_X * WG_Y) {
        if params.trans_a == 1u {
            // [k, m]: four consecutive rows of one kk.
            let row = 4u * (e % (BM / 4u));
            let kk = e / (BM / 4u);
            var v = vec4<f32>();
            if blk.row0 + row < params.m && k0 + kk < params.k {
                v = a4[(blk.a_base + a_offset(blk.row0 + row, k0 + kk)) / 4u];
            }
            for (var i = 0u; i < 4u; i++) {
                a_tile[kk * BM + row + i] = v[i];
            }
        } else {
            // [m, k]: four consecutive kk of one row.
            let row = e / (BK / 4u);
            let kk = 4u * (e % (BK / 4u));
            var v = vec4<f32>();
            if blk.row0 + row < params.m && k0 + kk < params.k {
                v = a4[(blk.a_base + a_offset(blk.row0 + row, k0 + kk)) / 4u];
            }
            for (var i = 0u; i < 4u; i++) {
                a_tile[(kk + i) * BM + row] = v[i];
            }
        }
    }
}

fn stage_b_vec4(blk: Block, k0: u32, flat: u32) {
    for (var e = flat; e < BK * BN / 4u; e += WG_X * WG_Y) {
        if params.trans_b == 1u {
            // [n, k]: four consecutive kk of one column.
            let col = e / (BK / 4u);
            let kk = 4u * (e % (BK / 4u));
            var v = vec4<f32>();
            if k0 + kk < params.k && blk.col0 + col < params.n {
                v = b4[(blk.b_base + b_offset(k0 + kk, blk.col0 + col)) / 4u];
            }
            for (var i = 0u; i < 4u; i++) {
                b_tile[(kk + i) * BN + col] = v[i];
            }
        } else {
            // [k, n]: four consecutive columns of one kk.
            let col = 4u * (e % (BN / 4u));
            let kk = e / (BN / 4u);
            var v = vec4<f32>();
            if k0 + kk < params.k && blk.col0 + col < params.n {
                v = b4[(blk.b_base + b_offset(k0 + kk, blk.col0 + col)) / 4u];
            }
            for (var i = 0u; i < 4u; i++) {
                b_tile[kk * BN + col + i] = v[i];
            }
        }
    }
}

// acc += (staged slice of op(A)) · (staged slice of op(B)) for this invocation's outputs.
fn multiply_tiles(lid: vec3<u32>, acc: ptr<function, array<array<f32, TN>, TM>>) {
    var a_reg: array<f32, TM>;
    var b_reg: array<f32, TN>;
    for (var kk = 0u; kk < BK; kk++) {
        for (var i = 0u; i < TM; i++) {
            a_reg[i] = a_tile[kk * BM + lid.y + i * WG_Y];
        }
        for (var j = 0u; j < TN; j++) {
            b_reg[j] = b_tile[kk * BN + lid.x + j * WG_X];
        }
        for (var i = 0u; i < TM; i++) {
            for (var j = 0u; j < TN; j++) {
                (*acc)[i][j] = fma(a_reg[i], b_reg[j], (*acc)[i][j]);
            }
        }
    }
}

fn store(blk: Block, lid: vec3<u32>, acc: array<array<f32, TN>, TM>) {
    let c_base = blk.batch * params.m * params.n;
    for (var i = 0u; i < TM; i++) {
        let row = blk.row0 + lid.y + i * WG_Y;
        for (var j = 0u; j < TN; j++) {
            let col = blk.col0 + lid.x + j * WG_X;
            if row < params.m && col < params.n {
                c[c_base + row * params.n + col] = acc[i][j];
            }
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) flat: u32,
) {
    let blk = block_of(wid);
    var acc: array<array<f32, TN>, TM>;
    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        stage_a_scalar(blk, k0, flat);
        stage_b_scalar(blk, k0, flat);
        workgroupBarrier();
        multiply_tiles(lid, &acc);
        workgroupBarrier();
    }
    store(blk, lid, acc);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) flat: u32,
) {
    let blk = block_of(wid);
    var acc: array<array<f32, TN>, TM>;
    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        stage_a_vec4(blk, k0, flat);
        stage_b_vec4(blk, k0, flat);
        workgroupBarrier();
        multiply_tiles(lid, &acc);
        workgroupBarrier();
    }
    store(blk, lid, acc);
}
