//! A tiny model made from engine ops, standing in for clce_models::Model so the training
//! machinery can be tested on its own: h = ReLU(hidden(flattened pixels)), logits = head(h),
//! projection = h. Optionally one op with a deliberately wrong backward rule.
use std::collections::HashMap;
use std::path::Path;

use clce_cli::train::{GroupOptions, Mode, Network, Output, Result, TrainError};
use clce_engine::autograd::BackwardOp;
use clce_engine::optim::{skips_weight_decay, ParamGroup};
use clce_engine::{DType, Device, Tensor};
use safetensors::tensor::{SafeTensors, TensorView};

pub struct StandIn {
    /// (name, tensor) in a fixed order: hidden.weight, hidden.bias, head.weight, head.bias.
    params: Vec<(String, Tensor)>,
    /// Scale the gradient flowing back through the hidden layer by 1.5 (a planted bug in a
    /// backward rule: the f64 reference shares it).
    pub wrong_backward: bool,
    /// Scale the hidden layer's output by 1.001 in f32 only (a planted bug in a kernel of
    /// the device: the f64 reference does not share it).
    pub wrong_f32_kernel: bool,
}

pub const HIDDEN: usize = 24;

impl StandIn {
    pub fn new(inputs: usize, classes: usize, seed: u64) -> StandIn {
        let param = |shape: &[usize], std: f64, s: u64| {
            Tensor::randn(shape, std, seed * 7 + s, DType::F32, &Device::Cpu)
                .unwrap()
                .set_requires_grad(true)
        };
        let params = vec![
            (
                "hidden.weight".into(),
                param(&[HIDDEN, inputs], (1.0 / inputs as f64).sqrt(), 1),
            ),
            ("hidden.bias".into(), param(&[HIDDEN], 0.1, 2)),
            (
                "head.weight".into(),
                param(&[classes, HIDDEN], (1.0 / HIDDEN as f64).sqrt(), 3),
            ),
            ("head.bias".into(), param(&[classes], 0.1, 4)),
        ];
        StandIn {
            params,
            wrong_backward: false,
            wrong_f32_kernel: false,
        }
    }

    pub fn load(path: &Path) -> StandIn {
        let bytes = std::fs::read(path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let names = ["hidden.weight", "hidden.bias", "head.weight", "head.bias"];
        let params = names
            .iter()
            .map(|&n| {
                let view = file.tensor(n).unwrap();
                let values: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                let t = Tensor::from_vec(values, view.shape().to_vec(), &Device::Cpu).unwrap();
                (n.to_string(), t.set_requires_grad(true))
            })
            .collect();
        StandIn {
            params,
            wrong_backward: false,
            wrong_f32_kernel: false,
        }
    }

    /// Puts a NaN into the classifier's weight (in place), as a corrupt checkpoint would.
    pub fn poison_head(&self) {
        let w = self.get(2);
        let mut v = w.to_vec_f32().unwrap();
        v[0] = f32::NAN;
        w.assign(&Tensor::from_vec(v, w.dims().to_vec(), &Device::Cpu).unwrap())
            .unwrap();
    }

    /// Every parameter's values, in order.
    pub fn values(&self) -> Vec<Vec<f32>> {
        self.params
            .iter()
            .map(|(_, t)| t.to_vec_f32().unwrap())
            .collect()
    }

    fn get(&self, i: usize) -> &Tensor {
        &self.params[i].1
    }
}

impl Network for StandIn {
    fn forward(&self, x: &Tensor, _mode: Mode) -> Result<Output> {
        let n = x.dims()[0];
        let flat = x.reshape(vec![n, x.numel() / n])?;
        let mut pre = flat.matmul_t(self.get(0), false, true)?.add(self.get(1))?;
        if self.wrong_backward {
            pre = wrong_identity(&pre);
        }
        if self.wrong_f32_kernel && pre.dtype() == DType::F32 {
            pre = pre.mul_scalar(1.1)?;
        }
        let h = pre.relu()?;
        let logits = h.matmul_t(self.get(2), false, true)?.add(self.get(3))?;
        Ok(Output {
            pooled: h.clone(),
            logits,
            projection: h,
        })
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }

    fn param_groups(&self, opts: &GroupOptions) -> Vec<ParamGroup> {
        let mut decay = ParamGroup::new(1.0, opts.weight_decay);
        let mut no_decay = ParamGroup::new(1.0, 0.0);
        for (name, t) in &self.params {
            if opts.heads_only && !name.starts_with("head.") {
                continue;
            }
            if skips_weight_decay(name, t.shape()) {
                no_decay.push(name.clone(), t);
            } else {
                decay.push(name.clone(), t);
            }
        }
        vec![decay, no_decay]
    }

    fn f64_reference(&self) -> Result<Box<dyn Network>> {
        let params = self
            .params
            .iter()
            .map(|(n, t)| {
                let wide = t.to_dtype(DType::F64)?.detach().set_requires_grad(true);
                Ok((n.clone(), wide))
            })
            .collect::<Result<_>>()?;
        Ok(Box::new(StandIn {
            params,
            wrong_backward: self.wrong_backward,
            wrong_f32_kernel: false,
        }))
    }

    /// The stand-in has no projection head: `head` is not written.
    fn save(&self, path: &Path, _head: &Path) -> Result<()> {
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .params
            .iter()
            .map(|(n, t)| {
                let bytes = t
                    .to_vec_f32()
                    .unwrap()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                (n.clone(), t.dims().to_vec(), bytes)
            })
            .collect();
        let views: Vec<(&str, TensorView)> = raw
            .iter()
            .map(|(n, s, b)| {
                (
                    n.as_str(),
                    TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let bytes = safetensors::serialize(views, None::<HashMap<String, String>>).unwrap();
        std::fs::write(path, bytes).map_err(|e| TrainError::io(path, e))
    }
}

/// y = x, but the backward rule hands back 1.5 times the gradient.
fn wrong_identity(x: &Tensor) -> Tensor {
    struct Wrong;
    impl BackwardOp for Wrong {
        fn name(&self) -> &'static str {
            "wrong_identity"
        }
        fn backward(
            &self,
            _inputs: &[Tensor],
            _output: &Tensor,
            grad_output: &Tensor,
        ) -> clce_engine::Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(grad_output.mul_scalar(1.5)?)])
        }
    }
    let storage = x.storage().clone();
    Tensor::from_op(
        storage,
        x.shape().clone(),
        x.device().clone(),
        Wrong,
        vec![x.clone()],
    )
}
