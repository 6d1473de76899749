// Batched matrix product C[b] = op(A[b]) · op(B[b]), op = identity or transpose, f32
// accumulation. One source for every variant: the loader (`shaders::matmul` in
// engine/src/gpu/shaders.rs) puts in front of it the storage element types `ElemA` of A and
// `ElemB` of B (f32, or f16 behind `enable f16`: values are widened to f32 as they are staged,
// so only the inputs' rounding differs) and the register block TM x TN (4 x 4, or 8 x 8).
//
// Tiling: a workgroup of WG_X x WG_Y invocations computes a BM x BN tile of C, with
// BM = WG_Y * TM and BN = WG_X * TN: each invocation owns TM x TN outputs (a register block).
// The workgroup walks k in steps of BK; each step stages a BM x BK slice of op(A) and a
// BK x BN slice of op(B) in workgroup memory, so each value loaded from global memory is
// used BN (resp. BM) times. With STAGES = 2 the tiles are double-buffered: the next slice is
// staged while the current one is multiplied, one barrier per step instead of two. An
// invocation's outputs are strided by WG_Y rows and WG_X columns, so neighbouring invocations
// read neighbouring workgroup-memory words and write neighbouring addresses of C.
// Out-of-range rows, columns and k are loaded as zeros and never written, so no size needs to
// be a multiple of a tile.
//
// Entry points differ only in how they stage tiles: `matmul` loads one element at a time and
// takes any size; `matmul_vec4` loads 4-vectors and needs each operand's contiguous
// dimension (k for A, n for B; m for Aᵀ, k for Bᵀ) to be a multiple of 4 and BK too, so a
// vector never straddles a row or the edge of the matrix. (Modules with an f16 operand name
// them matmul_f16 and matmul_f16_vec4.)

override BK: u32 = 16u;
override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
override STAGES: u32 = 1u;
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
@group(0) @binding(1) var<storage, read> a: array<ElemA>;
@group(0) @binding(2) var<storage, read> b: array<ElemB>;
@group(0) @binding(1) var<storage, read> a4: array<vec4<ElemA>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<ElemB>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// STAGES slices, each stored k-major: a_tile[buf * BK * BM + kk * BM + row],
// b_tile[buf * BK * BN + kk * BN + col].
var<workgroup> a_tile: array<f32, STAGES * BK * BM>;
var<workgroup> b_tile: array<f32, STAGES * BK * BN>;

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

fn stage_a_scalar(blk: Block, k0: u32, flat: u32, buf: u32) {
    let at = buf * BK * BM;
    for (var e = flat; e < BM * BK; e += WG_X * WG_Y) {
        let p = stage_position(e, BM, BK, params.trans_a == 1u);
        let row = blk.row0 + p.x;
        let kk = k0 + p.y;
        var v = 0.0;
        if row < params.m && kk < params.k {
            v = f32(a[blk.a_base + a_offset(row, kk)]);
        }
        a_tile[at + p.y * BM + p.x] = v;
    }
}

fn stage_b_scalar(blk: Block, k0: u32, flat: u32, buf: u32) {
    let at = buf * BK * BN;
    for (var e = flat; e < BK * BN; e += WG_X * WG_Y) {
        let p = stage_position(e, BK, BN, params.trans_b == 1u);
        let kk = k0 + p.x;
        let col = blk.col0 + p.y;
        var v = 0.0;
        if kk < params.k && col < params.n {
            v = f32(b[blk.b_base + b_offset(kk, col)]);
        }
        b_tile[at + p.x * BN + p.y] = v;
    }
}

// Vector staging: each e covers 4 elements along the contiguous dimension. Because that
// dimension is a multiple of 4, as are the tile origins, a vector lies wholly inside or
// wholly outside the matrix.
fn stage_a_vec4(blk: Block, k0: u32, flat: u32, buf: u32) {
    let at = buf * BK * BM;
    for (var e = flat; e < BM * BK / 4u; e += WG_X * WG_Y) {
        if params.trans_a == 1u {
            // [k, m]: four consecutive rows of one kk.
            let row = 4u * (e % (BM / 4u));
            let kk = e / (BM / 4u);
            var v = vec4<f32>();
            if blk.row0 + row < params.m && k0 + kk < params.k {
                v = vec4<f32>(a4[(blk.a_base + a_offset(blk.row0 + row, k0 + kk)) / 4u]);
            }
            for (var i = 0u; i < 4u; i++) {
                a_tile[at + kk * BM + row + i] = v[i];
            }
        } else {
            // [m, k]: four consecutive kk of one row.
            let row = e / (BK / 4u);
            let kk = 4u * (e % (BK / 4u));
            var v = vec4<f32>();
            if blk.row0 + row < params.m && k0 + kk < params.k {
                v = vec4<f32>(a4[(blk.a_base + a_offset(blk.row0 + row, k0 + kk)) / 4u]);
            }
            for (var i = 0u; i < 4u; i++) {
                a_tile[at + (kk + i) * BM + row] = v[i];
            }
        }
    }
}

fn stage_b_vec4(blk: Block, k0: u32, flat: u32, buf: u32) {
    let at = buf * BK * BN;
    for (var e = flat; e < BK * BN / 4u; e += WG_X * WG_Y) {
        if params.trans_b == 1u {
            // [n, k]: four consecutive kk of one column.
            let col = e / (BK / 4u);
            let kk = 4u * (e % (BK / 4u));
            var v = vec4<f32>();
            if k0 + kk < params.k && blk.col0 + col < params.n {
                v = vec4<f32>(b4[(blk.b_base + b_offset(k0 + kk, blk.col0 + col)) / 4u]);
            }
            for (var i = 0u; i < 4u; i++) {
                b_tile[at + (kk + i) * BN + col] = v[i];
            }
        } else {
            // [k, n]: four consecutive columns of one kk.
            let col = 4u * (e % (BN / 4u));
            let kk = e / (BN / 4u);
            var v = vec4<f32>();
            if k0 + kk < params.k && blk.col0 + col < params.n {
                v = vec4<f32>(b4[(blk.b_base + b_offset(k0 + kk, blk.col0 + col)) / 4u]);
            }
            for (var i = 0u; i < 4u; i++) {
                b_tile[at + kk * BN + col + i] = v[i];
            }
        }
    }
}

// acc += (staged slice `buf` of op(A)) · (slice `buf` of op(B)) for this invocation's outputs.
fn multiply_tiles(lid: vec3<u32>, acc: ptr<function, array<array<f32, TN>, TM>>, buf: u32) {
    let a_at = buf * BK * BM + lid.y;
    let b_at = buf * BK * BN + lid.x;
    var a_reg: array<f32, TM>;
    var b_reg: array<f32, TN>;
    for (var kk = 0u; kk < BK; kk++) {
        for (var i = 0u; i < TM; i++) {
            a_reg[i] = a_tile[a_at + kk * BM + i * WG_Y];
        }
        for (var j = 0u; j < TN; j++) {
            b_reg[j] = b_tile[b_at + kk * BN + j * WG_X];
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

// The walk through k, the same for both staging kinds (WGSL has no function values, so each
// entry point spells it with its own staging calls). Slice `step % STAGES` is multiplied while,
// with two stages, the next one is staged into the other buffer: the barrier that ends a step
// both publishes the next slice and retires the reads of the buffer it will overwrite.

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) flat: u32,
) {
    let blk = block_of(wid);
    var acc: array<array<f32, TN>, TM>;
    stage_a_scalar(blk, 0u, flat, 0u);
    stage_b_scalar(blk, 0u, flat, 0u);
    workgroupBarrier();
    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        let buf = (k0 / BK) % STAGES;
        let next = k0 + BK < params.k;
        if STAGES == 2u && next {
            stage_a_scalar(blk, k0 + BK, flat, 1u - buf);
            stage_b_scalar(blk, k0 + BK, flat, 1u - buf);
        }
        multiply_tiles(lid, &acc, buf);
        workgroupBarrier();
        if STAGES == 1u && next {
            stage_a_scalar(blk, k0 + BK, flat, 0u);
            stage_b_scalar(blk, k0 + BK, flat, 0u);
            workgroupBarrier();
        }
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
    stage_a_vec4(blk, 0u, flat, 0u);
    stage_b_vec4(blk, 0u, flat, 0u);
    workgroupBarrier();
    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        let buf = (k0 / BK) % STAGES;
        let next = k0 + BK < params.k;
        if STAGES == 2u && next {
            stage_a_vec4(blk, k0 + BK, flat, 1u - buf);
            stage_b_vec4(blk, k0 + BK, flat, 1u - buf);
        }
        multiply_tiles(lid, &acc, buf);
        workgroupBarrier();
        if STAGES == 1u && next {
            stage_a_vec4(blk, k0 + BK, flat, 0u);
            stage_b_vec4(blk, k0 + BK, flat, 0u);
            workgroupBarrier();
        }
    }
    store(blk, lid, acc);
}
