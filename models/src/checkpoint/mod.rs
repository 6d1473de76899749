//! Checkpoint files: the safetensors files users download from timm's and transformers' hubs,
//! and the ones this crate writes.
//!
//! Reading goes file -> [`Checkpoint`] (names and dtypes as stored, floats widened to f32) ->
//! [`TimmCheckpoint`] (every name in timm's naming, BEiT's separate query/key/value weights
//! fused into one qkv weight). Models are built from the latter by [`crate::Model::load`],
//! which reports what was missing, unexpected or misshapen ([`LoadReport`]).
mod file;
pub mod naming;
mod report;

use std::collections::BTreeMap;
use std::path::Path;

pub use file::{read_header, Header};
pub use naming::{detect, ArchKind, Naming};
pub use report::{LoadReport, Mismatch, Missing};

use crate::Result;
use naming::TimmName;

/// Element types a file may hold. Floats are converted to f32 when read; integers are the
/// index and counter buffers (`relative_position_index`, `num_batches_tracked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
}

impl FileDType {
    pub fn is_float(self) -> bool {
        !matches!(self, FileDType::I64 | FileDType::I32)
    }
}

impl std::fmt::Display for FileDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileDType::F64 => "F64",
            FileDType::F32 => "F32",
            FileDType::F16 => "F16",
            FileDType::BF16 => "BF16",
            FileDType::I64 => "I64",
            FileDType::I32 => "I32",
        })
    }
}

impl std::str::FromStr for FileDType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(FileDType::F32),
            "f16" | "float16" | "half" => Ok(FileDType::F16),
            "bf16" | "bfloat16" => Ok(FileDType::BF16),
            "f64" | "float64" => Ok(FileDType::F64),
            _ => Err(format!(
                "unknown dtype {s:?}: expected f32, f16, bf16 or f64"
            )),
        }
    }
}

/// A tensor's values in memory: floats as f32 whatever their file dtype, integers as i64.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Values::F32(_) => "float",
            Values::I64(_) => "integer",
        }
    }
}

/// One tensor of a file: the dtype it is stored as, its shape and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct FileTensor {
    pub dtype: FileDType,
    pub shape: Vec<usize>,
    pub values: Values,
}

impl FileTensor {
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        FileTensor {
            dtype: FileDType::F32,
            shape,
            values: Values::F32(values),
        }
    }
    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Self {
        FileTensor {
            dtype: FileDType::I64,
            shape,
            values: Values::I64(values),
        }
    }
}

/// The tensors of a safetensors file under the names the file uses, with its metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    pub tensors: BTreeMap<String, FileTensor>,
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Reads a whole file. Truncated or corrupt files and unsupported dtypes are errors that
    /// name the problem.
    pub fn read(path: impl AsRef<Path>) -> Result<Checkpoint> {
        file::read(path.as_ref())
    }

    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        file::write(path.as_ref(), self)
    }

    /// Renames every tensor to timm's naming (a no-op for timm and torchvision files).
    pub fn into_timm(self) -> Result<TimmCheckpoint> {
        let renamed = to_timm_names(self.tensors)?;
        Ok(TimmCheckpoint {
            arch: renamed.arch,
            naming: renamed.naming,
            tensors: renamed.tensors,
            origins: renamed.origins,
            metadata: self.metadata,
        })
    }
}

/// A checkpoint in timm's naming, whatever naming its file used.
#[derive(Clone, Debug)]
pub struct TimmCheckpoint {
    pub arch: ArchKind,
    /// The naming of the file it was read from.
    pub naming: Naming,
    pub tensors: BTreeMap<String, FileTensor>,
    /// For renamed tensors: the name(s) they had in the file (for messages).
    pub origins: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
}

impl TimmCheckpoint {
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shape.clone()))
            .collect()
    }
}

/// What a tensor name can be mapped with: a tensor, or only its dtype and shape (inspecting
/// a file's header). Several transformers tensors can become one timm tensor by stacking
/// their rows.
pub trait Rows: Sized {
    fn shape(&self) -> &[usize];
    fn is_float(&self) -> bool;
    /// Stacks tensors of equal trailing dimensions along the first axis.
    fn concat_rows(parts: Vec<Self>) -> Self;
}

impl Rows for FileTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn is_float(&self) -> bool {
        self.dtype.is_float()
    }
    fn concat_rows(parts: Vec<Self>) -> Self {
        let mut shape = parts[0].shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        let dtype = parts[0].dtype;
        let mut values = Vec::with_capacity(shape.iter().product());
        for p in parts {
            if let Values::F32(v) = p.values {
                values.extend(v);
            }
        }
        FileTensor {
            dtype,
            shape,
            values: Values::F32(values),
        }
    }
}

impl Rows for (FileDType, Vec<usize>) {
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn is_float(&self) -> bool {
        self.0.is_float()
    }
    fn concat_rows(parts: Vec<Self>) -> Self {
        let mut shape = parts[0].1.clone();
        shape[0] = parts.iter().map(|p| p.1[0]).sum();
        (parts[0].0, shape)
    }
}

pub struct Renamed<T> {
    pub arch: ArchKind,
    pub naming: Naming,
    pub tensors: BTreeMap<String, T>,
    pub origins: BTreeMap<String, String>,
}

/// Renames tensors to timm's naming. Names the map does not know keep their own name (so
/// that loading reports them as unexpected); query/key/value weights that cannot be fused
/// (one missing, shapes that disagree) also keep theirs, and the fused qkv is then missing.
pub fn to_timm_names<T: Rows>(tensors: BTreeMap<String, T>) -> Result<Renamed<T>> {
    let (arch, naming) = detect(tensors.keys().map(String::as_str))?;
    if naming == Naming::Timm {
        return Ok(Renamed {
            arch,
            naming,
            tensors,
            origins: BTreeMap::new(),
        });
    }
    let mut out = BTreeMap::new();
    let mut origins = BTreeMap::new();
    let mut qkv: BTreeMap<usize, [Option<(String, T)>; 3]> = BTreeMap::new();
    for (name, t) in tensors {
        match naming::transformers_to_timm(arch, &name) {
            Some(TimmName::Is(timm)) => {
                origins.insert(timm.clone(), name);
                out.insert(timm, t);
            }
            Some(TimmName::QkvPart { block, part }) => {
                qkv.entry(block).or_default()[part] = Some((name, t));
            }
            None => {
                out.insert(name, t);
            }
        }
    }
    for (block, parts) in qkv {
        let fusable = match &parts {
            [Some((_, q)), Some((_, k)), Some((_, v))] => {
                let rows_agree = |a: &T, b: &T| {
                    a.shape().len() == 2 && b.shape().len() == 2 && a.shape()[1] == b.shape()[1]
                };
                [q, k, v].iter().all(|t| t.is_float()) && rows_agree(q, k) && rows_agree(q, v)
            }
            _ => false,
        };
        if fusable {
            let (names, parts): (Vec<String>, Vec<T>) = parts.into_iter().flatten().unzip();
            let timm = format!("blocks.{block}.attn.qkv.weight");
            origins.insert(timm.clone(), names.join(" + "));
            out.insert(timm, T::concat_rows(parts));
        } else {
            for (name, t) in parts.into_iter().flatten() {
                out.insert(name, t);
            }
        }
    }
    Ok(Renamed {
        arch,
        naming,
        tensors: out,
        origins,
    })
}

#[cfg(test)]
mod tests;
