//! `Tensor`: a shape, a device, shared contiguous storage, and (when it was produced by an
//! op while gradients were being recorded) the op node that made it.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLockReadGuard, RwLockWriteGuard};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::autograd::{self, BackwardOp, Node};
use crate::gpu::GpuStorage;
use crate::memory::meta::MetaStorage;
use crate::memory::StorageCell;
use crate::{CpuStorage, DType, Device, Elem, Error, Result, Shape, Storage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn next() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        TensorId(COUNTER.fetch_add(1, Ordering::Relaxed))
    }
}

pub(crate) struct TensorInner {
    pub(crate) id: TensorId,
    pub(crate) shape: Shape,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    /// Shared with reshaped views and detached copies; written in place only by optimisers
    /// and running-statistics updates. Counted in the device's memory statistics. None for a
    /// graph alias (see [`Tensor::graph_alias`]).
    pub(crate) storage: Option<Arc<StorageCell>>,
    /// The recorded op that produced this tensor (None for leaves and untracked results).
    /// Shared with the tensor's graph aliases.
    pub(crate) node: Option<Arc<Node>>,
    pub(crate) requires_grad: bool,
    /// Accumulated gradient of a leaf that requires grad; shared with its graph aliases, so
    /// that the reverse pass, which walks aliases, accumulates into the leaf itself.
    pub(crate) grad: Arc<Mutex<Option<Tensor>>>,
}

#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorInner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {:?}, {}",
            self.shape(),
            self.dtype(),
            self.device()
        )?;
        if let Some(n) = &self.0.node {
            write!(f, ", op={}", n.name())?;
        }
        write!(f, ")")
    }
}

impl Tensor {
    // ---------------------------------------------------------------- construction
    pub(crate) fn from_storage(storage: Storage, shape: Shape, device: Device) -> Tensor {
        Self::new_inner(
            Arc::new(StorageCell::new(storage)),
            shape,
            device,
            None,
            false,
        )
    }

    fn new_inner(
        storage: Arc<StorageCell>,
        shape: Shape,
        device: Device,
        node: Option<Arc<Node>>,
        requires_grad: bool,
    ) -> Tensor {
        let dtype = storage.read().unwrap().dtype();
        Tensor(Arc::new(TensorInner {
            id: TensorId::next(),
            shape,
            dtype,
            device,
            storage: Some(storage),
            node,
            requires_grad,
            grad: Arc::new(Mutex::new(None)),
        }))
    }

    /// This tensor as the tape sees it: the same id, shape, dtype, device, node and gradient,
    /// without the values. Nodes hold aliases of the inputs their rule does not read, and the
    /// reverse pass walks aliases, so neither keeps storage alive.
    pub(crate) fn graph_alias(&self) -> Tensor {
        if self.0.storage.is_none() {
            return self.clone();
        }
        self.with_storage(None)
    }

    /// This tensor holding `half`, the f16 copy the tape kept of its values (dtype F16).
    pub(crate) fn with_half_storage(&self, half: Arc<StorageCell>) -> Tensor {
        self.with_storage_of(Some(half), DType::F16)
    }

    /// This tensor's graph identity over `storage` (the reverse pass hands a rule its output
    /// this way, over the storage the node saved).
    pub(crate) fn with_storage(&self, storage: Option<Arc<StorageCell>>) -> Tensor {
        self.with_storage_of(storage, self.dtype())
    }

    fn with_storage_of(&self, storage: Option<Arc<StorageCell>>, dtype: DType) -> Tensor {
        let t = &self.0;
        Tensor(Arc::new(TensorInner {
            id: t.id,
            shape: t.shape.clone(),
            dtype,
            device: t.device.clone(),
            storage,
            node: t.node.clone(),
            requires_grad: t.requires_grad,
            grad: t.grad.clone(),
        }))
    }

    /// The result of an op: records `op` with its `inputs` when gradients are being recorded
    /// and any input requires one.
    pub fn from_op(
        storage: Storage,
        shape: Shape,
        device: Device,
        op: impl BackwardOp + 'static,
        inputs: Vec<Tensor>,
    ) -> Tensor {
        crate::profile::lap(op.name());
        let storage = Arc::new(StorageCell::new(storage));
        let track = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let node = track.then(|| Node::new(Box::new(op), inputs, &storage));
        let out = Self::new_inner(storage, shape, device, node, track);
        if track {
            crate::profile::lap_as(crate::profile::Charge::TAPE);
        }
        out
    }

    /// A view with another shape over the same storage (used by reshape).
    pub(crate) fn view_from_op(
        &self,
        shape: Shape,
        op: impl BackwardOp + 'static,
        inputs: Vec<Tensor>,
    ) -> Tensor {
        crate::profile::lap(op.name());
        let storage = self.values().clone();
        let track = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let node = track.then(|| Node::new(Box::new(op), inputs, &storage));
        let out = Self::new_inner(storage, shape, self.device().clone(), node, track);
        if track {
            crate::profile::lap_as(crate::profile::Charge::TAPE);
        }
        out
    }

    pub fn from_vec<T: Elem>(
        data: Vec<T>,
        shape: impl Into<Shape>,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::shape(
                "from_vec",
                format!(
                    "{} values do not fill shape {shape:?} ({} elements)",
                    data.len(),
                    shape.numel()
                ),
            ));
        }
        Tensor::from_storage(Storage::Cpu(T::into_storage(data)), shape, Device::Cpu)
            .to_device(device)
    }

    pub fn from_f64_slice(
        data: &[f64],
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::shape(
                "from_f64_slice",
                format!("{} values for shape {shape:?}", data.len()),
            ));
        }
        if let Device::Meta(m) = device {
            return Ok(Tensor::meta(m, shape, dtype, "from_f64_slice"));
        }
        // F16 exists on GPUs only: made there from f32 by the cast kernel.
        let host = if dtype == DType::F16 {
            DType::F32
        } else {
            dtype
        };
        let t = Tensor::from_storage(
            Storage::Cpu(CpuStorage::from_f64(host, data)?),
            shape,
            Device::Cpu,
        )
        .to_device(device)?;
        if dtype == DType::F16 {
            t.to_dtype(DType::F16)
        } else {
            Ok(t)
        }
    }

    /// A tensor of the meta device: its shape and dtype, no values.
    fn meta(device: &crate::MetaDevice, shape: Shape, dtype: DType, op: &'static str) -> Tensor {
        let storage = MetaStorage::alloc(device, shape.numel(), dtype, op);
        Tensor::from_storage(Storage::Meta(storage), shape, Device::Meta(device.clone()))
    }

    pub fn scalar(value: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full(value, Shape::scalar(), dtype, device)
    }

    pub fn full(
        value: f64,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let Device::Gpu(gpu) = device else {
            if let Device::Meta(m) = device {
                return Ok(Tensor::meta(m, shape, dtype, "full"));
            }
            let data = vec![value; shape.numel()];
            return Tensor::from_f64_slice(&data, shape, dtype, device);
        };
        if dtype == DType::F64 {
            return Err(Error::invalid(
                "full",
                format!("an F64 tensor cannot live on {device}: GPUs work in f32"),
            ));
        }
        // Made on the device: backward passes seed and pad gradients with these.
        let filled = crate::ops::unary::gpu::fill(gpu, shape.numel(), value, "full")?;
        let t = Tensor::from_storage(Storage::Gpu(filled), shape, device.clone());
        // F16 is made from f32 by the cast kernel, as from_f64_slice does.
        t.to_dtype(dtype)
    }

    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full(0.0, shape, dtype, device)
    }

    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full(1.0, shape, dtype, device)
    }

    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::zeros(self.shape().clone(), self.dtype(), self.device())
    }

    pub fn ones_like(&self) -> Result<Tensor> {
        Tensor::ones(self.shape().clone(), self.dtype(), self.device())
    }

    /// Standard normal values scaled by `std`, reproducible from `seed`.
    pub fn randn(
        shape: impl Into<Shape>,
        std: f64,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        if let Device::Meta(m) = device {
            return Ok(Tensor::meta(m, shape, dtype, "randn"));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let data: Vec<f64> = (0..shape.numel())
            .map(|_| std * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng))
            .collect();
        Tensor::from_f64_slice(&data, shape, dtype, device)
    }

    /// Uniform values in [lo, hi), reproducible from `seed`.
    pub fn rand_uniform(
        shape: impl Into<Shape>,
        lo: f64,
        hi: f64,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        if let Device::Meta(m) = device {
            return Ok(Tensor::meta(m, shape, dtype, "rand_uniform"));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let data: Vec<f64> = (0..shape.numel())
            .map(|_| rng.random_range(lo..hi))
            .collect();
        Tensor::from_f64_slice(&data, shape, dtype, device)
    }

    // ---------------------------------------------------------------- accessors
    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &Shape {
        &self.0.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.0.shape.dims()
    }
    pub fn rank(&self) -> usize {
        self.0.shape.rank()
    }
    pub fn numel(&self) -> usize {
        self.0.shape.numel()
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> &Device {
        &self.0.device
    }
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    pub fn is_leaf(&self) -> bool {
        self.0.node.is_none()
    }
    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.0.node.as_ref()
    }
    /// The shared storage. Only graph aliases lack it, and only a backward rule can meet one:
    /// reading it means the rule reads a tensor its op does not save (`saves_input` /
    /// `saves_output`), a bug in that op, so this panics naming the rule.
    pub(crate) fn values(&self) -> &Arc<StorageCell> {
        match &self.0.storage {
            Some(s) => s,
            None => panic!(
                "internal error: {} read the values of a {:?} tensor that its op did not save; \
                 its saves_input / saves_output must say it reads them",
                autograd::running_rule().map_or("code outside backward".into(), |r| format!(
                    "the backward rule of `{r}`"
                )),
                self.shape()
            ),
        }
    }
    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.values().read().unwrap()
    }
    /// Write access for in-place updates (optimisers, running statistics); never recorded.
    pub fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.values().write().unwrap()
    }
    /// Whether two tensors share storage (reshape views, detach).
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(self.values(), other.values())
    }

    // ---------------------------------------------------------------- autograd
    /// A leaf over the same storage that records gradients (`requires_grad_()` in PyTorch).
    pub fn set_requires_grad(&self, requires_grad: bool) -> Tensor {
        Self::new_inner(
            self.values().clone(),
            self.shape().clone(),
            self.device().clone(),
            None,
            requires_grad,
        )
    }
    /// A leaf over the same storage, cut from the graph.
    pub fn detach(&self) -> Tensor {
        self.set_requires_grad(false)
    }
    /// The gradient accumulated into this leaf by `backward` calls since the last `zero_grad`.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().unwrap().clone()
    }
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap() = None;
    }
    pub(crate) fn set_grad(&self, g: Option<Tensor>) {
        // A plan counts what the reverse pass leaves in parameters as their gradients.
        if let Some(g) = &g {
            crate::memory::recount(g, crate::memory::meta::Category::Gradients);
        }
        *self.0.grad.lock().unwrap() = g;
    }
    /// Reverse-mode pass from this scalar: accumulates d(self)/d(leaf) into every leaf that
    /// requires grad.
    pub fn backward(&self) -> Result<()> {
        autograd::backward(self)
    }

    // ---------------------------------------------------------------- data movement
    /// A copy on `device` (the same tensor when it is already there). The copy is a new leaf:
    /// moving is not recorded on the tape, so move parameters before building the graph.
    /// An F16 tensor arrives on the CPU as F32.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device() == device {
            return Ok(self.clone());
        }
        let storage = match device {
            Device::Meta(m) => {
                return Ok(Tensor::meta(
                    m,
                    self.shape().clone(),
                    self.dtype(),
                    "to_device",
                ))
            }
            Device::Cpu => Storage::Cpu(self.to_cpu_storage()?),
            Device::Gpu(gpu) => {
                let values = match self.to_cpu_storage()? {
                    CpuStorage::F32(v) => v,
                    CpuStorage::F16(v) => crate::storage::widen(&v),
                    CpuStorage::F64(_) => {
                        return Err(Error::invalid(
                            "to_device",
                            format!(
                                "an F64 tensor cannot move to {device}: GPUs work in f32; convert it with .to_dtype(DType::F32) first"
                            ),
                        ))
                    }
                };
                Storage::Gpu(GpuStorage::from_slice(gpu, &values)?)
            }
        };
        let moved = Tensor::from_storage(storage, self.shape().clone(), device.clone());
        // F16 travels as f32 (the host has no f16) and becomes F16 again on another GPU.
        if self.dtype() == DType::F16 && device.is_gpu() {
            return moved.to_dtype(DType::F16);
        }
        Ok(moved)
    }

    /// A CPU copy of this tensor's storage (reads back from the GPU; f16 storage comes back
    /// as f32, since the CPU has no f16).
    pub fn to_cpu_storage(&self) -> Result<CpuStorage> {
        match &*self.storage() {
            Storage::Cpu(CpuStorage::F16(v)) => Ok(CpuStorage::F32(crate::storage::widen(v))),
            Storage::Cpu(s) => Ok(s.clone()),
            Storage::Gpu(s) => Ok(CpuStorage::F32(s.to_vec()?)),
            // Shapes without values read as zeros, so code that looks at a loss runs on.
            Storage::Meta(s) => match s.dtype() {
                DType::F64 => CpuStorage::zeros(DType::F64, s.len()),
                _ => CpuStorage::zeros(DType::F32, s.len()),
            },
        }
    }
    /// This tensor's GPU storage, for a GPU op whose operands `check_same` (or the op's own
    /// dispatch) put on one GPU; a CPU tensor here is the mixed-devices error of `op`.
    pub(crate) fn gpu_storage(&self, op: &'static str) -> Result<GpuStorage> {
        match &*self.storage() {
            Storage::Gpu(s) => Ok(s.clone()),
            Storage::Cpu(_) | Storage::Meta(_) => Err(crate::storage::mixed_devices(op)),
        }
    }
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(self.to_cpu_storage()?.to_f32_vec())
    }
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(self.to_cpu_storage()?.to_f64_vec())
    }
    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "to_scalar",
                format!("tensor of shape {:?} is not a scalar", self.shape()),
            ));
        }
        Ok(self.to_vec_f64()?[0])
    }

    /// Overwrites this tensor's values with `src`'s (same shape, dtype and device), in place,
    /// outside the graph. Views sharing the storage see the change.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        crate::ensure_shape!(
            self.shape() == src.shape(),
            "assign",
            "{:?} vs {:?}",
            self.shape(),
            src.shape()
        );
        self.check_same("assign", src)?;
        if self.same_storage(src) {
            return Ok(());
        }
        // On a GPU this shares src's buffer, which no kernel ever writes again (see `gpu`),
        // so sharing acts as a copy.
        let new = src.storage().clone();
        *self.storage_mut() = new;
        Ok(())
    }

    /// Errors unless both tensors share a dtype and a device.
    pub fn check_same(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.dtype() != other.dtype() {
            return Err(Error::DType {
                op,
                lhs: self.dtype(),
                rhs: other.dtype(),
            });
        }
        self.check_same_device(op, other)
    }

    /// Errors unless both tensors live on one device.
    pub fn check_same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.device() != other.device() {
            return Err(Error::Device {
                op,
                lhs: self.device().to_string(),
                rhs: other.device().to_string(),
            });
        }
        Ok(())
    }
}
