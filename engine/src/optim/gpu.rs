//! The optimisers' updates on the GPU (shaders/optim.wgsl). Buffers are never written in
//! place: each update writes the new parameter and state into fresh buffers and replaces the
//! old storages with them, so every view of a parameter sees the new values.
use super::adamw::AdamWUpdate;
use super::sgd::SgdUpdate;
use crate::gpu::{linear_grid, shaders, GpuBuffer, GpuDevice, GpuStorage, Launch, Params};
use crate::Result;

/// The parameter block of optim.wgsl.
fn sgd_params(n: usize, u: &SgdUpdate) -> Params {
    Params::new()
        .u32(n)
        .f32(-u.lr)
        .f32(u.weight_decay)
        .f32(u.momentum)
        .u32(u.nesterov as usize)
}

/// One parameter's share of an AdamW dispatch.
pub(super) struct AdamWSlot<'a> {
    pub p: &'a mut GpuStorage,
    pub g: &'a GpuStorage,
    pub m: &'a mut GpuStorage,
    pub v: &'a mut GpuStorage,
    pub u: AdamWUpdate,
}

/// Parameters per AdamW dispatch on this adapter: seven storage bindings each, plus the guard.
pub(super) fn adamw_slots_per_launch(device: &GpuDevice) -> usize {
    let bindings = device.limits().max_storage_buffers_per_shader_stage as usize;
    (bindings.saturating_sub(1) / 7).clamp(1, shaders::ADAMW_MAX_SLOTS)
}

/// AdamW on each slot's `g` scaled by the guard state's factor (clip / loss scale), or nothing
/// at all (the new buffers hold the old values) on a step skipped by loss scaling and once the
/// guard has seen a bad step (see `guard.rs`); as
/// many parameters per dispatch as the adapter's storage bindings allow (shaders/adamw.wgsl).
pub(super) fn adamw(slots: &mut [AdamWSlot<'_>], guard: &GpuStorage) -> Result<()> {
    let device = guard.device().clone();
    for chunk in slots.chunks_mut(adamw_slots_per_launch(&device)) {
        let mut ends = Vec::with_capacity(chunk.len());
        let (mut decay, mut neg_step_size, mut bias_correction2_sqrt) = (vec![], vec![], vec![]);
        // `u.step` counts the skipped steps too: the kernel subtracts the guard's count.
        let (mut lr, mut steps) = (vec![], vec![]);
        let mut total = 0;
        for s in chunk.iter() {
            total += s.p.len();
            ends.push(total);
            // Scalars in f64, as torch computes them in Python floats.
            let step = s.u.step as f64;
            decay.push(1.0 - s.u.lr * s.u.weight_decay);
            neg_step_size.push(-s.u.lr / (1.0 - s.u.beta1.powf(step)));
            bias_correction2_sqrt.push((1.0 - s.u.beta2.powf(step)).sqrt());
            lr.push(s.u.lr);
            steps.push(step);
        }
        if total == 0 {
            continue;
        }
        let u = chunk[0].u;
        let mut news = Vec::with_capacity(3 * chunk.len());
        for s in chunk.iter() {
            for _ in 0..3 {
                news.push(GpuStorage::alloc(&device, s.p.len(), "adamw")?);
            }
        }
        let mut reads = vec![guard.buffer()];
        for s in chunk.iter() {
            reads.extend([s.p.buffer(), s.g.buffer(), s.m.buffer(), s.v.buffer()]);
        }
        let writes: Vec<&GpuBuffer> = news.iter().map(|n| n.buffer()).collect();
        device.launch(Launch {
            shader: shaders::adamw(chunk.len()),
            entry: "adamw_slots",
            constants: &[],
            params: Params::new()
                .u32(total)
                .f32(1.0 - u.beta1)
                .f32(u.beta2)
                .f32(1.0 - u.beta2)
                .f32(u.eps)
                .f32(u.beta1)
                .array(&ends)
                .array_f32(&decay)
                .array_f32(&neg_step_size)
                .array_f32(&bias_correction2_sqrt)
                .array_f32(&lr)
                .array_f32(&steps),
            reads: &reads,
            writes: &writes,
            workgroups: linear_grid(&device, total, 256)?,
        })?;
        let mut news = news.into_iter();
        for s in chunk.iter_mut() {
            *s.p = news.next().expect("three per slot");
            *s.m = news.next().expect("three per slot");
            *s.v = news.next().expect("three per slot");
        }
    }
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
                params: sgd_params(n, u),
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
                params: sgd_params(n, u),
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

/// Gradients per `sum_squares` launch on this adapter: one storage binding each, plus the
/// guard state (for the loss scale) and the scratch output.
pub(super) fn squares_per_launch(device: &GpuDevice) -> usize {
    let bindings = device.limits().max_storage_buffers_per_shader_stage as usize;
    bindings
        .saturating_sub(2)
        .clamp(1, shaders::GUARD_MAX_SLOTS)
}

/// The guard's check on the device (`guard.rs`, shaders/guard.wgsl): the sums of squares of
/// the unscaled gradients, as many per launch as the adapter binds, into a scratch buffer,
/// then one single-invocation kernel for the new state. `growth_interval` 0: no loss scaling.
pub(super) fn guard_check(
    state: &GpuStorage,
    loss: &GpuStorage,
    grads: &[&GpuStorage],
    step: usize,
    max_norm: Option<f64>,
    growth_interval: usize,
) -> Result<GpuStorage> {
    let device = state.device().clone();
    let per_launch = squares_per_launch(&device);
    let shader = shaders::guard(per_launch);
    let guard_params = |slot: usize, parts: usize, lens: &[usize]| {
        Params::new()
            .u32(slot)
            .u32(step)
            .u32(parts)
            .u32(max_norm.is_some() as usize)
            .f32(max_norm.unwrap_or(0.0))
            .u32(growth_interval)
            .array_of(lens, shaders::GUARD_MAX_SLOTS + 1)
    };
    let partials = GpuStorage::alloc(&device, grads.len().max(1), "gradient norm")?;
    for (launch, chunk) in grads.chunks(per_launch).enumerate() {
        let lens: Vec<usize> = chunk.iter().map(|g| g.len()).collect();
        // The last launch binds its first gradient again in the slots it does not use.
        let mut reads: Vec<&GpuBuffer> = chunk.iter().map(|g| g.buffer()).collect();
        reads.resize(per_launch, chunk[0].buffer());
        reads.push(state.buffer());
        device.launch(Launch {
            shader,
            entry: "sum_squares",
            constants: &[],
            params: guard_params(launch * per_launch, 0, &lens),
            reads: &reads,
            writes: &[partials.buffer()],
            workgroups: [chunk.len() as u32, 1, 1],
        })?;
    }
    let next = GpuStorage::alloc(&device, state.len(), "step guard")?;
    device.launch(Launch {
        shader,
        entry: "check",
        constants: &[],
        params: guard_params(0, grads.len(), &[]),
        reads: &[state.buffer(), loss.buffer(), partials.buffer()],
        writes: &[next.buffer()],
        workgroups: [1, 1, 1],
    })?;
    Ok(next)
}
