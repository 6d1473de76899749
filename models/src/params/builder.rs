//! Building a model's tensors, either freshly initialised or taken from a checkpoint.
//!
//! Model constructors ask the builder for each tensor by name, shape and initialiser. With a
//! checkpoint attached, the builder takes the file's tensor of that name instead (moving its
//! values, no copy), and notes every name that is missing, misshapen or unusable; whatever
//! the file holds that nobody asked for is reported as unexpected when the builder finishes.
//! Construction always completes (with initial values where the file failed), so one load
//! attempt reports every problem at once.
use std::collections::BTreeMap;

use clce_engine::{DType, Device, Tensor};

use super::{seed_for, Init, ParamStore, Role};
use crate::checkpoint::naming::timm_to_transformers;
use crate::checkpoint::{
    FileTensor, LoadReport, Mismatch, Missing, Naming, TimmCheckpoint, Values,
};
use crate::Result;

struct FileSource {
    tensors: BTreeMap<String, FileTensor>,
    origins: BTreeMap<String, String>,
    /// Name prefixes initialised even when the file has them (a head whose size changed).
    reinit: Vec<String>,
    /// Name prefixes that the file may lack (our projection head).
    optional: Vec<String>,
    report: LoadReport,
}

pub struct Builder {
    store: ParamStore,
    device: Device,
    /// The dtype of float parameters and buffers (F32 but for the gradient check's f64
    /// reference copy).
    dtype: DType,
    seed: u64,
    file: Option<FileSource>,
}

/// What became of one requested tensor.
enum Taken {
    Values(Values),
    /// Not taken from the file: initialise it.
    Init,
}

impl Builder {
    /// A builder that initialises every tensor, seeded per tensor name.
    pub fn new(device: &Device, seed: u64) -> Self {
        Builder {
            store: ParamStore::default(),
            device: device.clone(),
            dtype: DType::F32,
            seed,
            file: None,
        }
    }

    /// Float parameters and buffers in `dtype` rather than F32.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// A builder that takes tensors from `checkpoint`. Names under a `reinit` prefix are
    /// initialised and the file's versions dropped; names under an `optional` prefix are
    /// loaded when present and initialised otherwise.
    pub fn from_checkpoint(
        checkpoint: TimmCheckpoint,
        device: &Device,
        seed: u64,
        reinit: Vec<String>,
        optional: Vec<String>,
    ) -> Self {
        let report = LoadReport::new(checkpoint.arch, checkpoint.naming);
        Builder {
            store: ParamStore::default(),
            device: device.clone(),
            dtype: DType::F32,
            seed,
            file: Some(FileSource {
                tensors: checkpoint.tensors,
                origins: checkpoint.origins,
                reinit,
                optional,
                report,
            }),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trainable tensors created so far whose names start with `prefix` (a block's
    /// parameters, for activation checkpointing).
    pub fn trainable_under(&self, prefix: &str) -> Vec<Tensor> {
        self.store
            .trainable()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// A trainable parameter.
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let t = self.float(name, shape, init)?.set_requires_grad(true);
        self.store.insert(name, t.clone(), Role::Trainable)?;
        Ok(t)
    }

    /// Float state that is not trained (BatchNorm running statistics); required in files.
    pub fn buffer(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let t = self.float(name, shape, init)?;
        self.store.insert(name, t.clone(), Role::Buffer)?;
        Ok(t)
    }

    /// A scalar integer counter (BatchNorm's `num_batches_tracked`): loaded when the file
    /// has it, 0 otherwise (files may omit it).
    pub fn counter(&mut self, name: &str) -> Result<Tensor> {
        let mut value = 0.0;
        if let Some(file) = &mut self.file {
            if let Some(t) = file.tensors.remove(name) {
                match (&t.values, t.values.len()) {
                    (Values::I64(v), 1) => {
                        value = v[0] as f32;
                        file.report.loaded += 1;
                    }
                    _ => file.report.invalid.push(format!(
                        "{name}: a counter must be one integer, the file has {} {} of shape {:?}",
                        t.dtype,
                        t.values.kind(),
                        t.shape
                    )),
                }
            }
        }
        let t = Tensor::from_vec(vec![value], Vec::<usize>::new(), &self.device)?;
        self.store.insert(name, t.clone(), Role::Counter)?;
        Ok(t)
    }

    /// A fixed integer table the model computes itself (BEiT's relative position index). Files
    /// may carry it; when they do it must equal `values`.
    pub fn index(&mut self, name: &str, shape: &[usize], values: &[usize]) -> Result<Tensor> {
        if let Some(file) = &mut self.file {
            if let Some(t) = file.tensors.remove(name) {
                let same = match &t.values {
                    Values::I64(v) => v.iter().zip(values).all(|(&a, &b)| a == b as i64),
                    Values::F32(v) => v.iter().zip(values).all(|(&a, &b)| a == b as f32),
                };
                if t.shape != shape {
                    file.mismatch(name, shape, &t.shape);
                } else if !same {
                    file.report.invalid.push(format!(
                        "{name}: its values differ from the relative position index this \
                         model builds (MODELS.md gives the formula)"
                    ));
                } else {
                    file.report.loaded += 1;
                }
            }
        }
        let as_f32 = values.iter().map(|&v| v as f32).collect();
        let t = Tensor::from_vec(as_f32, shape.to_vec(), &self.device)?;
        self.store.insert(name, t.clone(), Role::Index)?;
        Ok(t)
    }

    fn float(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        if self.device.is_meta() && self.file.is_none() {
            // Shapes only (a memory plan): drawing 86M initial values would be wasted.
            return Ok(Tensor::zeros(shape.to_vec(), self.dtype, &self.device)?);
        }
        let values = match self.take(name, shape) {
            Taken::Values(Values::F32(v)) => v,
            // `take` only hands out float values.
            Taken::Values(Values::I64(_)) | Taken::Init => {
                init.values(shape, seed_for(self.seed, name))
            }
        };
        if self.dtype != DType::F32 {
            let wide: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
            return Ok(Tensor::from_f64_slice(
                &wide,
                shape,
                self.dtype,
                &self.device,
            )?);
        }
        Ok(Tensor::from_vec(values, shape.to_vec(), &self.device)?)
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Taken {
        let Some(file) = &mut self.file else {
            return Taken::Init;
        };
        let under = |prefixes: &[String]| prefixes.iter().any(|p| name.starts_with(p.as_str()));
        if under(&file.reinit) {
            file.tensors.remove(name);
            file.report.initialised.push(name.to_string());
            return Taken::Init;
        }
        let Some(t) = file.tensors.remove(name) else {
            if under(&file.optional) {
                file.report.initialised.push(name.to_string());
            } else {
                let file_name = match file.report.naming {
                    Naming::Transformers => timm_to_transformers(file.report.arch, name),
                    Naming::Timm => None,
                };
                file.report.missing.push(Missing {
                    name: name.to_string(),
                    shape: shape.to_vec(),
                    file_name,
                });
            }
            return Taken::Init;
        };
        if t.shape != shape {
            file.mismatch(name, shape, &t.shape);
            return Taken::Init;
        }
        if !t.dtype.is_float() {
            file.report.invalid.push(format!(
                "{name}: stored as {}, but weights must be floating point",
                t.dtype
            ));
            return Taken::Init;
        }
        file.report.loaded += 1;
        Taken::Values(t.values)
    }

    /// The store, and for a checkpoint build the report (tensors nobody asked for are
    /// unexpected).
    pub fn finish(self) -> (ParamStore, Option<LoadReport>) {
        let report = self.file.map(|mut file| {
            for (name, t) in std::mem::take(&mut file.tensors) {
                file.report.unexpected.push((name, t.shape));
            }
            file.report
        });
        (self.store, report)
    }
}

impl FileSource {
    fn mismatch(&mut self, name: &str, expected: &[usize], found: &[usize]) {
        self.report.mismatched.push(Mismatch {
            name: name.to_string(),
            file_name: self.origins.get(name).cloned(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
}
