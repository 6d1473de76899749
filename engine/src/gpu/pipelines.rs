//! Compiled kernels, each built once per device: a shader module per WGSL file, a bind group
//! layout per list of binding slots, a compute pipeline per (shader, entry point, override
//! constants, slots).
use std::borrow::Cow;
use std::collections::HashMap;

use super::errors::scoped;
use super::shaders::Shader;
use crate::Result;

/// How a kernel sees one binding; bindings are numbered in slice order from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// `var<uniform>`: the launch's small parameter block.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

#[derive(PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    /// (name, value bits): f64 is not `Hash`.
    constants: Vec<(&'static str, u64)>,
    slots: Vec<Slot>,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    layouts: HashMap<Vec<Slot>, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    pipelines: HashMap<PipelineKey, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
}

impl PipelineCache {
    /// The pipeline for `entry` of `shader` with these override constants, and the layout
    /// its bind group must follow.
    pub(crate) fn get(
        &mut self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        slots: &[Slot],
    ) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let key = PipelineKey {
            shader: shader.name,
            entry,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
            slots: slots.to_vec(),
        };
        if let Some(found) = self.pipelines.get(&key) {
            return Ok(found.clone());
        }
        let module = self.module(device, shader)?;
        let (group_layout, layout) = self.layout(device, slots);
        let what = format!("compiling {}:{entry} with {constants:?}", shader.name);
        let pipeline = scoped(device, &what, || {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    // Every kernel writes the workgroup memory it reads.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })?;
        self.pipelines
            .insert(key, (pipeline.clone(), group_layout.clone()));
        Ok((pipeline, group_layout))
    }

    fn module(&mut self, device: &wgpu::Device, shader: &Shader) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self.modules.get(shader.name) {
            return Ok(m.clone());
        }
        let what = format!("compiling {}", shader.name);
        let module = scoped(device, &what, || {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(shader.source)),
            })
        })?;
        self.modules.insert(shader.name, module.clone());
        Ok(module)
    }

    fn layout(
        &mut self,
        device: &wgpu::Device,
        slots: &[Slot],
    ) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        self.layouts
            .entry(slots.to_vec())
            .or_insert_with(|| {
                let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
                    .iter()
                    .enumerate()
                    .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                        binding: i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: match slot {
                                Slot::Uniform => wgpu::BufferBindingType::Uniform,
                                Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                                Slot::ReadWrite => {
                                    wgpu::BufferBindingType::Storage { read_only: false }
                                }
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    })
                    .collect();
                let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: None,
                    entries: &entries,
                });
                let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(&group)],
                    immediate_size: 0,
                });
                (group, pipeline)
            })
            .clone()
    }
}
