//! The parameter store: every tensor of a model under its timm name, in the order the model
//! creates them (the order of PyTorch's `state_dict`).
//!
//! Trainable parameters are autograd leaves; BatchNorm running statistics, BatchNorm batch
//! counters and BEiT's relative position index are buffers the optimiser never sees. Models
//! hold clones of the same `Tensor`s, so an optimiser that updates the store's tensors in
//! place updates the model.
mod builder;
mod init;

use std::collections::HashMap;

pub use builder::Builder;
pub use init::{seed_for, Init};

use clce_engine::Tensor;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Learned by the optimiser.
    Trainable,
    /// Float state updated in the forward pass (BatchNorm running mean and variance).
    Buffer,
    /// An integer counter stored as I64 in files (BatchNorm's `num_batches_tracked`); kept
    /// as an f32 scalar, exact up to 2^24 batches.
    Counter,
    /// A fixed integer table stored as I64 in files (BEiT's `relative_position_index`).
    Index,
}

impl Role {
    /// Whether files store it as integers.
    pub fn is_integer(self) -> bool {
        matches!(self, Role::Counter | Role::Index)
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub tensor: Tensor,
    pub role: Role,
}

#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    pub(crate) fn insert(&mut self, name: &str, tensor: Tensor, role: Role) -> Result<()> {
        if self.index.contains_key(name) {
            return Err(Error::config(format!("tensor {name} is defined twice")));
        }
        self.index.insert(name.to_string(), self.entries.len());
        self.entries.push(Entry {
            name: name.to_string(),
            tensor,
            role,
        });
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.entries[i].tensor)
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// Every tensor, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The tensors the optimiser updates, in creation order.
    pub fn trainable(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries
            .iter()
            .filter(|e| e.role == Role::Trainable)
            .map(|e| (e.name.as_str(), &e.tensor))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of trainable values (what papers call the parameter count).
    pub fn num_trainable(&self) -> usize {
        self.trainable().map(|(_, t)| t.numel()).sum()
    }

    /// Number of trainable values whose name starts with `prefix`.
    pub fn num_trainable_under(&self, prefix: &str) -> usize {
        self.trainable()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, t)| t.numel())
            .sum()
    }

    pub fn zero_grad(&self) {
        for (_, t) in self.trainable() {
            t.zero_grad();
        }
    }
}

/// Joins a module prefix and a tensor name with a dot (`""` is the root).
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
