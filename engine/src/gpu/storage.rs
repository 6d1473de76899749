//! Buffers on the GPU: [`GpuBuffer`] is one pooled allocation (returned to the pool when
//! dropped); [`GpuStorage`] is a tensor's f32 values in one, shared by clones.
use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::GpuDevice;
use crate::Result;

pub struct GpuBuffer {
    device: GpuDevice,
    /// Taken by `drop` to return it to the pool.
    buffer: Option<wgpu::Buffer>,
    class: u64,
    /// The bytes in use, at most `class` (bindings cover exactly these).
    bytes: u64,
}

impl GpuBuffer {
    pub(crate) fn new(device: GpuDevice, buffer: wgpu::Buffer, class: u64, bytes: u64) -> Self {
        GpuBuffer {
            device,
            buffer: Some(buffer),
            class,
            bytes,
        }
    }

    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("only drop takes the buffer")
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    pub fn device(&self) -> &GpuDevice {
        &self.device
    }

    /// A buffer holding `data`. The copy is recorded in the command stream, so it lands after
    /// the work recorded so far, even when the pooled buffer was in use by that work.
    pub(crate) fn upload(device: &GpuDevice, data: &[u8], what: &str) -> Result<GpuBuffer> {
        let buffer = device.alloc(data.len() as u64, what)?;
        if data.is_empty() {
            return Ok(buffer);
        }
        let padded = data
            .len()
            .next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT as usize);
        let mut contents = data.to_vec();
        contents.resize(padded, 0);
        let staging = device
            .0
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("upload"),
                contents: &contents,
                usage: wgpu::BufferUsages::COPY_SRC,
            });
        device.record(what, |enc| {
            enc.copy_buffer_to_buffer(&staging, 0, buffer.raw(), 0, padded as u64)
        })?;
        Ok(buffer)
    }

    /// A buffer of u32 (indices and index lists for gather-like kernels).
    pub(crate) fn upload_u32(device: &GpuDevice, data: &[u32], what: &str) -> Result<GpuBuffer> {
        Self::upload(device, bytemuck::cast_slice(data), what)
    }

    pub(crate) fn read_bytes(&self) -> Result<Vec<u8>> {
        self.device.read_back(self.raw(), self.bytes)
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            if let Ok(mut pool) = self.device.0.pool.lock() {
                pool.give_back(buffer, self.class);
            }
        }
    }
}

/// A tensor's values on the GPU: `len` f32 in a buffer that is never written again (see the
/// module docs of `gpu`), so clones share it.
#[derive(Clone)]
pub struct GpuStorage {
    buffer: Arc<GpuBuffer>,
    len: usize,
}

impl std::fmt::Debug for GpuStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuStorage({} f32 on {})", self.len, self.device())
    }
}

impl GpuStorage {
    /// Storage for `len` f32 that a kernel is about to write.
    pub(crate) fn alloc(device: &GpuDevice, len: usize, what: &str) -> Result<GpuStorage> {
        Ok(GpuStorage {
            buffer: Arc::new(device.alloc(4 * len as u64, what)?),
            len,
        })
    }

    pub fn from_slice(device: &GpuDevice, data: &[f32]) -> Result<GpuStorage> {
        Ok(GpuStorage {
            buffer: Arc::new(GpuBuffer::upload(
                device,
                bytemuck::cast_slice(data),
                "uploading a tensor",
            )?),
            len: data.len(),
        })
    }

    pub fn to_vec(&self) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.buffer.read_bytes()?))
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn device(&self) -> &GpuDevice {
        self.buffer.device()
    }
    pub fn buffer(&self) -> &GpuBuffer {
        &self.buffer
    }
}
