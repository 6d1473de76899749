//! Launching a kernel: what an op's `gpu.rs` calls.
//!
//! Binding convention, shared by every WGSL kernel: binding 0 is the uniform parameter
//! block, then the buffers the kernel reads (`var<storage, read>`), then those it writes
//! (`var<storage, read_write>`), in the order the [`Launch`] lists them.
use std::num::NonZeroU64;

use wgpu::util::DeviceExt;

use super::pipelines::Slot;
use super::shaders::Shader;
use super::{GpuBuffer, GpuDevice};
use crate::{DType, Error, Result};

/// Highest rank a shape/stride parameter array holds (`array<vec4<u32>, 2>` in WGSL).
pub(crate) const MAX_RANK: usize = 8;

pub(crate) struct Launch<'a> {
    pub shader: &'static Shader,
    pub entry: &'static str,
    /// Values of the shader's `override` constants (each combination is its own pipeline).
    pub constants: &'a [(&'static str, f64)],
    pub params: Params,
    pub reads: &'a [&'a GpuBuffer],
    pub writes: &'a [&'a GpuBuffer],
    pub workgroups: [u32; 3],
}

/// The uniform parameter block of a launch, built in the order of the WGSL `Params` struct:
/// scalar fields (`u32`, `f32`) first, then shape-like arrays of up to [`MAX_RANK`] values.
/// Every field of the struct must be given, even those an entry point does not read: the
/// binding must be as large as the struct.
#[derive(Default)]
pub(crate) struct Params(Vec<u32>);

impl Params {
    pub fn new() -> Self {
        Params(Vec::new())
    }
    pub fn u32(mut self, v: usize) -> Self {
        self.0.push(v as u32);
        self
    }
    pub fn f32(mut self, v: f64) -> Self {
        self.0.push((v as f32).to_bits());
        self
    }
    /// An `array<vec4<u32>, 2>` field: 16-byte aligned, unused entries zero.
    pub fn array(mut self, values: &[usize]) -> Self {
        debug_assert!(values.len() <= MAX_RANK, "callers check ranks");
        self.pad();
        let mut field = [0u32; MAX_RANK];
        for (f, &v) in field.iter_mut().zip(values) {
            *f = v as u32;
        }
        self.0.extend(field);
        self
    }
    /// An `array<vec4<u32>, len / 4>` field (len a multiple of 4), unused entries zero.
    pub fn array_of(mut self, values: &[usize], len: usize) -> Self {
        debug_assert!(
            values.len() <= len && len.is_multiple_of(4),
            "callers check lengths"
        );
        self.pad();
        let start = self.0.len();
        self.0.resize(start + len, 0);
        for (f, &v) in self.0[start..].iter_mut().zip(values) {
            *f = v as u32;
        }
        self
    }
    /// An `array<vec4<f32>, 2>` field, as [`Params::array`].
    pub fn array_f32(mut self, values: &[f64]) -> Self {
        debug_assert!(values.len() <= MAX_RANK, "callers check lengths");
        self.pad();
        let mut field = [0u32; MAX_RANK];
        for (f, &v) in field.iter_mut().zip(values) {
            *f = (v as f32).to_bits();
        }
        self.0.extend(field);
        self
    }
    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
    fn into_bytes(mut self) -> Vec<u8> {
        self.pad();
        if self.0.is_empty() {
            self.0.extend([0; 4]);
        }
        bytemuck::cast_slice(&self.0).to_vec()
    }
}

/// Workgroups covering `threads` invocations in groups of `group_size`, spread over x and y
/// when x alone would exceed the per-dimension limit. Kernels recover the flat index as
/// `gid.x + gid.y * nwg.x * group_size`, and skip indices past the end.
pub(crate) fn linear_grid(device: &GpuDevice, threads: usize, group_size: u32) -> Result<[u32; 3]> {
    let groups = threads.div_ceil(group_size as usize);
    let max = device.limits().max_compute_workgroups_per_dimension as usize;
    let x = groups.min(max);
    let y = if x == 0 { 0 } else { groups.div_ceil(x) };
    if y > max {
        return Err(Error::Gpu(format!(
            "{threads} invocations exceed the dispatch limit of this adapter"
        )));
    }
    Ok([x as u32, y as u32, 1])
}

impl GpuDevice {
    /// Records one kernel launch (nothing runs until the batch is submitted).
    pub(crate) fn launch(&self, l: Launch<'_>) -> Result<()> {
        // F16 storage reaches only the kernels written for it, whose entry points say so in
        // their names; any other would read its bits as f32. The op is named by the result
        // buffer it allocated.
        if !l.entry.contains("f16") && l.reads.iter().any(|b| b.dtype() == DType::F16) {
            let op = l.writes.first().map_or("", |b| b.made_by());
            let op = if op.is_empty() { l.entry } else { op };
            return Err(crate::dtype::f16_unsupported(
                op,
                &format!("by {op} (kernel {}:{})", l.shader.name, l.entry),
            ));
        }
        if l.workgroups.contains(&0) {
            return Ok(());
        }
        self.0.counters.dispatch(l.shader.name, l.entry);
        if self.0.count_only {
            return Ok(());
        }
        let mut slots = vec![Slot::Uniform];
        slots.extend(l.reads.iter().map(|_| Slot::Read));
        slots.extend(l.writes.iter().map(|_| Slot::ReadWrite));
        let (pipeline, layout) = self.0.pipelines.lock().unwrap().get(
            &self.0.device,
            l.shader,
            l.entry,
            l.constants,
            &slots,
        )?;
        let device = &self.0.device;
        let params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(l.entry),
            contents: &l.params.into_bytes(),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: params.as_entire_binding(),
        }];
        for (i, b) in l.reads.iter().chain(l.writes).enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.raw(),
                    offset: 0,
                    // Exactly the bytes in use, so WGSL's arrayLength sees the tensor's size.
                    size: NonZeroU64::new(b.bytes().max(4)),
                }),
            });
        }
        let what = format!("{}:{}", l.shader.name, l.entry);
        self.record(&what, |encoder| {
            let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &entries,
            });
            // The label names the kernel in errors found when the batch is submitted.
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&what),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            let [x, y, z] = l.workgroups;
            pass.dispatch_workgroups(x, y, z);
        })
    }
}
