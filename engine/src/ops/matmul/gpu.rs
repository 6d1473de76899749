//! Launches of shaders/matmul.wgsl: tiled, register-blocked, staging tiles with 16-byte loads
//! when both operands allow it. Small products take 4 x 4 outputs per invocation; large ones,
//! where the adapter's limits allow, 8 x 8 with double-buffered tiles ([`Tiles::WIDE`]). F16
//! operands (either or both, on an adapter with shader-f16) take the same kernels compiled
//! for f16 storage, which widen each value as they stage it and write C in f32.
use super::MatmulDims;
use crate::gpu::{shaders, GpuDevice, GpuStorage, Launch, Params};
use crate::{DType, Result};

/// Tile shape, set through the shader's override constants (and `block`, its module): a
/// workgroup of `wg_x` x `wg_y` invocations computes a (block wg_y) x (block wg_x) tile of C,
/// stepping through k by `bk`, with `stages` (1 or 2) slices of the operands in workgroup
/// memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub bk: u32,
    pub wg_x: u32,
    pub wg_y: u32,
    /// Outputs per invocation along each side: 4 or 8.
    pub block: u32,
    pub stages: u32,
}

impl Tiles {
    /// 64 x 64 output tiles, 16 deep: 256 invocations and 8 KiB of workgroup memory, within
    /// WebGPU's guaranteed limits on every adapter.
    pub const DEFAULT: Tiles = Tiles {
        bk: 16,
        wg_x: 16,
        wg_y: 16,
        block: 4,
        stages: 1,
    };
    /// 128 x 128 output tiles, 8 x 8 per invocation, 16 deep and double-buffered: 32 KiB of
    /// workgroup memory, four times the arithmetic per staged value of `DEFAULT`. Untimed on
    /// a real GPU so far; the thresholds of [`Tiles::pick`] are first guesses.
    pub const WIDE: Tiles = Tiles {
        bk: 16,
        wg_x: 16,
        wg_y: 16,
        block: 8,
        stages: 2,
    };
    fn rows(self) -> u32 {
        self.block * self.wg_y
    }
    fn cols(self) -> u32 {
        self.block * self.wg_x
    }
    fn workgroup_bytes(self) -> u32 {
        4 * self.stages * self.bk * (self.rows() + self.cols())
    }

    /// `WIDE` where the adapter allows it and the product fills at least 64 of its tiles
    /// (fewer would leave most of a large GPU idle), with a shallower k-step (8) where 32 KiB
    /// of workgroup memory is too much; `DEFAULT` otherwise.
    pub fn pick(device: &GpuDevice, d: &MatmulDims) -> Tiles {
        let limits = device.limits();
        let mut wide = Tiles::WIDE;
        if wide.workgroup_bytes() > limits.max_compute_workgroup_storage_size {
            wide.bk = 8;
        }
        let tiles =
            d.batch * d.m.div_ceil(wide.rows() as usize) * d.n.div_ceil(wide.cols() as usize);
        let fits = wide.workgroup_bytes() <= limits.max_compute_workgroup_storage_size
            && wide.wg_x * wide.wg_y <= limits.max_compute_invocations_per_workgroup;
        if fits && d.m >= 128 && d.n >= 128 && d.k >= 64 && tiles >= 64 {
            wide
        } else {
            Tiles::DEFAULT
        }
    }
}

/// Whether every 4-element group along each operand's contiguous dimension starts at a
/// multiple of 4 elements, which `matmul_vec4` needs to read both as `vec4<f32>`. The
/// contiguous dimension is k for A and n for B, or m for a transposed A and k for a
/// transposed B; the batch strides (m·k, k·n) are then multiples of 4 too. A tile depth
/// that is not a multiple of 4 would split a vector between two steps of k. With k = 0 the
/// operands are empty, bound as one f32, too small for a vec4 array.
pub(crate) fn vec4_aligned(d: &MatmulDims, tiles: Tiles) -> bool {
    let a_contiguous = if d.trans_a { d.m } else { d.k };
    let b_contiguous = if d.trans_b { d.k } else { d.n };
    d.k > 0
        && a_contiguous.is_multiple_of(4)
        && b_contiguous.is_multiple_of(4)
        && tiles.bk.is_multiple_of(4)
}

pub(crate) fn matmul(a: &GpuStorage, b: &GpuStorage, d: &MatmulDims) -> Result<GpuStorage> {
    matmul_with_tiles(a, b, d, Tiles::pick(a.device(), d))
}

pub(crate) fn matmul_with_tiles(
    a: &GpuStorage,
    b: &GpuStorage,
    d: &MatmulDims,
    tiles: Tiles,
) -> Result<GpuStorage> {
    let device: &GpuDevice = a.device();
    let out = GpuStorage::alloc(device, d.batch * d.m * d.n, "matmul")?;
    let grid_x = d.n.div_ceil(tiles.cols() as usize) as u32;
    let grid_y = d.m.div_ceil(tiles.rows() as usize) as u32;
    let max = device.limits().max_compute_workgroups_per_dimension;
    if grid_x > max || grid_y > max {
        return Err(crate::Error::Gpu(format!(
            "matmul: a {}x{} result needs more workgroups than this adapter dispatches",
            d.m, d.n
        )));
    }
    let constants = [
        ("BK", tiles.bk as f64),
        ("WG_X", tiles.wg_x as f64),
        ("WG_Y", tiles.wg_y as f64),
        ("STAGES", tiles.stages as f64),
    ];
    let (a_f16, b_f16) = (a.dtype() == DType::F16, b.dtype() == DType::F16);
    let f16 = a_f16 || b_f16;
    let shader = shaders::matmul(a_f16, b_f16, tiles.block == 8);
    let entry = match (f16, vec4_aligned(d, tiles)) {
        (false, false) => "matmul",
        (false, true) => "matmul_vec4",
        (true, false) => "matmul_f16",
        (true, true) => "matmul_f16_vec4",
    };
    // Batch entries go along z, at most `max` per launch.
    let mut base = 0;
    while base < d.batch {
        let count = (d.batch - base).min(max as usize);
        let params = Params::new()
            .u32(d.m)
            .u32(d.n)
            .u32(d.k)
            .u32(if d.a_batched { d.m * d.k } else { 0 })
            .u32(if d.b_batched { d.k * d.n } else { 0 })
            .u32(d.trans_a as usize)
            .u32(d.trans_b as usize)
            .u32(base);
        device.launch(Launch {
            shader,
            entry,
            constants: &constants,
            params,
            reads: &[a.buffer(), b.buffer()],
            writes: &[out.buffer()],
            workgroups: [grid_x, grid_y, count as u32],
        })?;
        base += count;
    }
    Ok(out)
}
