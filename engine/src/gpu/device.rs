//! An open GPU: the wgpu device and queue with everything kept per device (buffer pool,
//! pipeline cache, command recorder, error sink). `GpuDevice` is a handle: clones share one
//! device, and two handles are equal only when they are the same device.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::adapters::{self, AdapterSummary};
use super::counters::{Counters, DispatchesByKernel, GpuCounters};
use super::errors::{scoped, ErrorSink};
use super::pipelines::PipelineCache;
use super::pool::{size_class, BufferPool, MemoryStats};
use super::recorder::Recorder;
use super::storage::GpuBuffer;
use crate::{Error, Result};

#[derive(Clone)]
pub struct GpuDevice(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) info: AdapterSummary,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    pub(crate) pool: Mutex<BufferPool>,
    pub(crate) pipelines: Mutex<PipelineCache>,
    pub(crate) recorder: Mutex<Recorder>,
    pub(crate) errors: Arc<ErrorSink>,
    pub(crate) counters: Counters,
    /// The submission that ended the last training step (`end_step`).
    last_step: Mutex<Option<wgpu::SubmissionIndex>>,
    /// Launches are counted but not recorded (`CLCE_GPU_COUNT_ONLY=1`): counts the dispatches
    /// of a step whose kernels would take minutes on a software adapter. Every value is then
    /// garbage; only the counters mean anything.
    pub(crate) count_only: bool,
    /// Submit and check after every command (`CLCE_GPU_CHECK=1`): slow, but an error found
    /// when a batch is submitted then names the kernel that caused it.
    pub(crate) check_each: bool,
}

impl PartialEq for GpuDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for GpuDevice {}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gpu:{} ({})", self.0.info.index, self.0.info.name)
    }
}

impl GpuDevice {
    /// Opens adapter `index` of the ranking (`gpu:index`). Each adapter is opened once per
    /// process; later calls return the same device.
    pub fn open(index: usize) -> Result<GpuDevice> {
        static OPEN: OnceLock<Mutex<HashMap<usize, GpuDevice>>> = OnceLock::new();
        let mut open = OPEN.get_or_init(Default::default).lock().unwrap();
        if let Some(d) = open.get(&index) {
            return Ok(d.clone());
        }
        let d = GpuDevice::create(index)?;
        open.insert(index, d.clone());
        Ok(d)
    }

    /// A new device on adapter `index`, not shared with `open`'s (tests that break a device
    /// on purpose use one of their own).
    pub(crate) fn create(index: usize) -> Result<GpuDevice> {
        let check_each = std::env::var("CLCE_GPU_CHECK").is_ok_and(|v| v == "1");
        GpuDevice::create_with(index, check_each)
    }

    pub(crate) fn create_with(index: usize, check_each: bool) -> Result<GpuDevice> {
        let ranked = adapters::ranked();
        let adapter = ranked.get(index).ok_or_else(|| {
            Error::Gpu(if ranked.is_empty() {
                "no GPU adapter found (wgpu found no Vulkan, Metal, DX12 or GL device that runs compute shaders)".to_string()
            } else {
                format!(
                    "gpu:{index} does not exist; {} adapter(s) found (see `clce-cli devices`)",
                    ranked.len()
                )
            })
        })?;
        let info = adapters::summary(index, adapter);
        // Ask for everything the adapter offers: the defaults cap storage bindings at 128 MiB.
        let limits = adapter.limits();
        // shader-f16 where the adapter has it: the f16-storage matmul needs it.
        let features = adapter.features() & wgpu::Features::SHADER_F16;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("clce"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("opening {}: {e}", info.name)))?;
        let errors = ErrorSink::install(&device);
        let d = GpuDevice(Arc::new(Inner {
            info,
            device,
            queue,
            limits,
            pool: Default::default(),
            pipelines: Default::default(),
            recorder: Default::default(),
            errors,
            counters: Default::default(),
            last_step: Mutex::new(None),
            count_only: std::env::var("CLCE_GPU_COUNT_ONLY").is_ok_and(|v| v == "1"),
            check_each,
        }));
        Ok(d)
    }

    pub fn info(&self) -> &AdapterSummary {
        &self.0.info
    }
    pub fn index(&self) -> usize {
        self.0.info.index
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.limits
    }
    /// Whether kernels may use f16 (and so whether tensors may be F16 here).
    pub fn has_shader_f16(&self) -> bool {
        self.0
            .device
            .features()
            .contains(wgpu::Features::SHADER_F16)
    }

    pub fn memory_stats(&self) -> MemoryStats {
        self.0.pool.lock().unwrap().stats()
    }
    pub fn reset_peak_memory(&self) {
        self.0.pool.lock().unwrap().reset_peak();
    }
    /// What this device has done since it was opened (subtract two snapshots with
    /// [`GpuCounters::since`]).
    pub fn counters(&self) -> GpuCounters {
        self.0.counters.snapshot()
    }
    /// Whether launches are only counted (`CLCE_GPU_COUNT_ONLY=1`): values are garbage then.
    pub fn counts_only(&self) -> bool {
        self.0.count_only
    }
    /// Dispatches so far by kernel (subtract with [`DispatchesByKernel::since`]).
    pub fn dispatches_by_kernel(&self) -> DispatchesByKernel {
        self.0.counters.by_kernel()
    }

    /// Frees the buffers kept for reuse.
    pub fn trim_pool(&self) {
        self.0.pool.lock().unwrap().trim();
    }

    /// A buffer of at least `bytes` for `what` (named in errors), from the pool when one of
    /// its size class is free.
    pub(crate) fn alloc(&self, bytes: u64, what: &str) -> Result<GpuBuffer> {
        let limit = self.0.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::Gpu(format!(
                "{what} needs a buffer of {bytes} bytes, more than this adapter's largest storage binding ({limit} bytes, {}); split the work into smaller pieces",
                self.0.info.name
            )));
        }
        // Exact size when the size class would overshoot the binding limit.
        let class = size_class(bytes.max(4)).min(limit.max(4));
        if let Some(buffer) = self.0.pool.lock().unwrap().take(class) {
            return Ok(GpuBuffer::new(self.clone(), buffer, class, bytes));
        }
        let create = || {
            scoped(&self.0.device, "allocating", || {
                self.0.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: class,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
        };
        // Out of memory: give the pooled buffers back to the driver and try once more.
        let buffer = create().or_else(|_| {
            self.trim_pool();
            create()
        });
        let buffer = buffer.map_err(|e| {
            let s = self.memory_stats();
            Error::Gpu(format!(
                "{what}: allocating {bytes} bytes failed ({e}); {} bytes in use by tensors, peak {}",
                s.live_bytes, s.peak_live_bytes
            ))
        })?;
        self.0.pool.lock().unwrap().mark_live(class);
        self.0.counters.buffer_creation();
        Ok(GpuBuffer::new(self.clone(), buffer, class, bytes))
    }

    /// Runs `f` on the open command encoder, under error scopes; submits when the batch is full.
    pub(crate) fn record(
        &self,
        what: &str,
        f: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        let mut recorder = self.0.recorder.lock().unwrap();
        let result = scoped(&self.0.device, what, || f(recorder.encoder(&self.0.device)));
        if result.is_err() {
            recorder.discard();
            return result;
        }
        if (recorder.is_full() || self.0.check_each) && recorder.submit(&self.0.queue).is_some() {
            self.0.counters.submission();
        }
        drop(recorder);
        self.0.errors.check(what)
    }

    /// Submits the recorded work without waiting for it.
    pub fn flush(&self) -> Result<()> {
        self.submit_recorded();
        self.0.errors.check(
            "submitting (CLCE_GPU_CHECK=1 checks every kernel as it is recorded, naming the one that fails)",
        )
    }

    fn submit_recorded(&self) -> Option<wgpu::SubmissionIndex> {
        let submitted = self.0.recorder.lock().unwrap().submit(&self.0.queue);
        if submitted.is_some() {
            self.0.counters.submission();
        }
        submitted
    }

    /// Ends a training step: submits its work and waits until the step before it has
    /// finished on the GPU. A step reads nothing back, so without this the host would run
    /// ahead by every step up to the next logging step, each holding its uploads and launch
    /// parameters alive until it runs; with it, one step runs while the next is recorded.
    /// Waiting maps nothing: it is no readback.
    pub fn end_step(&self) -> Result<()> {
        let submitted = self.submit_recorded();
        let previous = match submitted {
            Some(s) => self.0.last_step.lock().unwrap().replace(s),
            None => None,
        };
        if let Some(previous) = previous {
            self.0
                .device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(previous),
                    timeout: None,
                })
                .map_err(|e| Error::Gpu(format!("waiting for the previous step: {e}")))?;
        }
        self.0.errors.check("ending a training step")
    }

    /// Submits the recorded work and waits until the GPU has finished it (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.flush()?;
        self.wait()
    }

    fn wait(&self) -> Result<()> {
        self.0
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.0.errors.check("waiting for the GPU")
    }

    /// The first `bytes` bytes of `buffer`, after everything recorded before has run.
    pub(crate) fn read_back(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = scoped(&self.0.device, "allocating a readback buffer", || {
            self.0.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let size = staging.size();
        self.record("reading back", |enc| {
            enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size)
        })?;
        self.flush()?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("reading back: the map callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("reading back: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading back: {e}")))?;
        let data = view[..bytes as usize].to_vec();
        self.0.counters.readback(bytes);
        drop(view);
        staging.unmap();
        Ok(data)
    }
}
