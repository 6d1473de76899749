//! Saved activations in f16 (`--precision f16`): while a [`save_in_f16`] guard lives, the tape
//! keeps what a node saves for its backward rule (inputs and output that the rule reads) as
//! an f16 copy. When the reverse pass reaches the node, a rule that reads f16 operands
//! (`BackwardOp::reads_f16`: matmul, conv2d, attention, bias_gelu) gets the copy as an F16
//! tensor where the device's kernels can read it ([`device_reads_f16`]); every other rule
//! gets it widened back to f32. The f32 original is freed as soon as the forward pass lets
//! go of it, so the activations that wait for the backward pass take half the memory; the
//! arithmetic (accumulation included), the parameters, their gradients and the optimiser
//! state stay f32 (PyTorch's autocast stores f16 activations for the same reason).
//!
//! What is kept in f32: leaves (parameters and inputs live anyway, so a copy would add
//! memory), what an op keeps in f32 (`BackwardOp::keeps_f32`: the norms' inputs), tensors of
//! other dtypes, and small tensors (under [`MIN_ELEMENTS`]: not worth a conversion). A storage saved by several nodes (an op's output that the next op saves as
//! its input) is converted once and shared.
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::memory::meta::MetaStorage;
use crate::memory::StorageCell;
use crate::ops::cast::gpu::f32_to_f16_storage;
use crate::storage::narrow;
use crate::{CpuStorage, DType, Result, Storage};

/// Tensors below this many elements stay f32.
pub const MIN_ELEMENTS: usize = 4096;

/// The f16 copy of a saved f32 storage: a storage cell of dtype F16 on the same device,
/// which the tape widens back to f32 for a rule, or hands as it is to a rule that reads f16
/// operands ([`crate::autograd::BackwardOp::reads_f16`]).
pub(crate) type HalfCopy = StorageCell;

thread_local! {
    /// While a guard lives: the f16 copies made so far, by the address of the storage they
    /// copy (with that storage, to tell a live one from a freed one at the same address).
    static COPIES: RefCell<Option<HashMap<usize, (Weak<StorageCell>, Weak<HalfCopy>)>>> =
        const { RefCell::new(None) };
}

/// Saved activations recorded on this thread while the guard lives are kept in f16.
pub struct SaveInF16Guard(Option<HashMap<usize, (Weak<StorageCell>, Weak<HalfCopy>)>>);

pub fn save_in_f16() -> SaveInF16Guard {
    SaveInF16Guard(COPIES.with(|c| c.replace(Some(HashMap::new()))))
}

impl Drop for SaveInF16Guard {
    fn drop(&mut self) {
        COPIES.with(|c| *c.borrow_mut() = self.0.take());
    }
}

/// Whether a [`save_in_f16`] guard lives on this thread.
pub fn is_active() -> bool {
    COPIES.with(|c| c.borrow().is_some())
}

/// Whether a tensor of `dtype` and `numel` elements, saved by a node now, is kept as an f16
/// copy; `may_narrow`: it is not a leaf, and the op does not keep it in f32
/// (`BackwardOp::keeps_f32`).
pub(crate) fn wants_half(dtype: DType, numel: usize, may_narrow: bool) -> bool {
    dtype == DType::F32 && may_narrow && numel >= MIN_ELEMENTS && is_active()
}

/// The f16 copy of `cell` (made now, or shared with an earlier saver of the same storage).
pub(crate) fn half_copy(cell: &Arc<StorageCell>) -> Result<Arc<HalfCopy>> {
    let key = Arc::as_ptr(cell) as usize;
    let known = COPIES.with(|c| {
        let c = c.borrow();
        let (original, copy) = c.as_ref()?.get(&key)?;
        original.upgrade().filter(|o| Arc::ptr_eq(o, cell))?;
        copy.upgrade()
    });
    if let Some(copy) = known {
        return Ok(copy);
    }
    let copy = Arc::new(to_half(&cell.read().unwrap_or_else(|e| e.into_inner()))?);
    COPIES.with(|c| {
        if let Some(map) = c.borrow_mut().as_mut() {
            // Forget copies whose nodes are gone before the map grows.
            if map.len() > 1024 {
                map.retain(|_, (o, h)| o.strong_count() > 0 && h.strong_count() > 0);
            }
            map.insert(key, (Arc::downgrade(cell), Arc::downgrade(&copy)));
        }
    });
    Ok(copy)
}

fn to_half(storage: &Storage) -> Result<HalfCopy> {
    let half = match storage {
        Storage::Cpu(CpuStorage::F32(v)) => Storage::Cpu(CpuStorage::F16(narrow(v))),
        Storage::Cpu(_) => unreachable!("only f32 storage is kept in f16"),
        Storage::Gpu(s) => Storage::Gpu(f32_to_f16_storage(s, "f16 saved")?),
        Storage::Meta(s) => Storage::Meta(MetaStorage::alloc(
            s.device(),
            s.len(),
            DType::F16,
            "f16 saved",
        )),
    };
    Ok(StorageCell::new(half))
}

/// The values of an f16 copy back in f32, for a rule that reads f32.
pub(crate) fn widen(copy: &HalfCopy) -> Result<Arc<StorageCell>> {
    let storage = match &*copy.read().unwrap_or_else(|e| e.into_inner()) {
        Storage::Cpu(s) => Storage::Cpu(CpuStorage::F32(s.to_f32_vec())),
        Storage::Gpu(s) => Storage::Gpu(crate::ops::cast::gpu::cast(s, DType::F32)?),
        Storage::Meta(s) => Storage::Meta(MetaStorage::alloc(
            s.device(),
            s.len(),
            DType::F32,
            "f16 widen",
        )),
    };
    Ok(Arc::new(StorageCell::new(storage)))
}

/// Whether matmul on `device` reads f16 operands as they are: on the CPU always; on a GPU
/// with shader-f16 (the f16 copies themselves need no feature, but the kernels that read
/// them declare `enable f16`); on the meta device where the GPU it plans for has it.
pub(crate) fn device_reads_f16(device: &crate::Device) -> bool {
    match device {
        crate::Device::Cpu => true,
        crate::Device::Gpu(g) => g.has_shader_f16(),
        crate::Device::Meta(m) => m.model().shader_f16(),
    }
}

#[cfg(test)]
mod tests {
    use super::save_in_f16;
    use crate::memory::meta::AllocatorModel;
    use crate::{DType, Device, MetaDevice, Result, Tensor};

    /// A two-layer perceptron's loss: every saved activation is a non-leaf of 64 x 96 or
    /// 64 x 80 elements (above the f16 threshold).
    fn mlp(x: &Tensor, w1: &Tensor, w2: &Tensor) -> Result<Tensor> {
        let h = x.matmul(w1)?.gelu()?;
        let y = h.matmul(w2)?.tanh()?;
        y.mul(&y)?.sum_all()
    }

    fn leaves(device: &Device) -> [Tensor; 3] {
        let t = |shape: [usize; 2], seed| {
            Tensor::randn(shape, 0.5, seed, DType::F32, device)
                .unwrap()
                .set_requires_grad(true)
        };
        [t([64, 48], 1), t([48, 96], 2), t([96, 80], 3)]
    }

    /// The gradients of `mlp` on `device`, with the saved activations in f16 or not.
    fn gradients(device: &Device, half: bool) -> Vec<Vec<f32>> {
        let [x, w1, w2] = leaves(device);
        {
            let _f16 = half.then(save_in_f16);
            // x * 1 is a non-leaf, so the first matmul's saved input is kept in f16 too.
            mlp(&x.mul_scalar(1.0).unwrap(), &w1, &w2).unwrap()
        }
        .backward()
        .unwrap();
        [x, w1, w2]
            .iter()
            .map(|t| t.grad().unwrap().to_vec_f32().unwrap())
            .collect()
    }

    fn relative(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) as f64 * (x - y) as f64)
            .sum();
        let n: f64 = b.iter().map(|y| *y as f64 * *y as f64).sum();
        (d / n).sqrt()
    }

    fn assert_f16_gradients_are_close(device: &Device) {
        let (full, half) = (gradients(device, false), gradients(device, true));
        for (h, f) in half.iter().zip(&full) {
            let r = relative(h, f);
            // f16 keeps 11 significant bits: about 5e-4 relative per value.
            assert!(r < 1e-2, "{r}");
            assert!(r > 0.0, "the saved activations were not rounded to f16");
        }
    }

    #[test]
    fn gradients_from_f16_saved_activations_are_close_to_f32() {
        assert_f16_gradients_are_close(&Device::Cpu);
    }

    /// `--precision f16` needs no shader-f16: the copies are made and widened by core WGSL's
    /// pack2x16float / unpack2x16float, and no other kernel reads them. So it runs on every
    /// adapter (lavapipe's GL adapter has no shader-f16) with the CPU's f16 rounding.
    #[test]
    fn f16_saved_activations_need_no_shader_f16() {
        if crate::gpu::testing::test_device().is_none() {
            return;
        }
        let cpu = gradients(&Device::Cpu, true);
        let mut without = 0;
        for adapter in crate::gpu::adapters() {
            let gpu = match Device::gpu(adapter.index) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("gpu:{} not checked: {e}", adapter.index);
                    continue;
                }
            };
            without += usize::from(!adapter.shader_f16);
            for (g, c) in gradients(&gpu, true).iter().zip(&cpu) {
                let r = relative(g, c);
                assert!(r < 1e-3, "{gpu}: {r}");
            }
        }
        eprintln!("{without} adapter(s) without shader-f16 checked");
    }

    #[test]
    fn gpu_f16_saved_activations_match_the_cpu() {
        let Some(gpu) = crate::gpu::testing::test_device() else {
            return;
        };
        assert_f16_gradients_are_close(&gpu);
        // The same f16 rounding on both devices (round to nearest even), of f32 values that
        // differ in their last bits: a few values land one f16 step apart.
        for (g, c) in gradients(&gpu, true)
            .iter()
            .zip(&gradients(&Device::Cpu, true))
        {
            let r = relative(g, c);
            assert!(r < 2e-3, "{r}");
        }
    }

    /// Live bytes after the forward pass on the meta device: what waits for backward.
    fn held_after_forward(half: bool) -> u64 {
        let m = MetaDevice::new(AllocatorModel::Cpu);
        let device = Device::Meta(m.clone());
        let [x, w1, w2] = leaves(&device);
        let before = m.memory_stats().live_bytes;
        let loss = {
            let _f16 = half.then(save_in_f16);
            mlp(&x.mul_scalar(1.0).unwrap(), &w1, &w2).unwrap()
        };
        let held = m.memory_stats().live_bytes - before;
        drop(loss);
        held
    }

    #[test]
    fn saved_activations_take_half_the_memory() {
        let (full, half) = (held_after_forward(false), held_after_forward(true));
        // Saved: x * 1 [64, 48] (matmul; 3072 elements, below the threshold, so f32 in
        // both), x·w1 [64, 96] (gelu), h [64, 96] (matmul) and y [64, 80] (tanh's input is
        // not read; its output and mul's input y are one storage, kept once), plus the loss.
        let large = 64 * 96 + 64 * 96 + 64 * 80;
        assert_eq!(full, 4 * (64 * 48 + large) + 4);
        assert_eq!(half, 4 * 64 * 48 + 2 * large + 4);
    }

    #[test]
    fn leaves_and_small_tensors_stay_f32() {
        let m = MetaDevice::new(AllocatorModel::Cpu);
        let device = Device::Meta(m.clone());
        let [x, w1, _] = leaves(&device);
        let small = Tensor::zeros([8, 8], DType::F32, &device)
            .unwrap()
            .set_requires_grad(true);
        let before = m.memory_stats().live_bytes;
        let _f16 = save_in_f16();
        // matmul saves its two leaf inputs as they are; the gelu of an 8 x 8 saves 64 values.
        let _y = x.matmul(&w1).unwrap();
        let _z = small.mul_scalar(2.0).unwrap().gelu().unwrap();
        assert_eq!(
            m.memory_stats().live_bytes - before,
            4 * (64 * 96 + 64 + 64)
        );
    }

    /// The ops holding memory at the backward pass's peak of `h · w` (h = x * 1 a saved f16
    /// activation) on the meta device planning for a GPU with or without shader-f16, and
    /// that peak.
    fn backward_peak(shader_f16: bool) -> (Vec<&'static str>, u64) {
        let m = MetaDevice::new(AllocatorModel::Gpu {
            binding_limit: 1 << 30,
            shader_f16,
        });
        let device = Device::Meta(m.clone());
        let [_, w1, _] = leaves(&device);
        let x = Tensor::zeros([256, 48], DType::F32, &device)
            .unwrap()
            .set_requires_grad(true);
        let loss = {
            let _f16 = save_in_f16();
            x.mul_scalar(1.0)
                .unwrap()
                .matmul(&w1)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        m.reset_peak_memory();
        loss.backward().unwrap();
        let ops = m.ops_at_peak().into_iter().map(|(op, _)| op).collect();
        (ops, m.memory_stats().peak_live_bytes)
    }

    /// Matmul's rule reads the f16 copy of its saved input where the device's kernels can
    /// (`BackwardOp::reads_f16`): no f32 copy of it is made for the backward pass.
    #[test]
    fn matmul_reads_its_saved_f16_input_without_widening_it() {
        let (widening, widened_peak) = backward_peak(false);
        assert!(widening.contains(&"f16 widen"), "{widening:?}");
        let (reading, peak) = backward_peak(true);
        assert!(!reading.contains(&"f16 widen"), "{reading:?}");
        assert!(peak < widened_peak, "{peak} vs {widened_peak}");
    }

    /// The gradients of an attention loss for q, k, v (non-leaves of [2, 3, 37, 64], above
    /// the f16 threshold) and a bias, with the saved q, k, v in f16 or not.
    fn attention_gradients(device: &Device, half: bool) -> Vec<Vec<f32>> {
        let leaf = |shape: &[usize], seed| {
            Tensor::randn(shape, 0.5, seed, DType::F32, device)
                .unwrap()
                .set_requires_grad(true)
        };
        let qkv = [1, 2, 3].map(|seed| leaf(&[2, 3, 37, 64], seed));
        let bias = leaf(&[3, 37, 37], 4);
        {
            let _f16 = half.then(save_in_f16);
            let [q, k, v] = qkv.each_ref().map(|t| t.mul_scalar(1.0).unwrap());
            let o = crate::ops::attention::attention(&q, &k, &v, Some(&bias), 0.125).unwrap();
            o.mul(&o).unwrap().sum_all().unwrap()
        }
        .backward()
        .unwrap();
        qkv.iter()
            .chain([&bias])
            .map(|t| t.grad().unwrap().to_vec_f32().unwrap())
            .collect()
    }

    /// Attention's rule reads its saved f16 q, k, v: the CPU's products and the GPU's
    /// `backward_*_f16` kernels, against f32 and against each other.
    #[test]
    fn attention_reads_its_saved_f16_inputs() {
        let (full, half) = (
            attention_gradients(&Device::Cpu, false),
            attention_gradients(&Device::Cpu, true),
        );
        for (h, f) in half.iter().zip(&full) {
            let r = relative(h, f);
            assert!(r < 1e-2 && r > 0.0, "{r}");
        }
        let Some(gpu) = crate::gpu::testing::test_device() else {
            return;
        };
        for (g, c) in attention_gradients(&gpu, true).iter().zip(&half) {
            let r = relative(g, c);
            assert!(r < 2e-3, "{r}");
        }
    }
}
