//! Reading a model's configuration off the tensor shapes of a checkpoint in timm's naming,
//! so that any BEiT or bottleneck ResNet loads without being told its size.
use std::collections::BTreeMap;

use super::{Architecture, BeitConfig, ResNetConfig};
use crate::checkpoint::ArchKind;
use crate::{Error, Result};

/// A configuration read from a file. The head sizes are None when the file has no such head.
#[derive(Clone, Debug, PartialEq)]
pub struct Inferred {
    pub arch: Architecture,
    pub num_classes: Option<usize>,
    pub proj_dim: Option<usize>,
}

type Shapes = BTreeMap<String, Vec<usize>>;

fn get<'a>(shapes: &'a Shapes, name: &str, rank: usize) -> Result<&'a [usize]> {
    let s = shapes.get(name).ok_or_else(|| {
        Error::config(format!(
            "cannot infer the configuration: the file has no {name}"
        ))
    })?;
    if s.len() != rank {
        return Err(Error::config(format!(
            "cannot infer the configuration: {name} has shape {s:?}, expected {rank} dimensions"
        )));
    }
    Ok(s)
}

/// Number of consecutive indices i = 0, 1, ... such that some name starts with `prefix{i}.`.
fn count_indexed(shapes: &Shapes, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            let p = format!("{prefix}{i}.");
            shapes.keys().any(|n| n.starts_with(&p))
        })
        .count()
}

pub fn infer(arch: ArchKind, shapes: &Shapes) -> Result<Inferred> {
    let arch = match arch {
        ArchKind::Beit => Architecture::Beit(infer_beit(shapes)?),
        ArchKind::ResNet => Architecture::ResNet(infer_resnet(shapes)?),
    };
    let head = match arch {
        Architecture::Beit(_) => "head.weight",
        Architecture::ResNet(_) => "fc.weight",
    };
    Ok(Inferred {
        arch,
        num_classes: shapes.get(head).and_then(|s| s.first().copied()),
        proj_dim: shapes.get("proj.2.weight").and_then(|s| s.first().copied()),
    })
}

fn infer_beit(shapes: &Shapes) -> Result<BeitConfig> {
    if shapes.contains_key("pos_embed")
        || shapes.contains_key("rel_pos_bias.relative_position_bias_table")
    {
        return Err(Error::config(
            "this BEiT uses absolute position embeddings or a shared relative position bias; \
             only per-block relative position bias (the fine-tuned BEiT models) is supported",
        ));
    }
    let pe = get(shapes, "patch_embed.proj.weight", 4)?;
    let (width, in_chans, patch) = (pe[0], pe[1], pe[2]);
    if pe[3] != patch {
        return Err(Error::config(format!(
            "non-square patches {}x{} are not supported",
            pe[2], pe[3]
        )));
    }
    let table = get(shapes, "blocks.0.attn.relative_position_bias_table", 2)?;
    let (rows, heads) = (table[0], table[1]);
    // rows = (2W - 1)^2 + 3 for a W x W grid of patches.
    let span = (rows.saturating_sub(3) as f64).sqrt().round() as usize;
    if span * span + 3 != rows || span.is_multiple_of(2) {
        return Err(Error::config(format!(
            "blocks.0.attn.relative_position_bias_table has {rows} rows, which is not \
             (2W-1)^2 + 3 for any square grid of W x W patches"
        )));
    }
    let grid = span.div_ceil(2);
    let mlp_hidden = get(shapes, "blocks.0.mlp.fc1.weight", 2)?[0];
    Ok(BeitConfig {
        image_size: grid * patch,
        patch_size: patch,
        in_chans,
        width,
        depth: count_indexed(shapes, "blocks."),
        heads,
        mlp_hidden,
        layer_scale: shapes.contains_key("blocks.0.gamma_1").then_some(0.1),
        norm_eps: 1e-6,
        drop_path_rate: 0.0,
    })
}

fn infer_resnet(shapes: &Shapes) -> Result<ResNetConfig> {
    let conv1 = get(shapes, "conv1.weight", 4)?;
    if conv1[2] != 7 || conv1[3] != 7 {
        return Err(Error::config(format!(
            "conv1.weight has shape {conv1:?}: only the 7x7 stem of torchvision's ResNet is \
             supported (not the deep stems of resnet-c/d variants)"
        )));
    }
    let stages = (1..)
        .take_while(|s| shapes.contains_key(&format!("layer{s}.0.conv1.weight")))
        .count();
    if stages == 0 {
        return Err(Error::config(
            "cannot infer the configuration: the file has no layer1.0.conv1.weight",
        ));
    }
    let mut layers = Vec::new();
    let mut widths = Vec::new();
    for s in 1..=stages {
        let prefix = format!("layer{s}.");
        if !shapes.contains_key(&format!("{prefix}0.conv3.weight")) {
            return Err(Error::config(
                "this ResNet has basic blocks (no conv3): only bottleneck ResNets (50, 101, \
                 152) are supported",
            ));
        }
        let width = get(shapes, &format!("{prefix}0.conv1.weight"), 4)?[0];
        let out = get(shapes, &format!("{prefix}0.conv3.weight"), 4)?[0];
        if out != width * ResNetConfig::EXPANSION {
            return Err(Error::config(format!(
                "layer{s} expands {width} channels to {out}; bottlenecks expand by {}",
                ResNetConfig::EXPANSION
            )));
        }
        layers.push(count_indexed(shapes, &prefix));
        widths.push(width);
    }
    Ok(ResNetConfig {
        in_chans: conv1[1],
        stem_width: conv1[0],
        layers,
        widths,
        bn_eps: 1e-5,
        bn_momentum: 0.1,
    })
}
