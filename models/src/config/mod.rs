//! Model configurations: presets, inference from a checkpoint's shapes, and the JSON written
//! into saved files' metadata.
mod infer;

use serde::{Deserialize, Serialize};

pub use infer::{infer, Inferred};

use crate::checkpoint::ArchKind;
use crate::{Error, Result};

/// BEiT with relative position bias per block and mean pooling (the fine-tuned
/// classification models of timm and transformers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BeitConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub in_chans: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_hidden: usize,
    /// Initial value of the layer-scale vectors gamma_1/gamma_2; None: the blocks have none.
    pub layer_scale: Option<f64>,
    pub norm_eps: f64,
    /// Stochastic depth of the last block; block i gets rate * i / (depth - 1) as in timm.
    pub drop_path_rate: f64,
}

impl BeitConfig {
    /// Patches per side (the relative-position window).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
    /// Rows of each block's relative position bias table: every (dy, dx) offset between two
    /// patches, plus cls->patch, patch->cls and cls->cls.
    pub fn table_rows(&self) -> usize {
        let span = 2 * self.grid() - 1;
        span * span + 3
    }
}

/// Bottleneck ResNet in torchvision's v1.5 layout (stride on the 3x3 conv).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub in_chans: usize,
    pub stem_width: usize,
    /// Bottleneck blocks per stage.
    pub layers: Vec<usize>,
    /// Inner width of each stage's blocks; a stage outputs `EXPANSION` times as many channels.
    pub widths: Vec<usize>,
    pub bn_eps: f64,
    pub bn_momentum: f64,
}

impl ResNetConfig {
    pub const EXPANSION: usize = 4;
    pub fn feature_dim(&self) -> usize {
        self.widths.last().copied().unwrap_or(self.stem_width) * Self::EXPANSION
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "architecture")]
pub enum Architecture {
    #[serde(rename = "beit")]
    Beit(BeitConfig),
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
}

impl Architecture {
    /// Name prefix of the classifier head (`head.` in BEiT, `fc.` in ResNet).
    pub fn head_prefix(&self) -> &'static str {
        match self {
            Architecture::Beit(_) => "head.",
            Architecture::ResNet(_) => "fc.",
        }
    }
}

/// Everything needed to build a model: the encoder, the class count of the classifier head,
/// and the output size of our contrastive projection head (0: no projection head).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    #[serde(flatten)]
    pub arch: Architecture,
    pub num_classes: usize,
    pub proj_dim: usize,
}

/// The projection size of the authors' code (METHOD.md).
pub const DEFAULT_PROJ_DIM: usize = 128;

pub const PRESETS: &[&str] = &[
    "beit-base",
    "beit-tiny",
    "resnet-101",
    "resnet-50",
    "resnet-tiny",
];

fn beit(image: usize, patch: usize, width: usize, depth: usize, heads: usize) -> Architecture {
    Architecture::Beit(BeitConfig {
        image_size: image,
        patch_size: patch,
        in_chans: 3,
        width,
        depth,
        heads,
        mlp_hidden: 4 * width,
        layer_scale: Some(0.1),
        norm_eps: 1e-6,
        drop_path_rate: 0.0,
    })
}

fn resnet(stem: usize, layers: &[usize], widths: &[usize]) -> Architecture {
    Architecture::ResNet(ResNetConfig {
        in_chans: 3,
        stem_width: stem,
        layers: layers.to_vec(),
        widths: widths.to_vec(),
        bn_eps: 1e-5,
        bn_momentum: 0.1,
    })
}

impl ModelConfig {
    /// A named configuration: `beit-base` (patch 16, 224 px), `resnet-101`, `resnet-50`, and the
    /// tiny models of the parity fixtures (`beit-tiny`, `resnet-tiny`, 10 classes).
    pub fn preset(name: &str) -> Result<ModelConfig> {
        let (arch, num_classes) = match name {
            "beit-base" => (beit(224, 16, 768, 12, 12), 1000),
            "beit-tiny" => (beit(32, 8, 64, 2, 4), 10),
            "resnet-101" => (resnet(64, &[3, 4, 23, 3], &[64, 128, 256, 512]), 1000),
            "resnet-50" => (resnet(64, &[3, 4, 6, 3], &[64, 128, 256, 512]), 1000),
            "resnet-tiny" => (resnet(64, &[1, 2, 1, 1], &[8, 16, 32, 64]), 10),
            _ => {
                return Err(Error::config(format!(
                    "unknown model {name:?}: expected one of {}, or beit / resnet to take the \
                     configuration from the checkpoint",
                    PRESETS.join(", ")
                )))
            }
        };
        Ok(ModelConfig {
            arch,
            num_classes,
            proj_dim: DEFAULT_PROJ_DIM,
        })
    }

    pub fn kind(&self) -> ArchKind {
        match self.arch {
            Architecture::Beit(_) => ArchKind::Beit,
            Architecture::ResNet(_) => ArchKind::ResNet,
        }
    }

    /// Size of the pooled feature h that the heads read.
    pub fn feature_dim(&self) -> usize {
        match &self.arch {
            Architecture::Beit(c) => c.width,
            Architecture::ResNet(c) => c.feature_dim(),
        }
    }

    /// Square input side the model expects (ResNets take any size; 224 is what they were
    /// trained at).
    pub fn image_size(&self) -> usize {
        match &self.arch {
            Architecture::Beit(c) => c.image_size,
            Architecture::ResNet(_) => 224,
        }
    }

    pub fn in_chans(&self) -> usize {
        match &self.arch {
            Architecture::Beit(c) => c.in_chans,
            Architecture::ResNet(c) => c.in_chans,
        }
    }

    /// Per-channel input normalisation the pre-trained weights expect: (mean, std).
    pub fn normalization(&self) -> ([f32; 3], [f32; 3]) {
        match self.arch {
            Architecture::Beit(_) => ([0.5; 3], [0.5; 3]),
            Architecture::ResNet(_) => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        }
    }

    /// Name prefix of the classifier head (`head.` in BEiT, `fc.` in ResNet).
    pub fn head_prefix(&self) -> &'static str {
        self.arch.head_prefix()
    }

    /// FLOPs of one image's forward pass at `image_size` px (BEiT: its configured size),
    /// encoder and heads: 2 per multiply-add of the matrix products and convolutions,
    /// element-wise work left out (see `beit::forward_macs`, `resnet::forward_macs`).
    pub fn forward_flops(&self, image_size: usize) -> u64 {
        let encoder = match &self.arch {
            Architecture::Beit(c) => crate::beit::forward_macs(c),
            Architecture::ResNet(c) => crate::resnet::forward_macs(c, image_size),
        };
        let d = self.feature_dim() as u64;
        let classifier = d * self.num_classes as u64;
        let projection = if self.proj_dim > 0 {
            d * d + d * self.proj_dim as u64
        } else {
            0
        };
        2 * (encoder + classifier + projection)
    }

    /// FLOPs of a training step over `images` images (views) at `image_size` px: forward and
    /// backward, the backward counted as twice the forward (per product, one for the input
    /// gradient and one for the weight gradient), the usual convention. The objective's own
    /// products (LACLN's M×M similarity) are not the model's and are left out: about 2 % of a
    /// beit-tiny step at 128 images, far less for the full-size models.
    pub fn train_flops(&self, images: usize, image_size: usize) -> u64 {
        3 * images as u64 * self.forward_flops(image_size)
    }

    /// Errors on configurations that cannot be built.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::config(msg));
        if self.num_classes == 0 {
            return bad("num_classes must be at least 1".into());
        }
        match &self.arch {
            Architecture::Beit(c) => {
                if c.width == 0 || c.heads == 0 || c.width % c.heads != 0 {
                    return bad(format!(
                        "BEiT width {} is not a multiple of {} heads",
                        c.width, c.heads
                    ));
                }
                if c.patch_size == 0 || c.image_size % c.patch_size != 0 || c.grid() == 0 {
                    return bad(format!(
                        "BEiT image size {} is not a positive multiple of patch size {}",
                        c.image_size, c.patch_size
                    ));
                }
                if c.depth == 0 || c.mlp_hidden == 0 || c.in_chans == 0 {
                    return bad("BEiT depth, MLP width and input channels must be positive".into());
                }
            }
            Architecture::ResNet(c) => {
                if c.layers.is_empty() || c.layers.len() != c.widths.len() {
                    return bad(format!(
                        "ResNet needs one width per stage: layers {:?}, widths {:?}",
                        c.layers, c.widths
                    ));
                }
                if c.layers.contains(&0) || c.widths.contains(&0) || c.stem_width == 0 {
                    return bad("ResNet stages, widths and stem must be positive".into());
                }
            }
        }
        Ok(())
    }

    /// The JSON written into a checkpoint's metadata under `config`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config serialises")
    }

    pub fn from_json(json: &str) -> Result<ModelConfig> {
        serde_json::from_str(json).map_err(|e| Error::config(format!("bad model config: {e}")))
    }
}

#[cfg(test)]
mod tests;
