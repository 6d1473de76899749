//! A model as CLCE uses it: an encoder (BEiT or ResNet) that gives the pooled feature h, the
//! classifier head (logits = Linear(h)) and our contrastive projection head
//! g(h) = Linear(d, proj_dim)(ReLU(Linear(d, d)(h))) (METHOD.md, step 3).
//!
//! Models are built fresh ([`Model::new`]) or from a checkpoint file ([`Model::load`]), and
//! saved in timm's naming ([`Model::save`]) with their configuration in the file's metadata.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clce_engine::optim::{skips_weight_decay, ParamGroup};
use clce_engine::{DType, Device, Tensor};

use crate::beit::Beit;
use crate::checkpoint::{Checkpoint, FileDType, FileTensor, LoadReport, TimmCheckpoint, Values};
use crate::config::{self, Architecture, ModelConfig, DEFAULT_PROJ_DIM};
use crate::layers::Linear;
use crate::mode::Mode;
use crate::params::{Builder, ParamStore, Role};
use crate::resnet::ResNet;
use crate::{Error, Result};

/// Prefix of our projection head's tensors in saved files (`proj.0` and `proj.2`, the
/// indices of `nn.Sequential(Linear, ReLU, Linear)`, so PyTorch users can load it).
pub const PROJ_PREFIX: &str = "proj.";

/// Where the projection head of the model file `path` is kept, beside it:
/// `best.safetensors` -> `best.proj_head.safetensors`. timm's strict loading refuses tensors it
/// has no place for, so the model file itself holds only what timm knows.
pub fn proj_head_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}.proj_head.safetensors"))
}

pub enum Encoder {
    Beit(Beit),
    ResNet(ResNet),
}

/// g(h) = fc2(ReLU(fc1(h))).
pub struct ProjectionHead {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl ProjectionHead {
    fn build(b: &mut Builder, dim: usize, proj_dim: usize) -> Result<ProjectionHead> {
        Ok(ProjectionHead {
            fc1: Linear::build_default(b, "proj.0", dim, dim)?,
            fc2: Linear::build_default(b, "proj.2", dim, proj_dim)?,
        })
    }
}

pub struct Model {
    config: ModelConfig,
    store: ParamStore,
    pub encoder: Encoder,
    pub proj: Option<ProjectionHead>,
    class_names: Option<Vec<String>>,
    /// Recompute each block's activations in the backward pass instead of keeping them.
    checkpointing: bool,
}

/// What a forward pass gives: the pooled feature h [N, d], the logits [N, classes], and the
/// contrastive projection g(h) [N, proj_dim] (h itself when the model has no projection
/// head). The projection is not normalised: the contrastive losses L2-normalise it.
pub struct Output {
    pub pooled: Tensor,
    pub logits: Tensor,
    pub projection: Tensor,
}

/// How to build a model from a checkpoint file.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// A preset name (`beit-base`, `resnet-101`, ...: every shape is checked against it),
    /// `beit` or `resnet` (any size, read from the file, but that architecture), or None
    /// (whatever the file holds).
    pub model: Option<String>,
    /// Classes of the classifier head; when it differs from the file's, the head is
    /// initialised afresh. None: the file's.
    pub num_classes: Option<usize>,
    /// Output size of the projection head (0: none). None: the file's, else 128.
    pub proj_dim: Option<usize>,
    /// BEiT's stochastic depth rate at the last block (timm's drop_path_rate; the recipe
    /// fine-tunes with 0.15). A training setting: files do not fix it, ResNets have none.
    pub drop_path_rate: f64,
    pub device: Device,
    /// Seed of whatever is initialised rather than loaded.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            model: None,
            num_classes: None,
            proj_dim: None,
            drop_path_rate: 0.0,
            device: Device::Cpu,
            seed: 0,
        }
    }
}

/// How to save a model.
#[derive(Clone, Debug)]
pub struct SaveOptions {
    /// Float type of the weights (F32, F16, BF16 or F64).
    pub dtype: FileDType,
    /// Whether to write our projection head (`proj.*`); timm's models have no place for it.
    pub projection_head: bool,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            dtype: FileDType::F32,
            projection_head: true,
        }
    }
}

impl Model {
    /// A freshly initialised model (timm's initialisation).
    pub fn new(config: ModelConfig, device: &Device, seed: u64) -> Result<Model> {
        let mut b = Builder::new(device, seed);
        let (encoder, proj) = build(&config, &mut b)?;
        let (store, _) = b.finish();
        Ok(Model {
            config,
            store,
            encoder,
            proj,
            class_names: None,
            checkpointing: false,
        })
    }

    /// Loads a checkpoint in timm, torchvision or transformers naming (F32, F16 or BF16).
    /// Anything that does not load is an error listing every problem, except what is meant
    /// to be initialised: the classifier head when `num_classes` differs from the file's, and
    /// the projection head when the file has none. The report says what was done.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<(Model, LoadReport)> {
        let path = path.as_ref();
        let mut file = Checkpoint::read(path)?;
        let head_note = read_proj_head(path, &mut file)?;
        refuse_non_finite(path, &file)?;
        let mut ckpt = file.into_timm()?;
        let shapes = ckpt.shapes();
        let (mut arch, preset_classes) = resolve_arch(path, opts, &ckpt)?;
        if let Architecture::Beit(c) = &mut arch {
            c.drop_path_rate = opts.drop_path_rate;
        }
        let heads = HeadPlan::new(path, opts, &arch, &shapes, preset_classes)?;
        if heads.drop_file_proj {
            ckpt.tensors.retain(|n, _| !n.starts_with(PROJ_PREFIX));
        }
        let config = ModelConfig {
            arch,
            num_classes: heads.num_classes,
            proj_dim: heads.proj_dim,
        };
        config.validate()?;
        let head_prefix = config.head_prefix();
        let class_names = if heads.reinit.iter().any(|p| p == head_prefix) {
            None
        } else {
            class_names_from(&ckpt.metadata, config.num_classes)
        };
        let HeadPlan {
            reinit,
            optional,
            notes,
            ..
        } = heads;
        let mut b = Builder::from_checkpoint(ckpt, &opts.device, opts.seed, reinit, optional);
        let (encoder, proj) = build(&config, &mut b)?;
        let (store, report) = b.finish();
        let mut report = report.expect("a checkpoint build has a report");
        report.notes.extend(notes);
        report.notes.extend(head_note);
        if !report.is_ok() {
            return Err(Error::Mismatch {
                path: path.to_path_buf(),
                report: Box::new(report),
            });
        }
        let model = Model {
            config,
            store,
            encoder,
            proj,
            class_names,
            checkpointing: false,
        };
        Ok((model, report))
    }

    /// A copy of this model with its float tensors in `dtype` on `device` (the gradient
    /// check's f64 CPU reference). Counters and index tables keep their f32 values.
    pub fn converted(&self, device: &Device, dtype: DType) -> Result<Model> {
        let mut b = Builder::new(device, 0).with_dtype(dtype);
        let (encoder, proj) = build(&self.config, &mut b)?;
        let (store, _) = b.finish();
        for entry in store.iter() {
            let src = self.store.get(&entry.name).ok_or_else(|| {
                Error::config(format!("{} is missing from the model", entry.name))
            })?;
            let values = src.to_vec_f64()?;
            let dt = entry.tensor.dtype();
            let copy = Tensor::from_f64_slice(&values, src.dims(), dt, device)?;
            entry.tensor.assign(&copy)?;
        }
        Ok(Model {
            config: self.config.clone(),
            store,
            encoder,
            proj,
            class_names: self.class_names.clone(),
            checkpointing: false,
        })
    }

    /// Runs the model on images x [N, C, H, W] (normalised as `config().normalization()`
    /// says).
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Output> {
        let pooled = self.features(x, mode)?;
        self.heads(pooled)
    }

    /// The encoder alone: the pooled features h [N, width].
    pub fn features(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let checkpointing = self.checkpointing;
        match &self.encoder {
            Encoder::Beit(m) => m.forward_features(x, mode, checkpointing),
            Encoder::ResNet(m) => m.forward_features(x, mode, checkpointing),
        }
    }

    /// The classifier and the projection head on pooled features h.
    pub fn heads(&self, pooled: Tensor) -> Result<Output> {
        let head = match &self.encoder {
            Encoder::Beit(m) => m.head(),
            Encoder::ResNet(m) => m.head(),
        };
        let logits = head.forward(&pooled)?;
        let projection = match &self.proj {
            Some(p) => p.fc2.forward(&p.fc1.forward(&pooled)?.relu()?)?,
            None => pooled.clone(),
        };
        Ok(Output {
            pooled,
            logits,
            projection,
        })
    }

    /// Every tensor under its timm name, with the metadata that describes the model.
    /// Floats are written as `opts.dtype`; counters and index tables as I64.
    pub fn to_checkpoint(&self, opts: &SaveOptions) -> Result<Checkpoint> {
        let dtype = opts.dtype;
        if !dtype.is_float() {
            return Err(Error::config(format!(
                "weights are saved as a float type, not {dtype}"
            )));
        }
        let mut tensors = BTreeMap::new();
        for e in self.store.iter() {
            if !opts.projection_head && e.name.starts_with(PROJ_PREFIX) {
                continue;
            }
            let values = e.tensor.to_vec_f32()?;
            let shape = e.tensor.dims().to_vec();
            let t = if e.role.is_integer() {
                FileTensor::i64(shape, values.iter().map(|&v| v as i64).collect())
            } else {
                FileTensor {
                    dtype,
                    shape,
                    values: Values::F32(values),
                }
            };
            tensors.insert(e.name.clone(), t);
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("format".into(), "pt".into());
        metadata.insert(
            "library".into(),
            format!("clce-models {}", env!("CARGO_PKG_VERSION")),
        );
        metadata.insert("architecture".into(), self.config.kind().name().into());
        metadata.insert("config".into(), self.config.to_json());
        metadata.insert("num_classes".into(), self.config.num_classes.to_string());
        if let Some(names) = &self.class_names {
            metadata.insert(
                "class_names".into(),
                serde_json::to_string(names).expect("strings serialise"),
            );
        }
        Ok(Checkpoint { tensors, metadata })
    }

    /// Saves in timm's naming. timm loads the file with
    /// `model.load_state_dict(safetensors.torch.load_file(path))`, strictly when it was saved
    /// without the projection head (`projection_head: false`; timm has no `proj.*`), and so
    /// does [`Model::load`].
    pub fn save(&self, path: impl AsRef<Path>, opts: &SaveOptions) -> Result<()> {
        self.to_checkpoint(opts)?.write(path)
    }

    /// Saves for timm and for us: the model without our projection head to `path` (timm's
    /// strict loading takes it as it is), and the head, when the model has one, to `head`
    /// (normally [`proj_head_path`]`(path)`, where [`Model::load`] looks for it).
    pub fn save_with_head(
        &self,
        path: impl AsRef<Path>,
        head: impl AsRef<Path>,
        opts: &SaveOptions,
    ) -> Result<()> {
        let mut ckpt = self.to_checkpoint(opts)?;
        let head_tensors: BTreeMap<String, FileTensor> = ckpt
            .tensors
            .iter()
            .filter(|(n, _)| n.starts_with(PROJ_PREFIX))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        ckpt.tensors.retain(|n, _| !n.starts_with(PROJ_PREFIX));
        ckpt.write(path)?;
        if !head_tensors.is_empty() {
            let mut metadata = BTreeMap::new();
            metadata.insert("format".into(), "pt".into());
            metadata.insert(
                "library".into(),
                format!("clce-models {}", env!("CARGO_PKG_VERSION")),
            );
            metadata.insert("content".into(), "clce projection head".into());
            Checkpoint {
                tensors: head_tensors,
                metadata,
            }
            .write(head)?;
        }
        Ok(())
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// Names the classes (saved with the model); one name per class.
    pub fn set_class_names(&mut self, names: Vec<String>) -> Result<()> {
        if names.len() != self.config.num_classes {
            return Err(Error::config(format!(
                "{} class names for a {}-class head",
                names.len(),
                self.config.num_classes
            )));
        }
        self.class_names = Some(names);
        Ok(())
    }

    /// Trainable parameters of the encoder and classifier head, as timm counts them (not
    /// our projection head).
    pub fn num_params(&self) -> usize {
        self.store.num_trainable() - self.store.num_trainable_under(PROJ_PREFIX)
    }

    /// Trainable parameters of the projection head alone.
    pub fn num_proj_params(&self) -> usize {
        self.store.num_trainable_under(PROJ_PREFIX)
    }

    /// Layer id of a parameter for layer-wise learning-rate decay, in 0..num_layer_ids():
    /// BEiT: embeddings 0, block i -> i + 1, head and projection depth + 1; ResNet: stem 0,
    /// stage s -> s, head and projection stages + 1.
    pub fn layer_id(&self, name: &str) -> usize {
        match &self.encoder {
            Encoder::Beit(m) => m.layer_id(name),
            Encoder::ResNet(m) => m.layer_id(name),
        }
    }

    /// Optimiser groups of the fine-tuning recipe (METHOD.md): weight decay on weight
    /// matrices only (`skips_weight_decay`: no decay on biases, norms, layer scales, the cls
    /// token and relative position tables), and with `layer_decay` Some(d) layer-wise lr
    /// decay: a parameter of layer id i gets lr scale d^(num_layer_ids() - 1 - i), so the
    /// head and projection train at the full lr and the embeddings at the smallest.
    pub fn param_groups(&self, weight_decay: f64, layer_decay: Option<f64>) -> Vec<ParamGroup> {
        let top = self.num_layer_ids() - 1;
        let mut groups: BTreeMap<(usize, bool), ParamGroup> = BTreeMap::new();
        for (name, t) in self.store.trainable() {
            let layer = if layer_decay.is_some() {
                self.layer_id(name)
            } else {
                top
            };
            let decays = !skips_weight_decay(name, t.shape());
            groups
                .entry((layer, decays))
                .or_insert_with(|| {
                    let lr_scale = layer_decay.map_or(1.0, |d| d.powi((top - layer) as i32));
                    ParamGroup::new(lr_scale, if decays { weight_decay } else { 0.0 })
                })
                .push(name, t);
        }
        groups.into_values().collect()
    }

    pub fn num_layer_ids(&self) -> usize {
        match &self.config.arch {
            Architecture::Beit(c) => c.depth + 2,
            Architecture::ResNet(c) => c.layers.len() + 2,
        }
    }

    /// Recompute each block's activations during the backward pass instead of keeping them
    /// (less memory, one more forward per block; gradients are identical).
    pub fn set_activation_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
    }

    pub fn parameters(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.store.trainable()
    }

    /// The tensors of `role` (what a train-mode forward moves: `Role::Buffer`, BatchNorm's
    /// running statistics, and `Role::Counter`, its batch counters).
    pub fn tensors_of(&self, role: Role) -> impl Iterator<Item = &Tensor> {
        self.store
            .iter()
            .filter(move |e| e.role == role)
            .map(|e| &e.tensor)
    }

    pub fn buffers(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.store
            .iter()
            .filter(|e| e.role != Role::Trainable)
            .map(|e| (e.name.as_str(), &e.tensor))
    }
}

fn build(config: &ModelConfig, b: &mut Builder) -> Result<(Encoder, Option<ProjectionHead>)> {
    config.validate()?;
    let encoder = match &config.arch {
        Architecture::Beit(c) => Encoder::Beit(Beit::build(c, config.num_classes, b)?),
        Architecture::ResNet(c) => Encoder::ResNet(ResNet::build(c, config.num_classes, b)?),
    };
    let proj = (config.proj_dim > 0)
        .then(|| ProjectionHead::build(b, config.feature_dim(), config.proj_dim))
        .transpose()?;
    Ok((encoder, proj))
}

/// Class names saved by [`Model::save`] (a JSON list under `class_names`), when they fit.
fn class_names_from(
    metadata: &BTreeMap<String, String>,
    num_classes: usize,
) -> Option<Vec<String>> {
    let names: Vec<String> = serde_json::from_str(metadata.get("class_names")?).ok()?;
    (names.len() == num_classes).then_some(names)
}

/// The architecture to build: a preset's (checked against the file's kind), or the file's
/// own, inferred from its shapes. Also the preset's class count, if any.
fn resolve_arch(
    path: &Path,
    opts: &LoadOptions,
    ckpt: &TimmCheckpoint,
) -> Result<(Architecture, Option<usize>)> {
    let wrong_kind = |wanted: &str| {
        Error::config(format!(
            "{} holds a {}, not a {wanted}",
            path.display(),
            ckpt.arch
        ))
    };
    match opts.model.as_deref() {
        Some(kind @ ("beit" | "resnet")) if kind != ckpt.arch.name() => Err(wrong_kind(kind)),
        Some("beit" | "resnet") | None => {
            Ok((config::infer(ckpt.arch, &ckpt.shapes())?.arch, None))
        }
        Some(name) => {
            let preset = ModelConfig::preset(name)?;
            if preset.kind() != ckpt.arch {
                return Err(wrong_kind(name));
            }
            Ok((preset.arch, Some(preset.num_classes)))
        }
    }
}

/// What to do with the two heads: sizes, and which of the file's tensors to load.
struct HeadPlan {
    num_classes: usize,
    proj_dim: usize,
    /// Prefixes initialised even though the file has them (a size that changed).
    reinit: Vec<String>,
    /// Prefixes the file may lack.
    optional: Vec<String>,
    /// Whether to ignore the file's projection head (the model has none).
    drop_file_proj: bool,
    notes: Vec<String>,
}

impl HeadPlan {
    fn new(
        path: &Path,
        opts: &LoadOptions,
        arch: &Architecture,
        shapes: &BTreeMap<String, Vec<usize>>,
        preset_classes: Option<usize>,
    ) -> Result<HeadPlan> {
        let rows = |name: &str| shapes.get(name).and_then(|s| s.first().copied());
        let head = arch.head_prefix();
        let mut plan = HeadPlan {
            num_classes: 0,
            proj_dim: 0,
            reinit: Vec::new(),
            optional: vec![PROJ_PREFIX.to_string()],
            drop_file_proj: false,
            notes: Vec::new(),
        };

        // A head weight that is not a matrix is misshapen, not missing: the builder reports
        // it as not fitting, and nothing here may call it absent.
        let head_shape = shapes.get(&format!("{head}weight"));
        let file_classes = head_shape.filter(|s| s.len() == 2).map(|s| s[0]);
        plan.num_classes = opts
            .num_classes
            .or(file_classes)
            .or(preset_classes)
            .ok_or_else(|| {
                Error::config(match head_shape {
                    Some(shape) => format!(
                        "{}: the classifier head {head}weight has shape {shape:?}, not \
                         [classes, width]; the file is damaged",
                        path.display()
                    ),
                    None => format!(
                        "{} has no classifier head ({head}weight): say how many classes",
                        path.display()
                    ),
                })
            })?;
        match file_classes {
            Some(n) if n != plan.num_classes => {
                plan.reinit.push(head.to_string());
                plan.notes.push(format!(
                    "classifier head re-initialised: the file's has {n} classes, the model {}",
                    plan.num_classes
                ));
            }
            Some(_) => {}
            None if head_shape.is_some() => {}
            None => {
                plan.optional.push(head.to_string());
                plan.notes.push(format!(
                    "the file has no classifier head: initialised one for {} classes",
                    plan.num_classes
                ));
            }
        }

        let file_proj = rows("proj.2.weight");
        plan.proj_dim = opts.proj_dim.or(file_proj).unwrap_or(DEFAULT_PROJ_DIM);
        match file_proj {
            Some(_) if plan.proj_dim == 0 => {
                plan.drop_file_proj = true;
                plan.notes
                    .push("the file's projection head was left out (proj_dim 0)".into());
            }
            Some(p) if p != plan.proj_dim => {
                plan.reinit.push(PROJ_PREFIX.to_string());
                plan.notes.push(format!(
                    "projection head re-initialised: the file's projects to {p}, the model to {}",
                    plan.proj_dim
                ));
            }
            _ => {}
        }
        Ok(plan)
    }
}

/// Errors, naming every tensor that holds NaN or infinite values and how many, unless all
/// are finite: such weights would give NaN logits (or, before NaN propagated everywhere,
/// finite nonsense) and a run that fails at its first step for reasons it cannot name.
fn refuse_non_finite(path: &Path, file: &Checkpoint) -> Result<()> {
    let bad: Vec<String> = file
        .tensors
        .iter()
        .filter_map(|(name, t)| match &t.values {
            Values::F32(v) => {
                let n = v.iter().filter(|x| !x.is_finite()).count();
                let nan = v.iter().filter(|x| x.is_nan()).count();
                (n > 0).then(|| {
                    format!(
                        "{name}: {n} of {} values are not finite ({nan} NaN, {} infinite)",
                        v.len(),
                        n - nan
                    )
                })
            }
            Values::I64(_) => None,
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::Format {
        path: path.to_path_buf(),
        msg: format!(
            "the weights are not all finite numbers, so the model cannot compute anything \
             meaningful; re-export them from a good copy (a training run's last \
             safetensors before it diverged, or the original download)\n  {}",
            bad.join("\n  ")
        ),
    })
}

/// The header of the model file `path` with the projection head kept beside it, if any, as
/// [`Model::load`] sees them.
pub fn read_header_with_head(path: &Path) -> Result<crate::checkpoint::Header> {
    let mut header = crate::checkpoint::read_header(path)?;
    let head_path = proj_head_path(path);
    if !header.tensors.keys().any(|n| n.starts_with(PROJ_PREFIX)) && head_path.is_file() {
        let head = crate::checkpoint::read_header(&head_path)?;
        header.tensors.extend(
            head.tensors
                .into_iter()
                .filter(|(n, _)| n.starts_with(PROJ_PREFIX)),
        );
    }
    Ok(header)
}

/// Adds the projection head kept beside the model file `path` ([`proj_head_path`]) to
/// `file`, unless the file has one inside (single-file checkpoints of earlier versions).
/// Returns a note for the load report when it did.
fn read_proj_head(path: &Path, file: &mut Checkpoint) -> Result<Option<String>> {
    let head_path = proj_head_path(path);
    if file.tensors.keys().any(|n| n.starts_with(PROJ_PREFIX)) || !head_path.is_file() {
        return Ok(None);
    }
    let head = Checkpoint::read(&head_path)?;
    let mut taken = 0;
    for (name, t) in head.tensors {
        if name.starts_with(PROJ_PREFIX) {
            file.tensors.insert(name, t);
            taken += 1;
        }
    }
    Ok(Some(format!(
        "projection head ({taken} tensors) read from {}",
        head_path.display()
    )))
}
