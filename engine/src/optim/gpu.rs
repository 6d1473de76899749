//! The optimisers' updates on the GPU (shaders/optim.wgsl). Buffers are never written in
//! place: each update writes the new parameter and state into fresh buffers and replaces the
//! old storages with them, so every view of a parameter sees the new values.
use super::adamw::AdamWUpdate;
use super::sgd::SgdUpdate;
use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::Result;

/// The parameter block of optim.wgsl: n, then SGD's scalars, then AdamW's.
fn params(n: usize, sgd: Option<&SgdUpdate>, adamw: Option<&AdamWUpdate>) -> Params {
    let mut p = Params::new().u32(n);
    p = match sgd {
        Some(u) => p
            .f32(-u.lr)
            .f32(u.weight_decay)
            .f32(u.momentum)
            .u32(u.nesterov as usize),
        None => p.f32(0.0).f32(0.0).f32(0.0).u32(0),
    };
    match adamw {
        Some(u) => {
            // Scalars in f64, as torch computes them in Python floats.
            let step = u.step as f64;
            let bias_correction1 = 1.0 - u.beta1.powf(step);
            let bias_correction2 = 1.0 - u.beta2.powf(step);
            p.f32(1.0 - u.lr * u.weight_decay)
                .f32(1.0 - u.beta1)
                .f32(u.beta2)
                .f32(1.0 - u.beta2)
                .f32(-u.lr / bias_correction1)
                .f32(bias_correction2.sqrt())
                .f32(u.eps)
        }
        None => (0..7).fold(p, |p, _| p.f32(0.0)),
    }
}

pub(super) fn adamw(
    p: &mut GpuStorage,
    g: &GpuStorage,
    m: &mut GpuStorage,
    v: &mut GpuStorage,
    u: &AdamWUpdate,
) -> Result<()> {
    let device = p.device().clone();
    let n = p.len();
    let (p_new, m_new, v_new) = (
        GpuStorage::alloc(&device, n, "adamw")?,
        GpuStorage::alloc(&device, n, "adamw")?,
        GpuStorage::alloc(&device, n, "adamw")?,
    );
    device.launch(Launch {
        shader: &shaders::OPTIM,
        entry: "adamw",
        constants: &[],
        params: params(n, None, Some(u)),
        reads: &[p.buffer(), g.buffer(), m.buffer(), v.buffer()],
        writes: &[p_new.buffer(), m_new.buffer(), v_new.buffer()],
        workgroups: linear_grid(&device, n, 256)?,
    })?;
    (*p, *m, *v) = (p_new, m_new, v_new);
    Ok(())
}

pub(super) fn sgd(
    p: &mut GpuStorage,
    g: &GpuStorage,
    buffer: Option<&mut GpuStorage>,
    u: &SgdUpdate,
) -> Result<()> {
    let device = p.device().clone();
    let n = p.len();
    let p_new = GpuStorage::alloc(&device, n, "sgd")?;
    let workgroups = linear_grid(&device, n, 256)?;
    match buffer {
        None => {
            device.launch(Launch {
                shader: &shaders::OPTIM,
                entry: "sgd",
                constants: &[],
                params: params(n, Some(u), None),
                reads: &[p.buffer(), g.buffer()],
                writes: &[p_new.buffer()],
                workgroups,
            })?;
        }
        Some(buffer) => {
            let buffer_new = GpuStorage::alloc(&device, n, "sgd")?;
            device.launch(Launch {
                shader: &shaders::OPTIM,
                entry: "sgd_momentum",
                constants: &[],
                params: params(n, Some(u), None),
                reads: &[p.buffer(), g.buffer(), buffer.buffer()],
                writes: &[p_new.buffer(), buffer_new.buffer()],
                workgroups,
            })?;
            *buffer = buffer_new;
        }
    }
    *p = p_new;
    Ok(())
}
