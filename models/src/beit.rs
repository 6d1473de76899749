//! BEiT (Bao et al., 2022) as fine-tuned for classification: patch embedding, a cls token,
//! pre-norm transformer blocks with layer scale and a relative position bias per block, and
//! mean pooling of the patch tokens -> fc_norm -> head. No absolute position embedding.
//! Tensor names are timm's (`blocks.{i}.attn.qkv.weight`, ...).
use std::sync::Arc;

use clce_engine::ops::attention::attention_packed;
use clce_engine::{Result as EngineResult, Shape, Tensor};

use crate::config::BeitConfig;
use crate::layers::{Conv2d, ConvSpec, LayerNorm, Linear};
use crate::mode::{run_block, Mode, Residual};
use crate::params::{join, Builder, Init};
use crate::{Error, Result};

/// timm's std for Linear weights, the cls token and the head (before head_init_scale).
const INIT_STD: f64 = 0.02;
/// timm scales the new head's initial weights down by this much.
const HEAD_INIT_SCALE: f64 = 0.001;

/// The relative position index of a W x W grid of patches plus the cls token (row/column 0),
/// as a row-major [T, T] table, T = W*W + 1. Entry (i, j) is the row of the bias table that
/// query token i uses for key token j: for patches i = (ri, ci), j = (rj, cj) it is
/// (ri - rj + W - 1) * (2W - 1) + (ci - cj + W - 1); the last three rows are cls -> patch,
/// patch -> cls and cls -> cls.
pub fn relative_position_index(grid: usize) -> Vec<usize> {
    let span = 2 * grid - 1;
    let offsets = span * span;
    let tokens = grid * grid + 1;
    let mut index = vec![0; tokens * tokens];
    for i in 0..tokens {
        for j in 0..tokens {
            index[i * tokens + j] = match (i, j) {
                (0, 0) => offsets + 2,
                (0, _) => offsets,
                (_, 0) => offsets + 1,
                _ => {
                    let (ri, ci) = ((i - 1) / grid, (i - 1) % grid);
                    let (rj, cj) = ((j - 1) / grid, (j - 1) % grid);
                    (ri + grid - 1 - rj) * span + (ci + grid - 1 - cj)
                }
            };
        }
    }
    index
}

pub struct Attention {
    pub qkv_weight: Tensor,
    pub q_bias: Tensor,
    pub v_bias: Tensor,
    pub table: Tensor,
    /// Flattened [T, T] relative position index, shared by every block.
    pub index: Arc<Vec<usize>>,
    pub proj: Linear,
    pub heads: usize,
}

pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

pub struct Block {
    pub gamma_1: Option<Tensor>,
    pub gamma_2: Option<Tensor>,
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    /// Stochastic depth rate of this block.
    pub drop_path: f64,
    /// Position in the network (names the drop-path masks' seeds).
    pub index: usize,
    pub params: Vec<Tensor>,
}

pub struct Beit {
    pub config: BeitConfig,
    pub cls_token: Tensor,
    pub patch_embed: Conv2d,
    pub blocks: Vec<Arc<Block>>,
    pub fc_norm: LayerNorm,
    pub head: Linear,
}

impl Beit {
    pub fn build(c: &BeitConfig, num_classes: usize, b: &mut Builder) -> Result<Beit> {
        let d = c.width;
        let cls_token = b.param("cls_token", &[1, 1, d], Init::TruncNormal { std: INIT_STD })?;
        let fan_in = c.in_chans * c.patch_size * c.patch_size;
        let patch_embed = Conv2d::build(
            b,
            "patch_embed.proj",
            ConvSpec {
                in_chans: c.in_chans,
                out_chans: d,
                kernel: c.patch_size,
                stride: c.patch_size,
                padding: 0,
            },
            Init::pytorch_default(fan_in),
            Some(Init::pytorch_default(fan_in)),
        )?;
        let index = Arc::new(relative_position_index(c.grid()));
        let blocks = (0..c.depth)
            .map(|i| Block::build(c, i, &index, b).map(Arc::new))
            .collect::<Result<_>>()?;
        let fc_norm = LayerNorm::build(b, "fc_norm", d, c.norm_eps)?;
        let head_init = Init::TruncNormal {
            std: INIT_STD * HEAD_INIT_SCALE,
        };
        let head = Linear::build(b, "head", d, num_classes, head_init, Some(Init::ZEROS))?;
        Ok(Beit {
            config: c.clone(),
            cls_token,
            patch_embed,
            blocks,
            fc_norm,
            head,
        })
    }

    pub fn head(&self) -> &Linear {
        &self.head
    }

    /// The pooled feature h [N, width] of images x [N, C, H, W]: LayerNorm of the mean of
    /// the patch tokens after the last block.
    pub fn forward_features(&self, x: &Tensor, mode: Mode, checkpointing: bool) -> Result<Tensor> {
        let c = &self.config;
        let expected = [c.in_chans, c.image_size, c.image_size];
        if x.rank() != 4 || x.dims()[1..] != expected {
            return Err(Error::config(format!(
                "this BEiT takes [N, {}, {}, {}] images (its relative position tables fix the \
                 size), got {:?}",
                c.in_chans,
                c.image_size,
                c.image_size,
                x.shape()
            )));
        }
        let (n, d, patches) = (x.dims()[0], c.width, c.grid() * c.grid());
        // [N, D, grid, grid] -> [N, patches, D], patches in row-major (row, col) order.
        let tokens = self
            .patch_embed
            .forward(x)?
            .reshape([n, d, patches])?
            .transpose(1, 2)?;
        let cls = self.cls_token.broadcast_to(&Shape::from([n, 1, d]))?;
        let mut h = Tensor::concat(&[cls, tokens], 1)?;
        for block in &self.blocks {
            h = run_block(block, &h, mode, checkpointing)?;
        }
        let patch_mean = h.narrow(1, 1, patches)?.mean(1, false)?;
        Ok(self.fc_norm.forward(&patch_mean)?)
    }

    /// Layer id for layer-wise learning-rate decay: embeddings 0, block i -> i + 1, and
    /// everything after the blocks (fc_norm, head, projection) depth + 1.
    pub fn layer_id(&self, name: &str) -> usize {
        beit_layer_id(name, self.config.depth)
    }
}

fn beit_layer_id(name: &str, depth: usize) -> usize {
    if name == "cls_token"
        || name == "pos_embed"
        || name.starts_with("patch_embed.")
        || name.starts_with("rel_pos_bias.")
    {
        return 0;
    }
    name.strip_prefix("blocks.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .map_or(depth + 1, |i| i + 1)
}

impl Residual for Block {
    /// x + gamma_1 * Attn(LN1(x)), then + gamma_2 * MLP(LN2(x)); each branch dropped per
    /// sample in train mode (stochastic depth).
    fn forward(&self, x: &Tensor, mode: Mode, _update_stats: bool) -> EngineResult<Tensor> {
        // Fused ops (bias + GELU, layer scale + drop path + add): the same values as the
        // separate ops, in fewer passes and GPU dispatches.
        let site = format!("blocks.{}.drop_path", self.index);
        let a = self.attn.forward(&self.norm1.forward(x)?)?;
        let (p, gamma_1) = (self.drop_path, self.gamma_1.as_ref());
        let x = mode.residual(x, &a, gamma_1, p, &format!("{site}1"))?;
        let hidden = self.mlp.fc1.forward_gelu(&self.norm2.forward(&x)?)?;
        let m = self.mlp.fc2.forward(&hidden)?;
        mode.residual(&x, &m, self.gamma_2.as_ref(), p, &format!("{site}2"))
    }

    fn params(&self) -> &[Tensor] {
        &self.params
    }
}

impl Attention {
    /// Multi-head self-attention of x [N, T, D] with the block's relative position bias.
    fn forward(&self, x: &Tensor) -> EngineResult<Tensor> {
        let (n, t, d) = (x.dims()[0], x.dims()[1], x.dims()[2]);
        let (h, dh) = (self.heads, d / self.heads);
        // q and v have biases, k has none (a zero block keeps one fused matmul).
        let k_bias = Tensor::zeros([d], self.q_bias.dtype(), x.device())?;
        let bias = Tensor::concat(&[self.q_bias.clone(), k_bias, self.v_bias.clone()], 0)?;
        let qkv = x
            .matmul_t(&self.qkv_weight, false, true)?
            .add(&bias)?
            .reshape([n, t, 3, h, dh])?
            .permute(&[2, 0, 3, 1, 4])?; // [3, N, H, T, dh]

        // table[index] -> [T, T, H] -> [H, T, T]: the bias of query i and key j per head.
        let rel = self
            .table
            .index_select(0, &self.index)?
            .reshape([t, t, h])?
            .permute(&[2, 0, 1])?;
        let scale = 1.0 / (dh as f64).sqrt();
        let out = attention_packed(&qkv, Some(&rel), scale)?;
        self.proj
            .forward(&out.permute(&[0, 2, 1, 3])?.reshape([n, t, d])?)
    }
}

impl Block {
    fn build(c: &BeitConfig, i: usize, index: &Arc<Vec<usize>>, b: &mut Builder) -> Result<Block> {
        let p = format!("blocks.{i}");
        let d = c.width;
        let gamma = |b: &mut Builder, name: &str| {
            c.layer_scale
                .map(|v| b.param(&join(&p, name), &[d], Init::Const(v)))
                .transpose()
        };
        let gamma_1 = gamma(b, "gamma_1")?;
        let gamma_2 = gamma(b, "gamma_2")?;
        let norm1 = LayerNorm::build(b, &join(&p, "norm1"), d, c.norm_eps)?;
        let linear = Init::TruncNormal { std: INIT_STD };
        // timm's fix_init_weight: the residual branches' output layers shrink with depth.
        let rescaled = Init::TruncNormal {
            std: INIT_STD / (2.0 * (i + 1) as f64).sqrt(),
        };
        let a = join(&p, "attn");
        let tokens = c.grid() * c.grid() + 1;
        let attn = Attention {
            q_bias: b.param(&join(&a, "q_bias"), &[d], Init::ZEROS)?,
            v_bias: b.param(&join(&a, "v_bias"), &[d], Init::ZEROS)?,
            table: b.param(
                &join(&a, "relative_position_bias_table"),
                &[c.table_rows(), c.heads],
                Init::ZEROS,
            )?,
            index: {
                b.index(
                    &join(&a, "relative_position_index"),
                    &[tokens, tokens],
                    index,
                )?;
                index.clone()
            },
            qkv_weight: b.param(&join(&a, "qkv.weight"), &[3 * d, d], linear)?,
            proj: Linear::build(b, &join(&a, "proj"), d, d, rescaled, Some(Init::ZEROS))?,
            heads: c.heads,
        };
        let norm2 = LayerNorm::build(b, &join(&p, "norm2"), d, c.norm_eps)?;
        let m = join(&p, "mlp");
        let mlp = Mlp {
            fc1: Linear::build(
                b,
                &join(&m, "fc1"),
                d,
                c.mlp_hidden,
                linear,
                Some(Init::ZEROS),
            )?,
            fc2: Linear::build(
                b,
                &join(&m, "fc2"),
                c.mlp_hidden,
                d,
                rescaled,
                Some(Init::ZEROS),
            )?,
        };
        let drop_path = if c.depth > 1 {
            c.drop_path_rate * i as f64 / (c.depth - 1) as f64
        } else {
            0.0
        };
        Ok(Block {
            gamma_1,
            gamma_2,
            norm1,
            attn,
            norm2,
            mlp,
            drop_path,
            index: i,
            params: b.trainable_under(&format!("{p}.")),
        })
    }
}

/// Multiply-adds of one image's forward pass through the encoder (patch embedding, blocks),
/// counting the matrix products only: norms, softmax, GELU and the bias gather are
/// element-wise and left out, as in the usual FLOP counts (fvcore, timm). With T tokens of
/// width W, a block is qkv (3TW²) + QKᵀ and attention·V (2T²W) + output projection (TW²) +
/// MLP (2·T·W·mlp_hidden).
pub fn forward_macs(c: &BeitConfig) -> u64 {
    let patches = (c.grid() * c.grid()) as u64;
    let (t, w, hidden) = (patches + 1, c.width as u64, c.mlp_hidden as u64);
    let patch_embed = patches * w * (c.in_chans * c.patch_size * c.patch_size) as u64;
    let block = 4 * t * w * w + 2 * t * t * w + 2 * t * w * hidden;
    patch_embed + c.depth as u64 * block
}
