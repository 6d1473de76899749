//! Saving and restoring optimiser state as named tensors (the form a safetensors checkpoint
//! takes). Saved tensors are CPU copies; restored ones are fresh copies on the parameter's
//! device, so neither side ever shares storage with the other's in-place updates.
use std::collections::BTreeMap;

use crate::{DType, Device, Error, Result, Storage, Tensor};

const OP: &str = "load_state_dict";

/// A CPU copy of `t`, detached from anything that will later be updated in place.
pub(super) fn saved_copy(t: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_storage(
        Storage::Cpu(t.to_cpu_storage()?),
        t.shape().clone(),
        Device::Cpu,
    ))
}

/// A step counter as a tensor (f64 holds every count a run reaches exactly).
pub(super) fn step_tensor(step: u64) -> Result<Tensor> {
    Tensor::scalar(step as f64, DType::F64, &Device::Cpu)
}

/// The entries of a state being loaded; each is taken once, and whatever is left over at the
/// end is an error, so a load either matches exactly or changes nothing.
pub(super) struct SavedState<'a> {
    entries: BTreeMap<&'a str, &'a Tensor>,
}

impl<'a> SavedState<'a> {
    pub(super) fn new(state: &'a [(String, Tensor)]) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (name, t) in state {
            if entries.insert(name.as_str(), t).is_some() {
                return Err(Error::invalid(OP, format!("entry {name} appears twice")));
            }
        }
        Ok(SavedState { entries })
    }

    fn take(&mut self, key: &str, owner: &str) -> Result<&'a Tensor> {
        self.entries.remove(key).ok_or_else(|| {
            Error::invalid(
                OP,
                format!("the state has no entry {key} (for {owner}); was it saved by another optimiser or model?"),
            )
        })
    }

    /// Entry `key`, which must have `like`'s shape, copied onto `like`'s device and dtype.
    pub(super) fn take_like(&mut self, key: &str, like: &Tensor, owner: &str) -> Result<Tensor> {
        let saved = self.take(key, owner)?;
        if saved.shape() != like.shape() {
            return Err(Error::shape(
                OP,
                format!(
                    "entry {key} has shape {} but {owner} needs {}",
                    saved.shape(),
                    like.shape()
                ),
            ));
        }
        let values = saved.to_cpu_storage()?.to_dtype(like.dtype())?;
        Tensor::from_storage(Storage::Cpu(values), like.shape().clone(), Device::Cpu)
            .to_device(like.device())
    }

    /// Entry `key` as a step count: a one-element tensor holding a whole number >= 0.
    pub(super) fn take_step(&mut self, key: &str, owner: &str) -> Result<u64> {
        let saved = self.take(key, owner)?;
        let value = if saved.numel() == 1 {
            saved.to_scalar()?
        } else {
            f64::NAN
        };
        if !(value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(53)) {
            return Err(Error::invalid(
                OP,
                format!(
                    "entry {key} is not a step count (shape {}, value {value})",
                    saved.shape()
                ),
            ));
        }
        Ok(value as u64)
    }

    /// Succeeds only if every entry was taken.
    pub(super) fn finish(self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.entries.keys().copied().collect();
        Err(Error::invalid(
            OP,
            format!(
                "unexpected entries {names:?}: the state has more parameters or another optimiser's entries"
            ),
        ))
    }
}
