//! The meta device: tensors that have a shape and a dtype but no values (PyTorch's meta
//! tensors). Every op runs its real shape logic and allocates its real outputs and saved state
//! here, and each allocation and release is counted the way the device being planned for
//! would count it: exact bytes on the CPU; on a GPU, the buffer pool's size classes, with the
//! adapter's binding limit checked for every buffer. Nothing is computed, so a BEiT-base step
//! at 256 views is planned in seconds. Reading values back gives zeros, so code that looks at
//! a loss or a gradient norm runs unchanged.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::MemoryStats;
use crate::gpu::size_class;
use crate::DType;

/// How the planned-for device allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocatorModel {
    /// Host memory: exactly the bytes asked for, freed at once.
    Cpu,
    /// A GPU's buffer pool: sizes rounded up to the pool's size classes; a buffer above
    /// `binding_limit` would be refused by the adapter (see `plan`'s largest buffer).
    /// `shader_f16`: whether its kernels read f16 operands (`--precision f16`'s matmul
    /// backward reads the saved f16 copies as they are; without it they are widened first).
    Gpu {
        binding_limit: u64,
        shader_f16: bool,
    },
}

impl AllocatorModel {
    /// Whether matmul on the planned-for device reads f16 operands (the CPU always does).
    pub fn shader_f16(self) -> bool {
        match self {
            AllocatorModel::Cpu => true,
            AllocatorModel::Gpu { shader_f16, .. } => shader_f16,
        }
    }
}

/// The largest single buffer a planned step asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargestBuffer {
    pub bytes: u64,
    /// The op that allocated it.
    pub op: &'static str,
}

/// What an allocation holds, for a plan's breakdown of its peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Weights,
    OptimizerState,
    /// Accumulated into a parameter by the reverse pass (`Tensor::grad`).
    Gradients,
    /// Everything else: activations, saved state, temporaries, gradients in flight.
    Activations,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Weights,
        Category::OptimizerState,
        Category::Gradients,
        Category::Activations,
    ];
    /// Its place in a [`Breakdown`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Live bytes by [`Category`], in the order of `Category::ALL`.
pub type Breakdown = [u64; 4];

#[derive(Default)]
struct Counters {
    stats: MemoryStats,
    by_category: Breakdown,
    /// `by_category` when `stats.peak_live_bytes` was reached.
    at_peak: Breakdown,
    /// Live bytes of what the step allocates (not weights or optimiser state) by the op that
    /// allocated them, now and at the peak.
    by_op: HashMap<&'static str, u64>,
    by_op_at_peak: HashMap<&'static str, u64>,
    largest: LargestBuffer,
}

struct Inner {
    model: AllocatorModel,
    counters: Mutex<Counters>,
    /// The category of new allocations (an index into `Category::ALL`).
    making: AtomicUsize,
}

/// A shape-only device. Clones share one set of counters; two handles are equal only when they
/// are the same device.
#[derive(Clone)]
pub struct MetaDevice(Arc<Inner>);

impl PartialEq for MetaDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for MetaDevice {}

impl std::fmt::Debug for MetaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for MetaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.model {
            AllocatorModel::Cpu => write!(f, "meta (as the cpu)"),
            AllocatorModel::Gpu { .. } => write!(f, "meta (as a gpu)"),
        }
    }
}

impl MetaDevice {
    pub fn new(model: AllocatorModel) -> MetaDevice {
        MetaDevice(Arc::new(Inner {
            model,
            counters: Default::default(),
            making: AtomicUsize::new(Category::Activations.index()),
        }))
    }

    pub fn model(&self) -> AllocatorModel {
        self.0.model
    }

    pub fn memory_stats(&self) -> MemoryStats {
        self.0.counters.lock().unwrap().stats
    }

    pub fn reset_peak_memory(&self) {
        let mut c = self.0.counters.lock().unwrap();
        c.stats.peak_live_bytes = c.stats.live_bytes;
        c.at_peak = c.by_category;
        c.by_op_at_peak = c.by_op.clone();
    }

    /// What the allocations made from now on hold (until the next call).
    pub fn set_category(&self, category: Category) {
        self.0.making.store(category.index(), Ordering::Relaxed);
    }

    /// Live bytes by category at the peak.
    pub fn breakdown_at_peak(&self) -> Breakdown {
        self.0.counters.lock().unwrap().at_peak
    }

    /// Live bytes of the step's own allocations at the peak by the op that allocated them,
    /// largest first.
    pub fn ops_at_peak(&self) -> Vec<(&'static str, u64)> {
        let c = self.0.counters.lock().unwrap();
        let mut ops: Vec<_> = c
            .by_op_at_peak
            .iter()
            .filter(|(_, &b)| b > 0)
            .map(|(&op, &b)| (op, b))
            .collect();
        ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ops
    }

    /// The largest buffer asked for since the device was made.
    pub fn largest_buffer(&self) -> LargestBuffer {
        self.0.counters.lock().unwrap().largest
    }

    /// The bytes the planned-for allocator takes for a request of `bytes`.
    fn charged(&self, bytes: u64) -> u64 {
        match self.0.model {
            AllocatorModel::Cpu => bytes,
            AllocatorModel::Gpu { binding_limit, .. } => {
                size_class(bytes.max(4)).min(binding_limit.max(4))
            }
        }
    }

    fn take(&self, bytes: u64, category: usize, op: &'static str) -> u64 {
        let charged = self.charged(bytes);
        let mut c = self.0.counters.lock().unwrap();
        c.stats.live_bytes += charged;
        c.by_category[category] += charged;
        if category == Category::Activations.index() {
            *c.by_op.entry(op).or_default() += charged;
        }
        if c.stats.live_bytes > c.stats.peak_live_bytes {
            c.stats.peak_live_bytes = c.stats.live_bytes;
            c.at_peak = c.by_category;
            c.by_op_at_peak = c.by_op.clone();
        }
        if bytes > c.largest.bytes {
            c.largest = LargestBuffer { bytes, op };
        }
        charged
    }

    fn give_back(&self, charged: u64, category: usize, by_op: Option<&'static str>) {
        let mut c = self.0.counters.lock().unwrap();
        c.stats.live_bytes -= charged;
        c.by_category[category] -= charged;
        if let Some(b) = by_op.and_then(|op| c.by_op.get_mut(op)) {
            *b -= charged;
        }
    }

    fn recategorize(&self, charged: u64, from: usize, to: usize) {
        let mut c = self.0.counters.lock().unwrap();
        c.by_category[from] -= charged;
        c.by_category[to] += charged;
    }
}

/// One counted allocation; released when the last storage sharing it is dropped.
struct Allocation {
    device: MetaDevice,
    charged: u64,
    category: AtomicUsize,
    /// The op it is counted under in `ops_at_peak` (allocations of the step only).
    by_op: Option<&'static str>,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.device.give_back(
            self.charged,
            self.category.load(Ordering::Relaxed),
            self.by_op,
        );
    }
}

/// A tensor's storage on the meta device: a length, a dtype and a counted allocation.
#[derive(Clone)]
pub struct MetaStorage {
    len: usize,
    dtype: DType,
    allocation: Arc<Allocation>,
}

impl std::fmt::Debug for MetaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetaStorage({} {:?})", self.len, self.dtype)
    }
}

impl MetaStorage {
    /// Storage for `len` values of `dtype` that op `op` produces.
    pub(crate) fn alloc(device: &MetaDevice, len: usize, dtype: DType, op: &'static str) -> Self {
        let category = device.0.making.load(Ordering::Relaxed);
        Self::alloc_as(device, len, dtype, category, op)
    }

    fn alloc_as(
        device: &MetaDevice,
        len: usize,
        dtype: DType,
        category: usize,
        op: &'static str,
    ) -> Self {
        // f16 is packed two to a 32-bit word on GPUs, as GpuStorage does.
        let bytes = match dtype {
            DType::F16 => (2 * len as u64).next_multiple_of(4),
            d => (d.size_in_bytes() * len) as u64,
        };
        let charged = device.take(bytes, category, op);
        MetaStorage {
            len,
            dtype,
            allocation: Arc::new(Allocation {
                device: device.clone(),
                charged,
                category: AtomicUsize::new(category),
                by_op: (category == Category::Activations.index()).then_some(op),
            }),
        }
    }

    /// Counts this allocation as `category` from now on (a parameter's gradient, say).
    pub(crate) fn mark(&self, category: Category) {
        let a = &self.allocation;
        let from = a.category.swap(category.index(), Ordering::Relaxed);
        a.device.recategorize(a.charged, from, category.index());
    }

    /// A new allocation like this one (an op's output of the same size and dtype).
    pub(crate) fn like(&self, op: &'static str) -> Self {
        Self::alloc(self.device(), self.len, self.dtype, op)
    }

    /// A new f32 allocation of `len` values on the same device (most ops' outputs).
    /// f64 stays f64; everything else computes in f32 (f16 is storage only).
    pub(crate) fn output(&self, len: usize, op: &'static str) -> Self {
        let dtype = match self.dtype {
            DType::F64 => DType::F64,
            _ => DType::F32,
        };
        Self::alloc(self.device(), len, dtype, op)
    }

    /// An optimiser's in-place update of `tensors`: the CPU writes in place; a GPU kernel writes
    /// fresh buffers (see `optim/gpu.rs`), all of them before the old ones are let go.
    pub(crate) fn update_in_place(tensors: &mut [&mut MetaStorage], op: &'static str) {
        if let Some(first) = tensors.first() {
            if first.device().model() == AllocatorModel::Cpu {
                return;
            }
        }
        let fresh: Vec<MetaStorage> = tensors
            .iter()
            .map(|t| {
                let category = t.allocation.category.load(Ordering::Relaxed);
                Self::alloc_as(t.device(), t.len, t.dtype, category, op)
            })
            .collect();
        for (t, new) in tensors.iter_mut().zip(fresh) {
            **t = new;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> &MetaDevice {
        &self.allocation.device
    }
}
