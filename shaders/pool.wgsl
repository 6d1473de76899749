// 2-D pooling over the channel planes of x [N,C,H,W]: `planes` = N·C planes of H x W, each
// pooled to Ho x Wo with a kernel x kernel window, one stride and zero padding.
// Max pooling: padding is -inf; the first maximum in row-major order wins ties, a NaN wins
// outright. The forward pass writes where each maximum is, and the backward pass sends the
// gradient there: it never searches the windows again, so it needs no saved input and stays
// on the forward's maximum when that input would be kept in f16 (rounding can tie a window).
// Average pooling counts padding as zeros: every window divides by kernel².

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

// Bindings by entry point (each entry's layout is its reads, then its writes, from 1):
//   max_forward:  x -> y, positions        avg_forward:  x -> y
//   max_backward: positions_in, grad -> dx avg_backward: grad_avg -> dx_avg
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// In-plane index (iy·W + ix) of each output's maximum.
@group(0) @binding(3) var<storage, read_write> positions: array<u32>;

@group(0) @binding(1) var<storage, read> positions_in: array<u32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@group(0) @binding(1) var<storage, read> grad_avg: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx_avg: array<f32>;

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

// Output positions whose windows cover input index i along an axis of `out_size` outputs:
// o·stride - padding <= i < o·stride - padding + kernel.
fn covering(i: u32, out_size: u32) -> vec2<u32> {
    let reach = i + params.padding;
    let first = select(0u, (reach + 1u - params.kernel + params.stride - 1u) / params.stride, reach + 1u > params.kernel);
    let last = min(reach / params.stride + 1u, out_size);
    return vec2<u32>(first, last);
}

// The input window of output element t: its plane's offset in x and the rows and columns
// it covers, padding cut off; `inside` is false past the last output.
struct Window {
    inside: bool,
    base: u32,
    rows: vec2<u32>,
    cols: vec2<u32>,
}

fn window_of(t: u32) -> Window {
    let out_plane = params.ho * params.wo;
    let plane = t / out_plane;
    let oy = (t % out_plane) / params.wo;
    let ox = t % params.wo;
    return Window(plane < params.planes, plane * params.h * params.w, window(oy, params.h), window(ox, params.w));
}

@compute @workgroup_size(WG)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let win = window_of(t);
    if !win.inside {
        return;
    }
    var best = win.rows.x * params.w + win.cols.x;
    var best_value = x[win.base + best];
    for (var iy = win.rows.x; iy < win.rows.y; iy++) {
        for (var ix = win.cols.x; ix < win.cols.y; ix++) {
            let v = x[win.base + iy * params.w + ix];
            if v > best_value || (is_nan(v) && !is_nan(best_value)) {
                best = iy * params.w + ix;
                best_value = v;
            }
        }
    }
    y[t] = best_value;
    positions[t] = best;
}

@compute @workgroup_size(WG)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let win = window_of(t);
    if !win.inside {
        return;
    }
    var sum = 0.0;
    for (var iy = win.rows.x; iy < win.rows.y; iy++) {
        for (var ix = win.cols.x; ix < win.cols.y; ix++) {
            sum += x[win.base + iy * params.w + ix];
        }
    }
    y[t] = sum / f32(params.kernel * params.kernel);
}

// The backward passes run one invocation per input element, gathering the gradient of every
// window that covers it: no two invocations write the same element.

// The outputs whose windows cover input element t: rows x cols of the plane at `base` in the
// output, and t's in-plane index `at`; `inside` is false past the last input.
struct Covered {
    inside: bool,
    at: u32,
    base: u32,
    rows: vec2<u32>,
    cols: vec2<u32>,
}

fn covered_by(t: u32) -> Covered {
    let in_plane = params.h * params.w;
    let at = t % in_plane;
    return Covered(
        t < params.planes * in_plane,
        at,
        (t / in_plane) * params.ho * params.wo,
        covering(at / params.w, params.ho),
        covering(at % params.w, params.wo),
    );
}

@compute @workgroup_size(WG)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let c = covered_by(t);
    if !c.inside {
        return;
    }
    var acc = 0.0;
    for (var oy = c.rows.x; oy < c.rows.y; oy++) {
        for (var ox = c.cols.x; ox < c.cols.y; ox++) {
            let o = c.base + oy * params.wo + ox;
            if positions_in[o] == c.at {
                acc += grad[o];
            }
        }
    }
    dx[t] = acc;
}

@compute @workgroup_size(WG)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let c = covered_by(t);
    if !c.inside {
        return;
    }
    var acc = 0.0;
    for (var oy = c.rows.x; oy < c.rows.y; oy++) {
        for (var ox = c.cols.x; ox < c.cols.y; ox++) {
            acc += grad_avg[c.base + oy * params.wo + ox];
        }
    }
    dx_avg[t] = acc / f32(params.kernel * params.kernel);
}
