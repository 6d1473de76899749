//! Which model a file holds and how its tensors are named, and the map from transformers'
//! names to timm's (the naming this crate uses everywhere, see MODELS.md).
//!
//! The map is written once per direction as plain string rewriting; the tests check that the
//! two directions are inverse over the full name lists of the hub's BEiT-base and ResNet-101.
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchKind {
    Beit,
    #[serde(rename = "resnet")]
    ResNet,
}

impl ArchKind {
    pub fn name(self) -> &'static str {
        match self {
            ArchKind::Beit => "beit",
            ArchKind::ResNet => "resnet",
        }
    }
}

impl std::fmt::Display for ArchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The library whose naming a file follows. torchvision's ResNet names are timm's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    Timm,
    Transformers,
}

impl std::fmt::Display for Naming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Naming::Timm => "timm",
            Naming::Transformers => "transformers",
        })
    }
}

/// Tells the architecture and the naming from the tensor names alone.
pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(ArchKind, Naming)> {
    let names: Vec<&str> = names.into_iter().collect();
    let any = |f: &dyn Fn(&str) -> bool| names.iter().any(|n| f(n));
    if any(&|n| n.starts_with("beit.")) {
        return Ok((ArchKind::Beit, Naming::Transformers));
    }
    if any(&|n| n.starts_with("resnet.")) {
        return Ok((ArchKind::ResNet, Naming::Transformers));
    }
    if any(&|n| n.starts_with("blocks.") || n.starts_with("patch_embed.")) {
        return Ok((ArchKind::Beit, Naming::Timm));
    }
    if any(&|n| n.starts_with("layer1.") || n == "conv1.weight") {
        return Ok((ArchKind::ResNet, Naming::Timm));
    }
    let mut sample: Vec<&str> = names.iter().copied().take(5).collect();
    if names.len() > 5 {
        sample.push("...");
    }
    Err(Error::config(format!(
        "cannot tell the architecture: expected the tensor names of a BEiT or ResNet in timm, \
         torchvision or transformers naming, found [{}]",
        sample.join(", ")
    )))
}

/// Where a transformers tensor goes in timm's naming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimmName {
    /// A plain rename.
    Is(String),
    /// Rows `part` (0 = query, 1 = key, 2 = value) of block `block`'s fused qkv weight.
    QkvPart { block: usize, part: usize },
}

/// Per-block BEiT names: (transformers suffix after `beit.encoder.layer.{i}.`, timm suffix
/// after `blocks.{i}.`).
const BEIT_BLOCK: &[(&str, &str)] = &[
    ("lambda_1", "gamma_1"),
    ("lambda_2", "gamma_2"),
    ("layernorm_before.weight", "norm1.weight"),
    ("layernorm_before.bias", "norm1.bias"),
    ("layernorm_after.weight", "norm2.weight"),
    ("layernorm_after.bias", "norm2.bias"),
    ("attention.attention.query.bias", "attn.q_bias"),
    ("attention.attention.value.bias", "attn.v_bias"),
    (
        "attention.attention.relative_position_bias.relative_position_bias_table",
        "attn.relative_position_bias_table",
    ),
    (
        "attention.attention.relative_position_bias.relative_position_index",
        "attn.relative_position_index",
    ),
    ("attention.output.dense.weight", "attn.proj.weight"),
    ("attention.output.dense.bias", "attn.proj.bias"),
    ("intermediate.dense.weight", "mlp.fc1.weight"),
    ("intermediate.dense.bias", "mlp.fc1.bias"),
    ("output.dense.weight", "mlp.fc2.weight"),
    ("output.dense.bias", "mlp.fc2.bias"),
];

/// BEiT names outside the blocks: (transformers, timm).
const BEIT_TOP: &[(&str, &str)] = &[
    ("beit.embeddings.cls_token", "cls_token"),
    (
        "beit.embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.weight",
    ),
    (
        "beit.embeddings.patch_embeddings.projection.bias",
        "patch_embed.proj.bias",
    ),
    ("beit.pooler.layernorm.weight", "fc_norm.weight"),
    ("beit.pooler.layernorm.bias", "fc_norm.bias"),
    ("classifier.weight", "head.weight"),
    ("classifier.bias", "head.bias"),
];

const QKV: [&str; 3] = ["query", "key", "value"];

/// The timm name of a transformers tensor, or None for a name we do not know (it will be
/// reported as unexpected under its own name).
pub fn transformers_to_timm(arch: ArchKind, name: &str) -> Option<TimmName> {
    match arch {
        ArchKind::Beit => beit_to_timm(name),
        ArchKind::ResNet => resnet_to_timm(name).map(TimmName::Is),
    }
}

/// The transformers name(s) a timm tensor comes from (for messages about missing tensors).
pub fn timm_to_transformers(arch: ArchKind, name: &str) -> Option<String> {
    match arch {
        ArchKind::Beit => beit_to_transformers(name),
        ArchKind::ResNet => resnet_to_transformers(name),
    }
}

fn beit_to_timm(name: &str) -> Option<TimmName> {
    if let Some(&(_, timm)) = BEIT_TOP.iter().find(|(hf, _)| *hf == name) {
        return Some(TimmName::Is(timm.to_string()));
    }
    let rest = name.strip_prefix("beit.encoder.layer.")?;
    let (block, suffix) = rest.split_once('.')?;
    let block: usize = block.parse().ok()?;
    if let Some(part) = QKV
        .iter()
        .position(|p| suffix == format!("attention.attention.{p}.weight"))
    {
        return Some(TimmName::QkvPart { block, part });
    }
    let &(_, timm) = BEIT_BLOCK.iter().find(|(hf, _)| *hf == suffix)?;
    Some(TimmName::Is(format!("blocks.{block}.{timm}")))
}

fn beit_to_transformers(name: &str) -> Option<String> {
    if let Some(&(hf, _)) = BEIT_TOP.iter().find(|(_, timm)| *timm == name) {
        return Some(hf.to_string());
    }
    let rest = name.strip_prefix("blocks.")?;
    let (block, suffix) = rest.split_once('.')?;
    let block: usize = block.parse().ok()?;
    let prefix = format!("beit.encoder.layer.{block}.");
    if suffix == "attn.qkv.weight" {
        return Some(format!(
            "{prefix}attention.attention.{{query,key,value}}.weight"
        ));
    }
    let &(hf, _) = BEIT_BLOCK.iter().find(|(_, timm)| *timm == suffix)?;
    Some(format!("{prefix}{hf}"))
}

/// BatchNorm tensor suffixes, the same in both namings.
const BN_FIELDS: &[&str] = &[
    "weight",
    "bias",
    "running_mean",
    "running_var",
    "num_batches_tracked",
];

/// `convolution.weight` -> conv, `normalization.X` -> bn + X, in either naming's words.
fn conv_or_norm(suffix: &str) -> Option<(bool, &str)> {
    if suffix == "convolution.weight" {
        return Some((true, "weight"));
    }
    let field = suffix.strip_prefix("normalization.")?;
    BN_FIELDS.contains(&field).then_some((false, field))
}

fn resnet_to_timm(name: &str) -> Option<String> {
    if let Some(field) = name.strip_prefix("classifier.1.") {
        return Some(format!("fc.{field}"));
    }
    if let Some(suffix) = name.strip_prefix("resnet.embedder.embedder.") {
        return Some(match conv_or_norm(suffix)? {
            (true, _) => "conv1.weight".to_string(),
            (false, field) => format!("bn1.{field}"),
        });
    }
    // resnet.encoder.stages.{s}.layers.{b}.(layer.{k}|shortcut).(convolution|normalization).*
    let rest = name.strip_prefix("resnet.encoder.stages.")?;
    let (stage, rest) = rest.split_once('.')?;
    let stage: usize = stage.parse().ok()?;
    let rest = rest.strip_prefix("layers.")?;
    let (block, rest) = rest.split_once('.')?;
    let block: usize = block.parse().ok()?;
    let prefix = format!("layer{}.{block}", stage + 1);
    if let Some(suffix) = rest.strip_prefix("shortcut.") {
        return Some(match conv_or_norm(suffix)? {
            (true, _) => format!("{prefix}.downsample.0.weight"),
            (false, field) => format!("{prefix}.downsample.1.{field}"),
        });
    }
    let rest = rest.strip_prefix("layer.")?;
    let (k, suffix) = rest.split_once('.')?;
    let k: usize = k.parse().ok()?;
    Some(match conv_or_norm(suffix)? {
        (true, _) => format!("{prefix}.conv{}.weight", k + 1),
        (false, field) => format!("{prefix}.bn{}.{field}", k + 1),
    })
}

fn resnet_to_transformers(name: &str) -> Option<String> {
    if let Some(field) = name.strip_prefix("fc.") {
        return Some(format!("classifier.1.{field}"));
    }
    let stem = "resnet.embedder.embedder";
    if name == "conv1.weight" {
        return Some(format!("{stem}.convolution.weight"));
    }
    if let Some(field) = name.strip_prefix("bn1.") {
        return Some(format!("{stem}.normalization.{field}"));
    }
    // layer{s}.{b}.(conv{k}|bn{k}|downsample.0|downsample.1).*
    let rest = name.strip_prefix("layer")?;
    let (stage, rest) = rest.split_once('.')?;
    let stage: usize = stage.parse().ok()?;
    let (block, rest) = rest.split_once('.')?;
    let block: usize = block.parse().ok()?;
    let prefix = format!(
        "resnet.encoder.stages.{}.layers.{block}",
        stage.checked_sub(1)?
    );
    if rest == "downsample.0.weight" {
        return Some(format!("{prefix}.shortcut.convolution.weight"));
    }
    if let Some(field) = rest.strip_prefix("downsample.1.") {
        return Some(format!("{prefix}.shortcut.normalization.{field}"));
    }
    let (module, field) = rest.split_once('.')?;
    if let Some(k) = module.strip_prefix("conv") {
        let k: usize = k.parse().ok()?;
        return Some(format!(
            "{prefix}.layer.{}.convolution.{field}",
            k.checked_sub(1)?
        ));
    }
    let k: usize = module.strip_prefix("bn")?.parse().ok()?;
    Some(format!(
        "{prefix}.layer.{}.normalization.{field}",
        k.checked_sub(1)?
    ))
}
