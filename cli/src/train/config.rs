//! The settings of a fine-tuning run: the command-line flags ([`TrainFlags`]), and the complete,
//! resolved configuration ([`TrainConfig`]) that a run uses and writes to `config.json`, so a
//! run can be repeated or resumed from its directory alone.
//!
//! Every default lives here, in [`TrainFlags::resolve`]: the flags are `Option`s so that
//! `--resume` can tell which ones were given (a resumed run keeps its settings), and defaults
//! that depend on the model or the batch (the lr, BEiT's layer decay and drop path) are filled
//! in once the model is known.
use std::path::PathBuf;

use clce_engine::AllocatorModel;
use serde::{Deserialize, Serialize};

use super::error::{Result, TrainError};

/// The recipe's learning rate at an effective batch of 1024 images (METHOD.md), scaled
/// linearly with the batch.
pub const BASE_LR_PER_1024: f64 = 7e-4;

/// The learning rate the cosine decay ends at, unless it is above the run's lr.
const DEFAULT_MIN_LR: f64 = 1e-6;

/// What the defaults need to know about the model.
#[derive(Clone, Copy, Debug)]
pub struct ModelFacts {
    pub is_beit: bool,
    /// The input side the model requires (BEiT's patch grid is fixed), or None (ResNets take
    /// any size).
    pub fixed_image_size: Option<usize>,
}

/// Training settings given on the command line. Defaults are in brackets; `--resume` takes
/// them all from the run directory instead.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TrainFlags {
    /// Model preset: beit-base, resnet-101, resnet-50, beit-tiny, resnet-tiny [beit-base].
    /// With --weights, also beit or resnet (sizes read from the file).
    #[arg(long)]
    pub model: Option<String>,
    /// Pre-trained weights (safetensors, timm or transformers naming); without it the model
    /// starts from random weights.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Data set: cifar100, cifar10, imagefolder:PATH, synthetic[:classes=N,train=N,test=N]
    /// [cifar100].
    #[arg(long)]
    pub data: Option<String>,
    /// Where CIFAR's files are looked for [data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Classes of the classifier head [the data's]; more than the data has is allowed (the
    /// extra classes are never seen).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Input side in pixels [the model's: 224 for beit-base and the ResNets, 32 for beit-tiny].
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Training objective: clce, ce, supcon, ce+supcon, hscl, clce-nohnm, lacln, lacln-nohnm
    /// [clce]. SupCon uses factor 1 instead of tau/base_tau.
    #[arg(long)]
    pub loss: Option<String>,
    /// Weight of the contrastive term: (1 - lambda) CE + lambda contrastive [0.9].
    #[arg(long, allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// Temperature of the contrastive similarities [0.5].
    #[arg(long, allow_negative_numbers = true)]
    pub tau: Option<f64>,
    /// Hardness of the negative weights (LACLN, H-SCL) [1].
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f64>,
    /// Label smoothing of the cross-entropy term [0].
    #[arg(long, allow_negative_numbers = true)]
    pub label_smoothing: Option<f64>,
    /// Images per batch; each image gives two augmented views [64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate [7e-4 * batch / 1024].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// AdamW weight decay; none on biases, norms, the cls token, relative position tables and
    /// layer-scale vectors [0.05].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Layer-wise lr decay: layer i of L gets lr * decay^(L+1-i) [0.65 for BEiT, none for
    /// ResNet].
    #[arg(long, allow_negative_numbers = true)]
    pub layer_decay: Option<f64>,
    /// Epochs of linear warm-up before the cosine decay [5].
    #[arg(long, allow_negative_numbers = true)]
    pub warmup_epochs: Option<f64>,
    /// Learning rate at the end of the cosine decay [1e-6].
    #[arg(long, allow_negative_numbers = true)]
    pub min_lr: Option<f64>,
    /// Stochastic depth of BEiT's last block [0.15 for BEiT; ResNets have none].
    #[arg(long, allow_negative_numbers = true)]
    pub drop_path: Option<f64>,
    /// Clip the global gradient norm to this value [no clipping].
    #[arg(long, allow_negative_numbers = true)]
    pub clip_grad: Option<f64>,
    /// Passes over the training set [50].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Linear probe: train only the classifier and projection heads on a frozen encoder.
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Output size of the contrastive projection head; 0 uses the L2-normalised pooled
    /// feature directly (the paper's text) [128].
    #[arg(long)]
    pub proj_dim: Option<usize>,
    /// Seed of the model's initialisation, the data order, the augmentation and drop path [0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write a metrics line every this many steps [10].
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Images per evaluation batch [2 * batch size].
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// Skip the gradient check before the first step.
    #[arg(long)]
    pub no_gradcheck: bool,
    /// Gradient check: images of the first batch to use (two views each) [2].
    #[arg(long)]
    pub gradcheck_images: Option<usize>,
    /// Gradient check: coordinates per checked tensor [2].
    #[arg(long)]
    pub gradcheck_coords: Option<usize>,
    /// Gradient check: largest relative error accepted, of the device's gradient against an
    /// f64 CPU copy and of that against f64 finite differences [0.01; see train/gradcheck].
    #[arg(long, allow_negative_numbers = true)]
    pub gradcheck_tol: Option<f64>,
    /// After every epoch, this many 5-way 1-shot and 5-shot few-shot episodes (cifar100:
    /// CIFAR-FS val classes; imagefolder: PATH/val; synthetic: its test split; not cifar10)
    /// [off; 300 when given without a number].
    #[arg(long, value_name = "EPISODES", num_args = 0..=1, default_missing_value = "300")]
    pub fewshot_eval: Option<usize>,
    /// Keep only each block's input during the forward pass and recompute the block in the
    /// backward pass (BEiT: per transformer block; ResNet: per bottleneck block and the
    /// stem): far less activation memory for about one more forward pass of time. Gradients
    /// are the same to f32 rounding; drop path is replayed exactly.
    #[arg(long)]
    pub checkpoint_activations: bool,
    /// Run each step's 2B views K at a time: the exact whole-batch gradient (every view is
    /// contrasted with every other) with the activation memory of K views, for one more
    /// forward pass of time. Drop path is the same whatever K; ResNet's BatchNorm normalises
    /// each chunk by its own statistics (like per-GPU BatchNorm in data-parallel training)
    /// and moves its running statistics once per step [off: all views at once].
    #[arg(long, value_name = "K")]
    pub micro_batch: Option<usize>,
    /// f16: the activations kept for the backward pass are stored in f16 (half their memory;
    /// the norms' inputs stay f32). Matmul, conv2d and attention read them as f16 operands and
    /// accumulate in f32; weights, gradients, optimiser state and all other arithmetic stay
    /// f32, and the loss is scaled dynamically. First-step gradients agree with f32 to about
    /// 1e-4 [f16 on a GPU with shader-f16, f32 on the CPU and other GPUs].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// With --precision f16: the first dynamic loss scale (the loss is multiplied by it
    /// before backward and the gradients divided by it after; halved on every step whose
    /// gradient overflows, which is then skipped) [65536, as torch's GradScaler].
    #[arg(long, value_name = "SCALE")]
    pub loss_scale_init: Option<f64>,
    /// With --precision f16: good steps in a row after which the loss scale doubles [2000].
    #[arg(long, value_name = "STEPS")]
    pub loss_scale_growth_interval: Option<usize>,
}

/// `--loss-scale-init` and `--loss-scale-growth-interval`, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScalingConfig {
    pub init: f64,
    pub growth_interval: usize,
}

impl LossScalingConfig {
    pub fn engine(&self) -> clce_engine::optim::LossScaling {
        clce_engine::optim::LossScaling {
            init: self.init,
            growth_interval: self.growth_interval,
        }
    }
}

/// How the activations a training step keeps for its backward pass are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl Precision {
    /// As `--precision` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// A run's precision without `--precision`. f16 on a GPU whose kernels read f16 operands
    /// (shader-f16): there it takes about a quarter off the step's peak at the same accuracy
    /// (BENCHMARKS.md, "Mixed precision"). f32 elsewhere: on the CPU f16 saves the same memory
    /// but costs time, and a GPU without shader-f16 widens matmul's f16 operands back to f32
    /// before each product.
    pub fn default_for(target: AllocatorModel) -> Precision {
        match target {
            AllocatorModel::Gpu {
                shader_f16: true, ..
            } => Precision::F16,
            AllocatorModel::Gpu { .. } | AllocatorModel::Cpu => Precision::F32,
        }
    }
}

/// Every setting of a run, resolved. Written to `config.json`; `--resume` reads it back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: String,
    pub weights: Option<PathBuf>,
    pub data: String,
    pub data_dir: PathBuf,
    pub image_size: usize,
    /// Classes of the data set (the classifier head's size).
    pub num_classes: usize,
    pub proj_dim: usize,
    pub loss: String,
    pub lambda: f64,
    pub tau: f64,
    pub beta: f64,
    pub label_smoothing: f64,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub layer_decay: Option<f64>,
    pub warmup_epochs: f64,
    pub min_lr: f64,
    pub drop_path: f64,
    pub clip_grad: Option<f64>,
    pub epochs: usize,
    pub freeze_backbone: bool,
    pub seed: u64,
    pub log_every: usize,
    pub eval_batch_size: usize,
    pub gradcheck: GradcheckSettings,
    /// Few-shot episodes per shot setting after every epoch (None: no few-shot evaluation).
    /// Absent from the config.json of older runs.
    #[serde(default)]
    pub fewshot_eval: Option<usize>,
    /// `--checkpoint-activations` (absent from older runs' config.json: off).
    #[serde(default)]
    pub checkpoint_activations: bool,
    /// `--micro-batch` (absent from older runs' config.json: off).
    #[serde(default)]
    pub micro_batch: Option<usize>,
    /// `--precision` (absent from older runs' config.json: f32).
    #[serde(default)]
    pub precision: Precision,
    /// Dynamic loss scaling of `--precision f16` (None with f32, and in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaling: Option<LossScalingConfig>,
    /// Optimiser steps per epoch: training images / batch size (the last partial batch is
    /// dropped).
    pub steps_per_epoch: usize,
    /// The device the run started on (informational: a resumed run may use another).
    pub device: String,
    /// Version of clce that wrote the file.
    pub clce_version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradcheckSettings {
    pub enabled: bool,
    pub images: usize,
    pub coords_per_tensor: usize,
    pub tolerance: f64,
}

impl Default for GradcheckSettings {
    fn default() -> Self {
        GradcheckSettings {
            enabled: true,
            images: 2,
            coords_per_tensor: 2,
            tolerance: super::gradcheck::DEFAULT_TOLERANCE,
        }
    }
}

impl TrainFlags {
    /// The model preset named (or the default), needed before anything else is resolved.
    pub fn model_name(&self) -> &str {
        self.model.as_deref().unwrap_or("beit-base")
    }

    pub fn data_spec(&self) -> &str {
        self.data.as_deref().unwrap_or("cifar100")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"))
    }

    /// These flags with the defaults that depend on the device filled in (`--precision`).
    pub fn with_device_defaults(&self, target: AllocatorModel) -> TrainFlags {
        TrainFlags {
            precision: Some(self.precision.unwrap_or(Precision::default_for(target))),
            ..self.clone()
        }
    }

    /// The input side: the flag, else the model's.
    pub fn image_size(&self, model: &ModelFacts) -> Result<usize> {
        match (self.image_size, model.fixed_image_size) {
            (Some(given), Some(fixed)) if given != fixed => Err(TrainError::Invalid(format!(
                "--image-size {given}: this model takes {fixed}x{fixed} images (its patch grid \
                 and position tables are fixed)"
            ))),
            (Some(0), _) => Err(TrainError::Invalid("--image-size must be above 0".into())),
            (Some(given), _) => Ok(given),
            (None, fixed) => Ok(fixed.unwrap_or(224)),
        }
    }

    /// Flags that would change a run's settings; `--resume` refuses them.
    pub fn given_settings(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        let mut check = |set: bool, name: &'static str| {
            if set {
                given.push(name);
            }
        };
        check(self.model.is_some(), "--model");
        check(self.weights.is_some(), "--weights");
        check(self.data.is_some(), "--data");
        check(self.image_size.is_some(), "--image-size");
        check(self.num_classes.is_some(), "--num-classes");
        check(self.loss.is_some(), "--loss");
        check(self.lambda.is_some(), "--lambda");
        check(self.tau.is_some(), "--tau");
        check(self.beta.is_some(), "--beta");
        check(self.label_smoothing.is_some(), "--label-smoothing");
        check(self.batch_size.is_some(), "--batch-size");
        check(self.lr.is_some(), "--lr");
        check(self.weight_decay.is_some(), "--weight-decay");
        check(self.layer_decay.is_some(), "--layer-decay");
        check(self.warmup_epochs.is_some(), "--warmup-epochs");
        check(self.min_lr.is_some(), "--min-lr");
        check(self.drop_path.is_some(), "--drop-path");
        check(self.clip_grad.is_some(), "--clip-grad");
        check(self.epochs.is_some(), "--epochs");
        check(self.freeze_backbone, "--freeze-backbone");
        check(self.proj_dim.is_some(), "--proj-dim");
        check(self.seed.is_some(), "--seed");
        check(self.log_every.is_some(), "--log-every");
        check(self.eval_batch_size.is_some(), "--eval-batch-size");
        check(self.gradcheck_images.is_some(), "--gradcheck-images");
        check(self.gradcheck_coords.is_some(), "--gradcheck-coords");
        check(self.gradcheck_tol.is_some(), "--gradcheck-tol");
        check(self.fewshot_eval.is_some(), "--fewshot-eval");
        check(self.checkpoint_activations, "--checkpoint-activations");
        check(self.micro_batch.is_some(), "--micro-batch");
        check(self.precision.is_some(), "--precision");
        check(self.loss_scale_init.is_some(), "--loss-scale-init");
        check(
            self.loss_scale_growth_interval.is_some(),
            "--loss-scale-growth-interval",
        );
        given
    }

    /// The complete configuration of a new run on a data set with `num_classes` classes and
    /// `train_images` training images.
    pub fn resolve(
        &self,
        model: &ModelFacts,
        num_classes: usize,
        train_images: usize,
        device: &str,
    ) -> Result<TrainConfig> {
        let batch_size = self.batch_size.unwrap_or(64);
        let cfg = TrainConfig {
            model: self.model_name().to_string(),
            weights: self.weights.clone(),
            data: self.data_spec().to_string(),
            data_dir: self.data_dir(),
            image_size: self.image_size(model)?,
            num_classes,
            proj_dim: self.proj_dim.unwrap_or(128),
            loss: self.loss.clone().unwrap_or_else(|| "clce".into()),
            lambda: self.lambda.unwrap_or(0.9),
            tau: self.tau.unwrap_or(0.5),
            beta: self.beta.unwrap_or(1.0),
            label_smoothing: self.label_smoothing.unwrap_or(0.0),
            batch_size,
            lr: self
                .lr
                .unwrap_or(BASE_LR_PER_1024 * batch_size as f64 / 1024.0),
            weight_decay: self.weight_decay.unwrap_or(0.05),
            layer_decay: self.layer_decay.or(model.is_beit.then_some(0.65)),
            warmup_epochs: self.warmup_epochs.unwrap_or(5.0),
            min_lr: self.min_lr.unwrap_or(DEFAULT_MIN_LR),
            drop_path: self
                .drop_path
                .unwrap_or(if model.is_beit { 0.15 } else { 0.0 }),
            clip_grad: self.clip_grad,
            epochs: self.epochs.unwrap_or(50),
            freeze_backbone: self.freeze_backbone,
            seed: self.seed.unwrap_or(0),
            log_every: self.log_every.unwrap_or(10),
            eval_batch_size: self.eval_batch_size.unwrap_or(2 * batch_size),
            gradcheck: GradcheckSettings {
                enabled: !self.no_gradcheck,
                images: self
                    .gradcheck_images
                    .unwrap_or(GradcheckSettings::default().images),
                coords_per_tensor: self
                    .gradcheck_coords
                    .unwrap_or(GradcheckSettings::default().coords_per_tensor),
                tolerance: self
                    .gradcheck_tol
                    .unwrap_or(GradcheckSettings::default().tolerance),
            },
            fewshot_eval: self.fewshot_eval,
            checkpoint_activations: self.checkpoint_activations,
            micro_batch: self.micro_batch,
            precision: self.precision.unwrap_or_default(),
            loss_scaling: self.loss_scaling()?,
            steps_per_epoch: train_images / batch_size.max(1),
            device: device.to_string(),
            clce_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        // The default floor of the cosine decay must not exceed a small batch's scaled lr
        // (--batch-size 1 gives 6.8e-7): the user set neither, so neither is to blame.
        let cfg = match self.min_lr {
            None if cfg.lr < DEFAULT_MIN_LR => TrainConfig {
                min_lr: cfg.lr / 10.0,
                ..cfg
            },
            _ => cfg,
        };
        if !model.is_beit && self.drop_path.is_some_and(|p| p > 0.0) {
            return Err(TrainError::Invalid(
                "--drop-path: ResNets have no stochastic depth; drop the flag".into(),
            ));
        }
        cfg.validate(train_images)?;
        Ok(cfg)
    }
}

impl TrainFlags {
    /// Loss scaling goes with f16 (f32 gradients cannot overflow where f16 ones would).
    fn loss_scaling(&self) -> Result<Option<LossScalingConfig>> {
        let defaults = clce_engine::optim::LossScaling::default();
        if self.precision.unwrap_or_default() != Precision::F16 {
            if self.loss_scale_init.is_some() || self.loss_scale_growth_interval.is_some() {
                return Err(TrainError::Invalid(
                    "--loss-scale-init and --loss-scale-growth-interval apply to --precision \
                     f16 only (f32 runs are not loss-scaled); add --precision f16 or drop them"
                        .into(),
                ));
            }
            return Ok(None);
        }
        let scaling = LossScalingConfig {
            init: self.loss_scale_init.unwrap_or(defaults.init),
            growth_interval: self
                .loss_scale_growth_interval
                .unwrap_or(defaults.growth_interval),
        };
        scaling.engine().validate().map_err(|e| {
            TrainError::Invalid(format!(
                "--loss-scale-init / --loss-scale-growth-interval: {e}"
            ))
        })?;
        Ok(Some(scaling))
    }
}

impl TrainConfig {
    /// Rejects settings that cannot train, naming the flag.
    pub fn validate(&self, train_images: usize) -> Result<()> {
        let bad = |msg: String| Err(TrainError::Invalid(msg));
        let positive_finite = |x: f64| x.is_finite() && x > 0.0;
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if self.batch_size > train_images {
            return bad(format!(
                "--batch-size {} is larger than the training set ({train_images} images); \
                 incomplete batches are dropped, so no step would run",
                self.batch_size
            ));
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.micro_batch == Some(0) {
            return bad("--micro-batch must be at least 1 view (or leave it out)".into());
        }
        if !positive_finite(self.lr) {
            return bad(format!("--lr {} must be a number above 0", self.lr));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad(format!(
                "--min-lr {} must lie between 0 and the lr ({}{})",
                self.min_lr,
                self.lr,
                if self.lr == BASE_LR_PER_1024 * self.batch_size as f64 / 1024.0 {
                    format!(
                        ", scaled from --batch-size {}: {BASE_LR_PER_1024:e} x batch / 1024; \
                         set --lr to choose another",
                        self.batch_size
                    )
                } else {
                    String::new()
                }
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("--weight-decay {} must be >= 0", self.weight_decay));
        }
        if let Some(d) = self.layer_decay {
            if !(d > 0.0 && d <= 1.0) {
                return bad(format!("--layer-decay {d} must lie in (0, 1]"));
            }
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return bad(format!(
                "--warmup-epochs {} must be >= 0",
                self.warmup_epochs
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return bad(format!("--drop-path {} must lie in [0, 1)", self.drop_path));
        }
        if let Some(c) = self.clip_grad {
            if !positive_finite(c) {
                return bad(format!("--clip-grad {c} must be a number above 0"));
            }
        }
        if !positive_finite(self.tau) {
            return bad(format!("--tau {} must be above 0", self.tau));
        }
        if !self.beta.is_finite() {
            return bad(format!("--beta {} must be a number", self.beta));
        }
        if !(0.0..=1.0).contains(&self.lambda) {
            return bad(format!("--lambda {} must lie in [0, 1]", self.lambda));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "--label-smoothing {} must lie in [0, 1)",
                self.label_smoothing
            ));
        }
        if self.log_every == 0 || self.eval_batch_size == 0 {
            return bad("--log-every and --eval-batch-size must be at least 1".into());
        }
        let g = &self.gradcheck;
        if g.images < 2 {
            return bad(format!(
                "--gradcheck-images {} must be at least 2 (the contrastive losses need negatives)",
                g.images
            ));
        }
        if g.coords_per_tensor == 0 {
            return bad("--gradcheck-coords must be at least 1".into());
        }
        if !positive_finite(g.tolerance) {
            return bad(format!(
                "--gradcheck-tol {} must be a number above 0",
                g.tolerance
            ));
        }
        Ok(())
    }

    /// Settings that train but probably not as meant.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.warmup_steps() >= self.total_steps() {
            w.push(format!(
                "--warmup-epochs {} is not shorter than the run ({} epochs, {} steps): the \
                 learning rate never reaches --lr {:e} and never decays; use a shorter \
                 --warmup-epochs (e.g. {})",
                self.warmup_epochs,
                self.epochs,
                self.total_steps(),
                self.lr,
                self.epochs as f64 / 10.0
            ));
        }
        w
    }

    pub fn total_steps(&self) -> usize {
        self.epochs * self.steps_per_epoch
    }

    /// Warm-up in optimiser steps (the schedule works in steps, the flag in epochs).
    pub fn warmup_steps(&self) -> usize {
        (self.warmup_epochs * self.steps_per_epoch as f64).round() as usize
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config serialises")
    }
}
