//! The clce engine: tensors on the CPU (rayon) or the GPU (wgpu), a tape-based reverse-mode
//! autograd, the ops that ResNet, BEiT and the CLCE losses need, gradient checking and
//! optimisers.
//!
//! Where to look:
//! - `tensor.rs`: the `Tensor` type; `autograd.rs`: the tape and the reverse pass;
//! - `ops/<family>/`: each op's forward, backward rule, kernels and tests side by side;
//! - `loss/`: the CLCE objective (LACLN, cross-entropy) and its baselines (SupCon, H-SCL);
//! - `gradcheck.rs`: finite-difference checking of every op;
//! - `memory/`: live and peak bytes on every device, and the meta device (shapes, no values)
//!   that plans a step's memory;
//! - `gpu/`: the wgpu backend (devices, buffers, kernel launches); WGSL in `shaders/`;
//! - `profile.rs`: opt-in time per op family (`clce-cli bench --profile`);
//! - `optim/`: AdamW, SGD, gradient clipping and the warm-up + cosine lr schedule.
pub mod autograd;
pub mod device;
pub mod dtype;
pub mod error;
#[doc(hidden)]
pub mod fault;
#[doc(hidden)]
pub mod fixtures;
pub mod gpu;
pub mod gradcheck;
pub mod loss;
pub mod memory;
pub mod ops;
pub mod optim;
pub mod profile;
pub mod shape;
pub mod storage;
pub mod tensor;

pub use autograd::{backward_with_grads, checkpoint, enable_grad, is_grad_enabled, no_grad};
pub use device::Device;
pub use dtype::{DType, Elem};
pub use error::{Error, Result};
pub use memory::meta::{AllocatorModel, MetaDevice};
pub use memory::MemoryStats;
pub use ops::dropout::SamplePlace;
pub use ops::residual::DropPath;
pub use shape::Shape;
pub use storage::{CpuStorage, Storage};
pub use tensor::{Tensor, TensorId};
