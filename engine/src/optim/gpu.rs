//! The optimisers' updates on the GPU (shaders/optim.wgsl). Buffers are never written in
//! place: each update writes the new parameter and state into fresh buffers and replaces the
//! old storages with them, so every view of a parameter sees the new values.
use super::adamw::AdamWUpdate;
use super::sgd::SgdUpdate;
use crate::gpu::{linear_grid, shaders, GpuBuffer, GpuStorage, Launch, Params};
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
                .f32(u.lr)
                .f32(u.beta1)
                .f32(step)
        }
        None => (0..10).fold(p, |p, _| p.f32(0.0)),
    }
}

/// AdamW on `g` scaled by the guard state's factor (clip / loss scale), or nothing at all (the
/// new buffers hold the old values) on a skipped step and once the guard has seen a bad step
/// (see `guard.rs`). `u.step` counts the skipped steps too: the kernel subtracts the guard's
/// count of them.
pub(super) fn adamw(
    p: &mut GpuStorage,
    g: &GpuStorage,
    m: &mut GpuStorage,
    v: &mut GpuStorage,
    guard: &GpuStorage,
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
        reads: &[
            p.buffer(),
            g.buffer(),
            m.buffer(),
            v.buffer(),
            guard.buffer(),
        ],
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

/// Gradients one `sum_squares` launch reads (shaders/guard.wgsl): with the state (for the
/// loss scale) and its scratch output, the eight storage bindings every adapter allows.
const SQUARES_PER_LAUNCH: usize = 6;

/// The guard's check on the device (`guard.rs`, shaders/guard.wgsl): the sums of squares of
/// the unscaled gradients, six per launch, into a scratch buffer, then one single-invocation
/// kernel for the new state. `growth_interval` 0: no loss scaling.
pub(super) fn guard_check(
    state: &GpuStorage,
    loss: &GpuStorage,
    grads: &[&GpuStorage],
    step: usize,
    max_norm: Option<f64>,
    growth_interval: usize,
) -> Result<GpuStorage> {
    let device = state.device().clone();
    let guard_params = |slot: usize, parts: usize, lens: &[usize]| {
        Params::new()
            .u32(slot)
            .u32(step)
            .u32(parts)
            .u32(max_norm.is_some() as usize)
            .f32(max_norm.unwrap_or(0.0))
            .u32(growth_interval)
            .array(lens)
    };
    let partials = GpuStorage::alloc(&device, grads.len().max(1), "gradient norm")?;
    for (launch, chunk) in grads.chunks(SQUARES_PER_LAUNCH).enumerate() {
        let lens: Vec<usize> = chunk.iter().map(|g| g.len()).collect();
        let mut reads: Vec<&GpuBuffer> = chunk.iter().map(|g| g.buffer()).collect();
        reads.resize(SQUARES_PER_LAUNCH, chunk[0].buffer());
        reads.push(state.buffer());
        device.launch(Launch {
            shader: &shaders::GUARD,
            entry: "sum_squares",
            constants: &[],
            params: guard_params(launch * SQUARES_PER_LAUNCH, 0, &lens),
            reads: &reads,
            writes: &[partials.buffer()],
            workgroups: [chunk.len() as u32, 1, 1],
        })?;
    }
    let next = GpuStorage::alloc(&device, state.len(), "step guard")?;
    device.launch(Launch {
        shader: &shaders::GUARD,
        entry: "check",
        constants: &[],
        params: guard_params(0, grads.len(), &[]),
        reads: &[state.buffer(), loss.buffer(), partials.buffer()],
        writes: &[next.buffer()],
        workgroups: [1, 1, 1],
    })?;
    Ok(next)
}
