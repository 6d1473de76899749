// The two data moves that turn conv2d into matrix products (see engine/src/ops/conv2d):
// im2col unfolds input patches into columns, col2im folds column gradients back (its adjoint).
// The matrix products themselves run in matmul.wgsl.
//
// For samples n0 .. n0 + nc of x [N,C,H,W], kernel kh x kw, output Ho x Wo:
// cols[n, k, p] = x[n0 + n, c, oy·stride + ki − padding, ox·stride + kj − padding] (0 in the
// padding), with k = (c·kh + ki)·kw + kj (the weight's [C,kh,kw] order) and p = oy·Wo + ox.

const WG: u32 = 256u;

struct Params {
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    padding: u32,
    ho: u32,
    wo: u32,
    // The samples this launch covers.
    n0: u32,
    nc: u32,
    // im2col's layout: 0 = [nc, K, P] (forward: one product per sample), 1 = [K, nc, P]
    // (the weight gradient: one product over the whole chunk).
    k_major: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// x in f32, or (im2col_f16) f16 storage, two halves to a word, as the tape keeps saved
// activations under `--precision f16`: unpack2x16float is core WGSL, so reading it needs no
// shader-f16. No entry point uses both views.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> x_half: array<u32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;

@compute @workgroup_size(WG)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.nc * params.c * params.kh * params.kw * params.ho * params.wo {
        return;
    }
    let at = source_of(t);
    cols[t] = select(0.0, x[max(at, 0)], at >= 0);
}

@compute @workgroup_size(WG)
fn im2col_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= params.nc * params.c * params.kh * params.kw * params.ho * params.wo {
        return;
    }
    let at = source_of(t);
    let i = u32(max(at, 0));
    cols[t] = select(0.0, unpack2x16float(x_half[i / 2u])[i % 2u], at >= 0);
}

// Where in x the column entry t comes from, or -1 in the padding.
fn source_of(t: u32) -> i32 {
    let patch_len = params.c * params.kh * params.kw;
    let pixels = params.ho * params.wo;
    let p = t % pixels;
    var n = (t / pixels) / patch_len;
    var k = (t / pixels) % patch_len;
    if params.k_major == 1u {
        n = (t / pixels) % params.nc;
        k = (t / pixels) / params.nc;
    }
    let ci = k / (params.kh * params.kw);
    let ki = (k / params.kw) % params.kh;
    let kj = k % params.kw;
    // Signed: the window may start in the padding.
    let iy = i32((p / params.wo) * params.stride + ki) - i32(params.padding);
    let ix = i32((p % params.wo) * params.stride + kj) - i32(params.padding);
    if iy >= 0 && iy < i32(params.h) && ix >= 0 && ix < i32(params.w) {
        return i32(((params.n0 + n) * params.c + ci) * params.h * params.w + u32(iy) * params.w + u32(ix));
    }
    return -1;
}

@group(0) @binding(1) var<storage, read> dcols: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

// dx[n0 + n, c, iy, ix] = sum of dcols[n, k, p] over every (k, p) that im2col read it into.
// One invocation per input element, so no two invocations write the same element.
@compute @workgroup_size(WG)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let plane = params.h * params.w;
    if t >= params.nc * params.c * plane {
        return;
    }
    let n = t / (params.c * plane);
    let ci = (t / plane) % params.c;
    let iy = (t % plane) / params.w;
    let ix = t % params.w;
    let patch_len = params.c * params.kh * params.kw;
    let pixels = params.ho * params.wo;
    var acc = 0.0;
    for (var ki = 0u; ki < params.kh; ki++) {
        // Output row oy reads input row iy through kernel row ki when oy·stride = iy + padding − ki.
        let ry = i32(iy + params.padding) - i32(ki);
        if ry < 0 || ry % i32(params.stride) != 0 || ry / i32(params.stride) >= i32(params.ho) {
            continue;
        }
        let oy = u32(ry) / params.stride;
        for (var kj = 0u; kj < params.kw; kj++) {
            let rx = i32(ix + params.padding) - i32(kj);
            if rx < 0 || rx % i32(params.stride) != 0 || rx / i32(params.stride) >= i32(params.wo) {
                continue;
            }
            let ox = u32(rx) / params.stride;
            let k = (ci * params.kh + ki) * params.kw + kj;
            acc += dcols[(n * patch_len + k) * pixels + oy * params.wo + ox];
        }
    }
    dx[params.n0 * params.c * plane + t] = acc;
}
