use super::Mask;
use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::Result;

/// x * scale where the mask keeps an element's group, else 0.
pub(crate) fn masked(x: &GpuStorage, mask: &Mask) -> Result<GpuStorage> {
    let device = x.device();
    let out = GpuStorage::alloc(device, x.len(), "dropout")?;
    if mask.group == 0 {
        // Empty samples: nothing to mask (and no group to divide by).
        return Ok(out);
    }
    device.launch(Launch {
        shader: &shaders::DROPOUT,
        entry: "masked",
        constants: &[],
        params: Params::new()
            .u32(x.len())
            .u32(mask.key as usize)
            .u32(mask.threshold as usize)
            .u32(mask.group)
            .f32(mask.scale)
            .u32(mask.place.first)
            // u32::MAX for "one range": no tensor has that many samples.
            .u32(mask.place.split.min(u32::MAX as usize))
            .u32(mask.place.second),
        reads: &[x.buffer()],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, x.len(), 256)?,
    })?;
    Ok(out)
}
