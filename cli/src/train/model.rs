//! The product's models (`clce_models::Model`) as the trainer sees them, and how a run gets
//! its model: a preset or a checkpoint's shapes say what it is, `--weights` or random
//! initialisation what it starts from.
use std::collections::BTreeMap;
use std::path::Path;

use clce_engine::loss::{objective, LossConfig, LossKind};
use clce_engine::optim::ParamGroup;
use clce_engine::{no_grad, DType, Device, Tensor};
use clce_models::config::{infer, PRESETS};
use clce_models::model::PROJ_PREFIX;
use clce_models::{Architecture, LoadOptions, LoadReport, Model, ModelConfig, Role, SaveOptions};

use super::config::{ModelFacts, TrainConfig};
use super::error::{Result, TrainError};
use super::network::{GroupOptions, Mode, Network, Output, RunningState};
use crate::data::Normalization;

/// A model being fine-tuned. With a frozen backbone (linear probe) the encoder runs without
/// recording gradients, so backward only goes through the heads.
pub struct Finetuned {
    pub model: Model,
    pub frozen_backbone: bool,
}

impl Network for Finetuned {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Output> {
        if !self.frozen_backbone {
            return Ok(self.model.forward(x, mode)?);
        }
        // The encoder in eval mode without a tape; the heads as in Model::forward.
        let pooled = {
            let _no_grad = no_grad();
            self.model.features(x, Mode::Eval)?
        };
        Ok(self.model.heads(pooled)?)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.model
            .parameters()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect()
    }

    fn param_groups(&self, opts: &GroupOptions) -> Vec<ParamGroup> {
        let groups = self.model.param_groups(opts.weight_decay, opts.layer_decay);
        if !opts.heads_only {
            return groups;
        }
        let head = self.model.config().head_prefix();
        groups
            .into_iter()
            .map(|mut g| {
                g.params
                    .retain(|p| p.name.starts_with(head) || p.name.starts_with(PROJ_PREFIX));
                g
            })
            .filter(|g| !g.params.is_empty())
            .collect()
    }

    fn save(&self, path: &Path, head: &Path) -> Result<()> {
        Ok(self
            .model
            .save_with_head(path, head, &SaveOptions::default())?)
    }

    fn f64_reference(&self) -> Result<Box<dyn Network>> {
        Ok(Box::new(Finetuned {
            model: self.model.converted(&Device::Cpu, DType::F64)?,
            frozen_backbone: self.frozen_backbone,
        }))
    }

    fn running_state(&self) -> RunningState {
        let of = |role| self.model.tensors_of(role).cloned().collect();
        RunningState {
            statistics: of(Role::Buffer),
            counters: of(Role::Counter),
        }
    }
}

/// What a `--model` name (and `--weights` file) describe, before any weights are read: a
/// preset's configuration, or for `beit` / `resnet` the one inferred from the file's shapes.
pub fn describe(model: &str, weights: Option<&Path>) -> Result<ModelConfig> {
    if model != "beit" && model != "resnet" {
        return Ok(ModelConfig::preset(model)?);
    }
    let Some(path) = weights else {
        return Err(TrainError::Invalid(format!(
            "--model {model} takes its sizes from --weights FILE; without weights name a \
             preset: {}",
            PRESETS.join(", ")
        )));
    };
    let header = clce_models::model::read_header_with_head(path)?;
    let renamed = clce_models::checkpoint::to_timm_names(header.tensors)?;
    let shapes: BTreeMap<String, Vec<usize>> = renamed
        .tensors
        .into_iter()
        .map(|(n, (_, shape))| (n, shape))
        .collect();
    let inferred = infer(renamed.arch, &shapes)?;
    Ok(ModelConfig {
        arch: inferred.arch,
        num_classes: inferred.num_classes.unwrap_or(1),
        proj_dim: inferred.proj_dim.unwrap_or(0),
    })
}

pub fn facts(config: &ModelConfig) -> ModelFacts {
    match &config.arch {
        Architecture::Beit(c) => ModelFacts {
            is_beit: true,
            fixed_image_size: Some(c.image_size),
        },
        Architecture::ResNet(_) => ModelFacts {
            is_beit: false,
            fixed_image_size: None,
        },
    }
}

pub fn normalization(config: &ModelConfig) -> Normalization {
    let (mean, std) = config.normalization();
    Normalization { mean, std }
}

/// The model a new run starts from: `--weights` (with the classifier head re-initialised
/// when the class count differs), else random weights. Returns the load report, if a file
/// was read.
pub fn for_new_run(cfg: &TrainConfig, device: &Device) -> Result<(Model, Option<LoadReport>)> {
    match &cfg.weights {
        Some(path) => {
            let (mut model, report) = Model::load(path, &load_options(cfg, device))?;
            model.set_activation_checkpointing(cfg.checkpoint_activations);
            Ok((model, Some(report)))
        }
        None => Ok((random_model(cfg, device)?, None)),
    }
}

/// The run's model with random weights: the architecture of `--model` (or of `--weights`'s
/// shapes, reading only the file's header) with the run's heads and drop path.
pub fn random_model(cfg: &TrainConfig, device: &Device) -> Result<Model> {
    let mut config = describe(&cfg.model, cfg.weights.as_deref())?;
    config.num_classes = cfg.num_classes;
    config.proj_dim = cfg.proj_dim;
    if let Architecture::Beit(c) = &mut config.arch {
        c.drop_path_rate = cfg.drop_path;
    }
    let mut model = Model::new(config, device, cfg.seed)?;
    model.set_activation_checkpointing(cfg.checkpoint_activations);
    Ok(model)
}

/// The run's training objective (`--loss` and its settings) as the trainer calls it.
pub fn objective_for(cfg: &TrainConfig) -> Result<impl Fn(&Output, &[usize]) -> Result<Tensor>> {
    let kind: LossKind = cfg.loss.parse()?;
    let loss_cfg = LossConfig {
        tau: cfg.tau,
        beta: cfg.beta,
        lambda: cfg.lambda,
        label_smoothing: cfg.label_smoothing,
    };
    Ok(move |out: &Output, labels: &[usize]| -> Result<Tensor> {
        Ok(objective(
            kind,
            &loss_cfg,
            &out.projection,
            labels,
            Some(&out.logits),
        )?)
    })
}

/// The model of a run being resumed: its `last.safetensors`.
pub fn for_resumed_run(cfg: &TrainConfig, last: &Path, device: &Device) -> Result<Model> {
    let mut model = Model::load(last, &load_options(cfg, device))?.0;
    model.set_activation_checkpointing(cfg.checkpoint_activations);
    Ok(model)
}

fn load_options(cfg: &TrainConfig, device: &Device) -> LoadOptions {
    LoadOptions {
        model: Some(cfg.model.clone()),
        num_classes: Some(cfg.num_classes),
        proj_dim: Some(cfg.proj_dim),
        drop_path_rate: cfg.drop_path,
        device: device.clone(),
        seed: cfg.seed,
    }
}
