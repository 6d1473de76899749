//! Buffers on the GPU: [`GpuBuffer`] is one pooled allocation (returned to the pool when
//! dropped); [`GpuStorage`] is a tensor's f32 (or f16) values in one, shared by clones.
use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::GpuDevice;
use crate::{DType, Error, Result};

pub struct GpuBuffer {
    device: GpuDevice,
    /// Taken by `drop` to return it to the pool.
    buffer: Option<wgpu::Buffer>,
    class: u64,
    /// The bytes in use, at most `class` (bindings cover exactly these).
    bytes: u64,
    /// F16 for a tensor's f16 storage, else F32 (also for index lists): kernels that read
    /// f32 refuse f16 buffers (see `launch`).
    dtype: DType,
    /// The op that allocated it as its result, named when an f16 input reaches it.
    made_by: &'static str,
}

impl GpuBuffer {
    pub(crate) fn new(device: GpuDevice, buffer: wgpu::Buffer, class: u64, bytes: u64) -> Self {
        GpuBuffer {
            device,
            buffer: Some(buffer),
            class,
            bytes,
            dtype: DType::F32,
            made_by: "",
        }
    }

    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }
    pub(crate) fn made_by(&self) -> &'static str {
        self.made_by
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
        device.0.counters.upload(data.len() as u64);
        Ok(buffer)
    }

    /// A buffer of u32 (indices and index lists for gather-like kernels).
    pub(crate) fn upload_u32(device: &GpuDevice, data: &[u32], what: &str) -> Result<GpuBuffer> {
        Self::upload(device, bytemuck::cast_slice(data), what)
    }

    /// Indices or class labels as the u32 the kernels read.
    pub(crate) fn upload_indices(
        device: &GpuDevice,
        indices: &[usize],
        what: &str,
    ) -> Result<GpuBuffer> {
        let as_u32: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        Self::upload_u32(device, &as_u32, what)
    }

    pub(crate) fn read_bytes(&self) -> Result<Vec<u8>> {
        self.device.read_back(self.raw(), self.bytes)
    }
}

/// An op's index list (labels, gather indices) where its kernels read it: on the host for
/// the CPU, and for a GPU the buffer the forward uploaded, kept so that the backward sends
/// nothing from the host.
pub(crate) enum Indices {
    Host(Vec<usize>),
    Gpu(GpuBuffer),
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

/// A tensor's values on the GPU: `len` f32 (or f16, two to a 32-bit word, the last word
/// padded) in a buffer that is never written again (see the module docs of `gpu`), so clones
/// share it.
#[derive(Clone)]
pub struct GpuStorage {
    buffer: Arc<GpuBuffer>,
    len: usize,
}

impl std::fmt::Debug for GpuStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuStorage({} {:?} on {})",
            self.len,
            self.dtype(),
            self.device()
        )
    }
}

impl GpuStorage {
    /// Storage for `len` f32 that a kernel of op `what` is about to write.
    pub(crate) fn alloc(device: &GpuDevice, len: usize, what: &'static str) -> Result<GpuStorage> {
        Self::alloc_typed(device, len, DType::F32, what)
    }

    /// Storage for `len` f32 or f16; f16 is rounded up to whole 32-bit words, which storage
    /// bindings need.
    pub(crate) fn alloc_typed(
        device: &GpuDevice,
        len: usize,
        dtype: DType,
        what: &'static str,
    ) -> Result<GpuStorage> {
        let bytes =
            match dtype {
                DType::F32 => 4 * len as u64,
                DType::F16 => (2 * len as u64).next_multiple_of(4),
                DType::F64 => return Err(Error::invalid(
                    what,
                    "F64 tensors cannot live on a GPU; convert with .to_dtype(DType::F32) first",
                )),
            };
        let mut buffer = device.alloc(bytes, what)?;
        buffer.dtype = dtype;
        buffer.made_by = what;
        Ok(GpuStorage {
            buffer: Arc::new(buffer),
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

    /// The values as f32 (f16 storage is widened on the host, exactly).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let bytes = self.buffer.read_bytes()?;
        Ok(match self.dtype() {
            DType::F16 => bytes
                .chunks_exact(2)
                .take(self.len)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => bytemuck::pod_collect_to_vec(&bytes),
        })
    }

    pub fn dtype(&self) -> DType {
        self.buffer.dtype
    }

    /// Elements `start .. start + len` as storage of their own (a copy).
    pub(crate) fn slice(&self, start: usize, len: usize, what: &'static str) -> Result<GpuStorage> {
        let out = GpuStorage::alloc(self.device(), len, what)?;
        self.copy_into(&out, start, 0, len, what)?;
        Ok(out)
    }

    /// Copies `len` elements from `start` into `dst` at `dst_start`. Only for filling a result
    /// that no one has seen yet: buffers are never changed once an op has returned them.
    pub(crate) fn copy_into(
        &self,
        dst: &GpuStorage,
        start: usize,
        dst_start: usize,
        len: usize,
        what: &str,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if self.dtype() != DType::F32 || dst.dtype() != DType::F32 {
            return Err(Error::Gpu(format!(
                "{what}: copies f32 storage only; cast F16 tensors with .to_dtype(DType::F32) first"
            )));
        }
        self.device().record(what, |enc| {
            enc.copy_buffer_to_buffer(
                self.buffer.raw(),
                4 * start as u64,
                dst.buffer.raw(),
                4 * dst_start as u64,
                4 * len as u64,
            )
        })
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
