//! Bottleneck ResNet in torchvision's v1.5 layout (He et al., 2016; the stride sits on the
//! 3x3 conv): a 7x7 stem, stages of bottleneck blocks, global average pooling and a linear
//! head. Tensor names are timm's and torchvision's (`layer3.7.conv2.weight`, ...).
use std::sync::Arc;

use clce_engine::{Result as EngineResult, Tensor};

use crate::config::ResNetConfig;
use crate::layers::{BatchNorm2d, Conv2d, ConvSpec, Linear};
use crate::mode::{run_block, Mode, Residual};
use crate::params::{join, Builder, Init};
use crate::{Error, Result};

pub struct Bottleneck {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv3: Conv2d,
    pub bn3: BatchNorm2d,
    /// 1x1 conv + BatchNorm on the shortcut, when the block changes shape.
    pub downsample: Option<(Conv2d, BatchNorm2d)>,
    pub params: Vec<Tensor>,
}

/// conv 7x7 / 2 -> BatchNorm -> ReLU -> max pool 3x3 / 2. With activation checkpointing it
/// is one more segment: at 224 px its activations are the largest of the network (four maps of
/// 64 x 112 x 112 per image), more than a whole bottleneck stage keeps.
pub struct Stem {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub params: Vec<Tensor>,
}

pub struct ResNet {
    pub config: ResNetConfig,
    pub stem: Arc<Stem>,
    pub stages: Vec<Vec<Arc<Bottleneck>>>,
    pub fc: Linear,
}

/// A conv without bias, initialised like timm's ResNet (Kaiming normal, fan out).
fn conv(b: &mut Builder, name: &str, spec: ConvSpec) -> Result<Conv2d> {
    Conv2d::build(b, name, spec, Init::KaimingNormalFanOut, None)
}

impl ResNet {
    pub fn build(c: &ResNetConfig, num_classes: usize, b: &mut Builder) -> Result<ResNet> {
        let bn = |b: &mut Builder, name: &str, chans: usize, init: Init| {
            BatchNorm2d::build(b, name, chans, init, c.bn_eps, c.bn_momentum)
        };
        let conv1 = conv(
            b,
            "conv1",
            ConvSpec {
                in_chans: c.in_chans,
                out_chans: c.stem_width,
                kernel: 7,
                stride: 2,
                padding: 3,
            },
        )?;
        let bn1 = bn(b, "bn1", c.stem_width, Init::ONES)?;
        let mut in_chans = c.stem_width;
        let mut stages = Vec::new();
        for (s, (&depth, &width)) in c.layers.iter().zip(&c.widths).enumerate() {
            let out = width * ResNetConfig::EXPANSION;
            let mut blocks = Vec::new();
            for i in 0..depth {
                let p = format!("layer{}.{i}", s + 1);
                let stride = if i == 0 && s > 0 { 2 } else { 1 };
                let spec = |in_chans, out_chans, kernel, stride| ConvSpec {
                    in_chans,
                    out_chans,
                    kernel,
                    stride,
                    padding: kernel / 2,
                };
                let conv1 = conv(b, &join(&p, "conv1"), spec(in_chans, width, 1, 1))?;
                let bn1 = bn(b, &join(&p, "bn1"), width, Init::ONES)?;
                let conv2 = conv(b, &join(&p, "conv2"), spec(width, width, 3, stride))?;
                let bn2 = bn(b, &join(&p, "bn2"), width, Init::ONES)?;
                let conv3 = conv(b, &join(&p, "conv3"), spec(width, out, 1, 1))?;
                let bn3 = bn(b, &join(&p, "bn3"), out, Init::ZEROS)?;
                let downsample = if stride != 1 || in_chans != out {
                    Some((
                        conv(b, &join(&p, "downsample.0"), spec(in_chans, out, 1, stride))?,
                        bn(b, &join(&p, "downsample.1"), out, Init::ONES)?,
                    ))
                } else {
                    None
                };
                blocks.push(Arc::new(Bottleneck {
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    conv3,
                    bn3,
                    downsample,
                    params: b.trainable_under(&format!("{p}.")),
                }));
                in_chans = out;
            }
            stages.push(blocks);
        }
        let fc = Linear::build_default(b, "fc", in_chans, num_classes)?;
        let mut params = b.trainable_under("conv1.");
        params.extend(b.trainable_under("bn1."));
        Ok(ResNet {
            config: c.clone(),
            stem: Arc::new(Stem { conv1, bn1, params }),
            stages,
            fc,
        })
    }

    pub fn head(&self) -> &Linear {
        &self.fc
    }

    /// The pooled feature h [N, 4 * last width] of images x [N, C, H, W] (any size the
    /// strides leave at least one pixel of): global average of the last stage's maps.
    pub fn forward_features(&self, x: &Tensor, mode: Mode, checkpointing: bool) -> Result<Tensor> {
        if x.rank() != 4 || x.dims()[1] != self.config.in_chans {
            return Err(Error::config(format!(
                "this ResNet takes [N, {}, H, W] images, got {:?}",
                self.config.in_chans,
                x.shape()
            )));
        }
        let mut h = run_block(&self.stem, x, mode, checkpointing)?;
        for block in self.stages.iter().flatten() {
            h = run_block(block, &h, mode, checkpointing)?;
        }
        Ok(h.global_avg_pool2d()?)
    }

    /// Layer id for layer-wise learning-rate decay: the stem 0, stage s (layer{s}) s, and the
    /// head and projection stages + 1.
    pub fn layer_id(&self, name: &str) -> usize {
        resnet_layer_id(name, self.config.layers.len())
    }
}

impl Residual for Stem {
    fn forward(&self, x: &Tensor, mode: Mode, update_stats: bool) -> EngineResult<Tensor> {
        self.bn1
            .forward(&self.conv1.forward(x)?, mode, update_stats)?
            .relu()?
            .max_pool2d(3, 2, 1)
    }

    fn params(&self) -> &[Tensor] {
        &self.params
    }
}

impl Residual for Bottleneck {
    /// ReLU(bn3(conv3(ReLU(bn2(conv2(ReLU(bn1(conv1(x))))))) + shortcut(x)).
    fn forward(&self, x: &Tensor, mode: Mode, update_stats: bool) -> EngineResult<Tensor> {
        let conv_bn = |conv: &Conv2d, bn: &BatchNorm2d, x: &Tensor| {
            bn.forward(&conv.forward(x)?, mode, update_stats)
        };
        let out = conv_bn(&self.conv1, &self.bn1, x)?.relu()?;
        let out = conv_bn(&self.conv2, &self.bn2, &out)?.relu()?;
        let out = conv_bn(&self.conv3, &self.bn3, &out)?;
        let shortcut = match &self.downsample {
            Some((conv, bn)) => conv_bn(conv, bn, x)?,
            None => x.clone(),
        };
        // One op (the same values as add then relu): one pass, one GPU dispatch.
        out.add_relu(&shortcut)
    }

    fn params(&self) -> &[Tensor] {
        &self.params
    }
}

fn resnet_layer_id(name: &str, stages: usize) -> usize {
    if name.starts_with("conv1.") || name.starts_with("bn1.") {
        return 0;
    }
    name.strip_prefix("layer")
        .and_then(|rest| rest.split('.').next())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(stages + 1)
}

/// Multiply-adds of one image's forward pass through the encoder at `image_size` px,
/// counting the convolutions only (BatchNorm, ReLU, pooling and the residual adds are
/// element-wise and left out, as in the usual FLOP counts): a k×k conv from C to O channels
/// with an Ho×Wo output is Ho·Wo·O·C·k².
pub fn forward_macs(c: &ResNetConfig, image_size: usize) -> u64 {
    let out = |size: usize, kernel: usize, stride: usize, pad: usize| {
        (size + 2 * pad).saturating_sub(kernel) / stride + 1
    };
    let conv =
        |size: usize, cin: usize, cout: usize, k: usize| (size * size * cin * cout * k * k) as u64;
    // Stem: 7x7 stride 2, then the 3x3 stride-2 max pool.
    let mut size = out(image_size, 7, 2, 3);
    let mut macs = conv(size, c.in_chans, c.stem_width, 7);
    size = out(size, 3, 2, 1);
    let mut in_chans = c.stem_width;
    for (s, (&depth, &width)) in c.layers.iter().zip(&c.widths).enumerate() {
        let out_chans = width * ResNetConfig::EXPANSION;
        for i in 0..depth {
            let stride = if i == 0 && s > 0 { 2 } else { 1 };
            let strided = out(size, 3, stride, 1);
            macs += conv(size, in_chans, width, 1)
                + conv(strided, width, width, 3)
                + conv(strided, width, out_chans, 1);
            if stride != 1 || in_chans != out_chans {
                macs += conv(strided, in_chans, out_chans, 1);
            }
            size = strided;
            in_chans = out_chans;
        }
    }
    macs
}
