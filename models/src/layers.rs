//! The layers both encoders are made of, each holding its tensors under PyTorch's names
//! (`weight`, `bias`, `running_mean`, ...) below a module prefix.
use clce_engine::{no_grad, Result as EngineResult, Tensor};

use crate::mode::Mode;
use crate::params::{join, Builder, Init};
use crate::Result;

/// y = x W^T + b over the last dimension of x (any leading dimensions).
#[derive(Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// `weight_init` for the [out, in] weight; `bias_init` None for a layer without bias.
    pub fn build(
        b: &mut Builder,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        weight_init: Init,
        bias_init: Option<Init>,
    ) -> Result<Linear> {
        let weight = b.param(&join(prefix, "weight"), &[out_dim, in_dim], weight_init)?;
        let bias = bias_init
            .map(|init| b.param(&join(prefix, "bias"), &[out_dim], init))
            .transpose()?;
        Ok(Linear { weight, bias })
    }

    /// PyTorch's default nn.Linear initialisation.
    pub fn build_default(
        b: &mut Builder,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Linear> {
        let init = Init::pytorch_default(in_dim);
        Linear::build(b, prefix, in_dim, out_dim, init, Some(init))
    }

    pub fn forward(&self, x: &Tensor) -> EngineResult<Tensor> {
        let y = x.matmul_t(&self.weight, false, true)?;
        match &self.bias {
            Some(bias) => y.add(bias),
            None => Ok(y),
        }
    }

    /// gelu(forward(x)), the bias add and the GELU as one op (the same values).
    pub fn forward_gelu(&self, x: &Tensor) -> EngineResult<Tensor> {
        let y = x.matmul_t(&self.weight, false, true)?;
        match &self.bias {
            Some(bias) => y.bias_gelu(bias),
            None => y.gelu(),
        }
    }
}

/// LayerNorm over the last dimension, with a learned scale and shift.
#[derive(Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn build(b: &mut Builder, prefix: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: b.param(&join(prefix, "weight"), &[dim], Init::ONES)?,
            bias: b.param(&join(prefix, "bias"), &[dim], Init::ZEROS)?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> EngineResult<Tensor> {
        x.layer_norm(Some(&self.weight), Some(&self.bias), self.eps)
    }
}

/// 2-d convolution with square kernels, symmetric padding, optional bias.
#[derive(Clone)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

pub struct ConvSpec {
    pub in_chans: usize,
    pub out_chans: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn build(
        b: &mut Builder,
        prefix: &str,
        spec: ConvSpec,
        weight_init: Init,
        bias_init: Option<Init>,
    ) -> Result<Conv2d> {
        let shape = [spec.out_chans, spec.in_chans, spec.kernel, spec.kernel];
        let weight = b.param(&join(prefix, "weight"), &shape, weight_init)?;
        let bias = bias_init
            .map(|init| b.param(&join(prefix, "bias"), &[spec.out_chans], init))
            .transpose()?;
        Ok(Conv2d {
            weight,
            bias,
            stride: spec.stride,
            padding: spec.padding,
        })
    }

    pub fn forward(&self, x: &Tensor) -> EngineResult<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.stride, self.padding)
    }
}

/// BatchNorm over the channels of [N, C, H, W] maps, with running statistics for eval mode
/// and PyTorch's batch counter.
#[derive(Clone)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm2d {
    /// `weight_init` is ones, or zeros for the last BatchNorm of a residual branch (timm's
    /// zero_init_last: each block starts as the identity).
    pub fn build(
        b: &mut Builder,
        prefix: &str,
        chans: usize,
        weight_init: Init,
        eps: f64,
        momentum: f64,
    ) -> Result<BatchNorm2d> {
        Ok(BatchNorm2d {
            weight: b.param(&join(prefix, "weight"), &[chans], weight_init)?,
            bias: b.param(&join(prefix, "bias"), &[chans], Init::ZEROS)?,
            running_mean: b.buffer(&join(prefix, "running_mean"), &[chans], Init::ZEROS)?,
            running_var: b.buffer(&join(prefix, "running_var"), &[chans], Init::ONES)?,
            num_batches_tracked: b.counter(&join(prefix, "num_batches_tracked"))?,
            eps,
            momentum,
        })
    }

    /// Eval mode normalises with the running statistics. Train mode normalises with the
    /// batch's statistics and, when `update_stats`, moves the running ones towards them and
    /// counts the batch.
    pub fn forward(&self, x: &Tensor, mode: Mode, update_stats: bool) -> EngineResult<Tensor> {
        if !mode.is_train() {
            let (m, v) = (&self.running_mean, &self.running_var);
            return x.batch_norm(
                &self.weight,
                &self.bias,
                m,
                v,
                false,
                self.momentum,
                self.eps,
            );
        }
        if !update_stats {
            // Scratch copies take the update instead.
            let (m, v) = (
                self.running_mean.mul_scalar(1.0)?,
                self.running_var.mul_scalar(1.0)?,
            );
            return x.batch_norm(
                &self.weight,
                &self.bias,
                &m,
                &v,
                true,
                self.momentum,
                self.eps,
            );
        }
        let y = x.batch_norm(
            &self.weight,
            &self.bias,
            &self.running_mean,
            &self.running_var,
            true,
            self.momentum,
            self.eps,
        )?;
        let _g = no_grad();
        let counted = self.num_batches_tracked.add_scalar(1.0)?;
        self.num_batches_tracked.assign(&counted)?;
        Ok(y)
    }
}
