// f16-storage entry points of the matmul: appended to matmul.wgsl behind `enable f16`
// (see MATMUL_F16 in engine/src/gpu/shaders.rs), so they share its tiles, Params, inner
// product and store. A and B are read as f16 and widened to f32 as they are staged; the
// products accumulate and C is written in f32, so only the inputs' rounding differs from the
// f32 kernels. `matmul_f16_vec4` reads four halves (8 bytes) at a time under the same
// alignment rule as `matmul_vec4`.

@group(0) @binding(1) var<storage, read> a_h: array<f16>;
@group(0) @binding(2) var<storage, read> b_h: array<f16>;
@group(0) @binding(1) var<storage, read> a_h4: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> b_h4: array<vec4<f16>>;

fn stage_a_f16(blk: Block, k0: u32, flat: u32) {
    for (var e = flat; e < BM * BK; e += WG_X * WG_Y) {
        let p = stage_position(e, BM, BK, params.trans_a == 1u);
        let row = blk.row0 + p.x;
        let kk = k0 + p.y;
        var v = 0.0;
        if row < params.m && kk < params.k {
            v = f32(a_h[blk.a_base + a_offset(row, kk)]);
        }
        a_tile[p.y * BM + p.x] = v;
    }
}

fn stage_b_f16(blk: Block, k0: u32, flat: u32) {
    for (var e = flat; e < BK * BN; e += WG_X * WG_Y) {
        let p = stage_position(e, BK, BN, params.trans_b == 1u);
        let kk = k0 + p.x;
        let col = blk.col0 + p.y;
        var v = 0.0;
        if kk < params.k && col < params.n {
            v = f32(b_h[blk.b_base + b_offset(kk, col)]);
        }
        b_tile[p.x * BN + p.y] = v;
    }
}

fn stage_a_f16_vec4(blk: Block, k0: u32, flat: u32) {
    for (var e = flat; e < BM * BK / 4u; e += WG_X * WG_Y) {
        if params.trans_a == 1u {
            let row = 4u * (e % (BM / 4u));
            let kk = e / (BM / 4u);
            var v = vec4<f32>();
            if blk.row0 + row < params.m && k0 + kk < params.k {
                v = vec4<f32>(a_h4[(blk.a_base + a_offset(blk.row0 + row, k0 + kk)) / 4u]);
            }
            for (var i = 0u; i < 4u; i++) {
                a_tile[kk * BM + row + i] = v[i];
            }
        } else {
            let row = e / (BK / 4u);
            let kk = 4u * (e % (BK / 4u));
            var v = vec4<f32>();
            if blk.row0 + row < params.m && k0 + kk < params.k {
                v = vec4<f32>(a_h4[(blk.a_base + a_offset(blk.row0 + row, k0 + kk)) / 4u]);
            }
            for (var i = 0u; i < 4u; i++) {
                a_tile[(kk + i) * BM + row] = v[i];
            }
        }
    }
}

fn stage_b_f16_vec4(blk: Block, k0: u32, flat: u32) {
    for (var e = flat; e < BK * BN / 4u; e += WG_X * WG_Y) {
        if params.trans_b == 1u {
            let col = e / (BK / 4u);
            let kk = 4u * (e % (BK / 4u));
            var v = vec4<f32>();
            if k0 + kk < params.k && blk.col0 + col < params.n {
                v = vec4<f32>(b_h4[(blk.b_base + b_offset(k0 + kk, blk.col0 + col)) / 4u]);
            }
            for (var i = 0u; i < 4u; i++) {
                b_tile[(kk + i) * BN + col] = v[i];
            }
        } else {
            let col = 4u * (e % (BN / 4u));
            let kk = e / (BN / 4u);
            var v = vec4<f32>();
            if k0 + kk < params.k && blk.col0 + col < params.n {
                v = vec4<f32>(b_h4[(blk.b_base + b_offset(k0 + kk, blk.col0 + col)) / 4u]);
            }
            for (var i = 0u; i < 4u; i++) {
                b_tile[kk * BN + col + i] = v[i];
            }
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_f16(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) flat: u32,
) {
    let blk = block_of(wid);
    var acc: array<array<f32, TN>, TM>;
    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        stage_a_f16(blk, k0, flat);
        stage_b_f16(blk, k0, flat);
        workgroupBarrier();
        multiply_tiles(lid, &acc);
        workgroupBarrier();
    }
    store(blk, lid, acc);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_f16_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) flat: u32,
) {
    let blk = block_of(wid);
    var acc: array<array<f32, TN>, TM>;
    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        stage_a_f16_vec4(blk, k0, flat);
        stage_b_f16_vec4(blk, k0, flat);
        workgroupBarrier();
        multiply_tiles(lid, &acc);
        workgroupBarrier();
    }
    store(blk, lid, acc);
}
