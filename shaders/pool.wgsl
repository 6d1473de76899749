// 2-D pooling over the channel planes of x [N,C,H,W]: `planes` = N·C planes of H x W, each
// pooled to Ho x Wo with a kernel x kernel window, one stride and zero padding.
// OP: 0 = max (padding is -inf; the first maximum in row-major order wins ties, a NaN wins
// outright), 1 = average (padding counts as zeros: every window divides by kernel²).

override OP: u32 = 0u;
const WG: u32 = 256u;

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    kernel: u32,
    stride: u32,
    padding: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Input rows (or columns) under output position o's window, padding cut off: [start, end).
fn window(o: u32, size: u32) -> vec2<u32> {
    let first = o * params.stride;
    let start = select(first - params.padding, 0u, first < params.padding);
    let last = first + params.kernel;
    let end = min(select(last - params.padding, 0u, last < params.padding), size);
    return vec2<u32>(start, end);
}

// In-plane position of the maximum of output (oy, ox)'s window; windows are never empty.
fn argmax(base: u32, oy: u32, ox: u32) -> u32 {
    let rows = window(oy, params.h);
    let cols = window(ox, params.w);
    var best = rows.x * params.w + cols.x;
    var best_value = x[base + best];
    for (var iy = rows.x; iy < rows.y; iy++) {
        for (var ix = cols.x; ix < cols.y; ix++) {
            let v = x[base + iy * params.w + ix];
            if v > best_value || (is_nan(v) && !is_nan(best_value)) {
                best = iy * params.w + ix;
                best_value = v;
            }
        }
    }
    return best;
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let out_plane = params.ho * params.wo;
    if t >= params.planes * out_plane {
        return;
    }
    let plane = t / out_plane;
    let oy = (t % out_plane) / params.wo;
    let ox = t % params.wo;
    let base = plane * params.h * params.w;
    if OP == 0u {
        y[t] = x[base + argmax(base, oy, ox)];
        return;
    }
    let rows = window(oy, params.h);
    let cols = window(ox, params.w);
    var sum = 0.0;
    for (var iy = rows.x; iy < rows.y; iy++) {
        for (var ix = cols.x; ix < cols.y; ix++) {
            sum += x[base + iy * params.w + ix];
        }
    }
    y[t] = sum / f32(params.kernel * params.kernel);
}

@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// Output positions whose windows cover input index i along an axis of `out_size` outputs:
// o·stride - padding <= i < o·stride - padding + kernel.
fn covering(i: u32, out_size: u32) -> vec2<u32> {
    let reach = i + params.padding;
    let first = select(0u, (reach + 1u - params.kernel + params.stride - 1u) / params.stride, reach + 1u > params.kernel);
    let last = min(reach / params.stride + 1u, out_size);
    return vec2<u32>(first, last);
}

// One invocation per input element gathers the gradient of every window covering it (no
// two invocations write the same element). Max pooling finds each window's maximum again.
@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let in_plane = params.h * params.w;
    if t >= params.planes * in_plane {
        return;
    }
    let plane = t / in_plane;
    let at = t % in_plane;
    let iy = at / params.w;
    let ix = at % params.w;
    let base = plane * in_plane;
    let out_base = plane * params.ho * params.wo;
    let rows = covering(iy, params.ho);
    let cols = covering(ix, params.wo);
    var acc = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            let g = grad[out_base + oy * params.wo + ox];
            if OP == 1u {
                acc += g;
            } else if argmax(base, oy, ox) == at {
                acc += g;
            }
        }
    }
    if OP == 1u {
        acc = acc / f32(params.kernel * params.kernel);
    }
    dx[t] = acc;
}
