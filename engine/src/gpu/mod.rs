//! The GPU backend: any adapter wgpu can open (Vulkan, Metal, DX12, GL), running hand-written
//! WGSL kernels (the `shaders/` folder at the top of the repository) on f32 storage.
//!
//! How it fits together:
//! - `adapters.rs` finds adapters, describes them (`clce-cli devices`) and ranks them, so that
//!   `gpu:0` is the best one; software adapters (lavapipe) come last.
//! - `device.rs` opens one: a [`GpuDevice`] is a cheap handle (an `Arc`) that owns the wgpu
//!   device and queue, the buffer pool, the pipeline cache and the command recorder.
//! - `pool.rs` recycles freed buffers by size class and counts live and peak bytes.
//! - `pipelines.rs` compiles each (shader, entry point, override constants) once.
//! - `recorder.rs` appends every kernel launch to one command encoder and submits only when
//!   a result is read back (or the batch grows large), so a training step runs without
//!   host round trips.
//! - `kernel.rs` is what an op's `gpu.rs` calls: [`Launch`] names a kernel, its uniform
//!   parameters, the buffers it reads and the buffers it writes.
//! - `counters.rs` counts dispatches, submissions, readbacks, buffer creations and bytes
//!   moved ([`GpuDevice::counters`], `clce-cli bench --device gpu`).
//! - `layout_params.rs` prepares shapes and strides for kernels that index through them.
//! - `storage.rs` holds a tensor's buffer ([`GpuStorage`]) and moves data in and out.
//! - `errors.rs` turns wgpu errors (validation, out of memory, device lost) into
//!   [`crate::Error::Gpu`] instead of panics.
//!
//! Adding an op's GPU kernel:
//! 1. write `shaders/<family>.wgsl`: a `Params` uniform struct at binding 0, then the buffers
//!    the entry point reads (`var<storage, read>`), then those it writes (`read_write`),
//!    numbered in that order; one invocation per output element (index
//!    `gid.x + gid.y * nwg.x * WG`, skipping indices past the end) or one workgroup per lane
//!    for row reductions;
//! 2. name the file in `shaders.rs`;
//! 3. in `ops/<family>/gpu.rs`, allocate the output with `GpuStorage::alloc` and record a
//!    [`Launch`]: the entry point, a [`Params`] built field by field in the struct's order,
//!    the read and write buffers, and `linear_grid(device, threads, WG)` workgroups;
//! 4. add the `Storage::Gpu` arm beside the `Storage::Cpu` one in `ops/<family>/mod.rs`;
//! 5. test with `gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on}`.
//!
//! One rule keeps this simple: a buffer is written once, by the kernel that creates it, and
//! never changed afterwards. Kernels always write into a freshly allocated buffer, so sharing
//! a buffer between tensors (clones, reshapes, `assign`) is always safe.
mod adapters;
mod counters;
mod device;
mod errors;
mod kernel;
mod layout_params;
mod pipelines;
mod pool;
mod recorder;
pub mod shaders;
mod storage;
pub mod testing;
#[cfg(test)]
mod tests;

pub use adapters::{adapters, quiet_wayland_probe, AdapterSummary};
pub use counters::{DispatchesByKernel, GpuCounters};
pub use device::GpuDevice;
pub(crate) use kernel::{linear_grid, Launch, Params, MAX_RANK};
pub(crate) use layout_params::{check_rank, collapse};
pub(crate) use pool::size_class;
pub use pool::MemoryStats;
pub(crate) use storage::Indices;
pub use storage::{GpuBuffer, GpuStorage};
