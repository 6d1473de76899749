//! Parameter groups: which tensors an optimiser updates and with what lr scale and decay.
use std::collections::HashSet;
use std::sync::Arc;

use crate::{Error, Result, Shape, Tensor};

/// One trainable tensor and the name it is reported under.
#[derive(Clone, Debug)]
pub struct Param {
    /// For logs and error messages ("" when the caller has none).
    pub name: String,
    pub tensor: Tensor,
}

/// Parameters sharing one lr scale and one weight decay.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    pub params: Vec<Param>,
    /// Multiplies the scheduled lr: BEiT's layer-wise decay gives layer i of L the scale
    /// decay^(L+1-i); 1 for an ordinary group.
    pub lr_scale: f64,
    /// 0 for biases, norms, the cls token, relative position tables and layer-scale vectors.
    pub weight_decay: f64,
}

impl ParamGroup {
    pub fn new(lr_scale: f64, weight_decay: f64) -> Self {
        ParamGroup {
            params: Vec::new(),
            lr_scale,
            weight_decay,
        }
    }

    pub fn push(&mut self, name: impl Into<String>, tensor: &Tensor) {
        self.params.push(Param {
            name: name.into(),
            tensor: tensor.clone(),
        });
    }

    /// `push`, builder style.
    pub fn with(mut self, name: impl Into<String>, tensor: &Tensor) -> Self {
        self.push(name, tensor);
        self
    }
}

/// The rule of BEiT's and timm's fine-tuning recipes for parameters that get no weight decay:
/// every vector (biases, norm weights, layer-scale gammas) plus the cls token and position
/// tables, which are matrices but are not weights of a linear map.
pub fn skips_weight_decay(name: &str, shape: &Shape) -> bool {
    shape.rank() <= 1
        || name.ends_with(".bias")
        || name.ends_with("cls_token")
        || name.ends_with("pos_embed")
        || name.ends_with("position_embeddings")
        || name.contains("relative_position_bias_table")
}

/// `parameter 3 ("blocks.0.norm1.weight", [64])`: how errors point at a parameter.
pub(super) fn describe(index: usize, p: &Param) -> String {
    if p.name.is_empty() {
        format!("parameter {index} {}", p.tensor.shape())
    } else {
        format!("parameter {index} ({:?}, {})", p.name, p.tensor.shape())
    }
}

/// Every parameter once, with its group and its index in `state_dict` names.
pub(super) fn flat(groups: &[ParamGroup]) -> impl Iterator<Item = (usize, &ParamGroup, &Param)> {
    groups
        .iter()
        .flat_map(|g| g.params.iter().map(move |p| (g, p)))
        .enumerate()
        .map(|(i, (g, p))| (i, g, p))
}

/// Rejects groups an optimiser could not update correctly: a tensor that is not a leaf
/// requiring grad never receives a gradient (it would silently never train), and a tensor
/// listed twice would be updated twice per step.
pub(super) fn check_groups(op: &'static str, groups: &[ParamGroup]) -> Result<()> {
    let mut seen = HashSet::new();
    for g in groups {
        if !(g.lr_scale.is_finite() && g.lr_scale >= 0.0) {
            return Err(Error::invalid(
                op,
                format!("lr scale {} must be finite and >= 0", g.lr_scale),
            ));
        }
        if !(g.weight_decay.is_finite() && g.weight_decay >= 0.0) {
            return Err(Error::invalid(
                op,
                format!("weight decay {} must be finite and >= 0", g.weight_decay),
            ));
        }
    }
    for (i, _, p) in flat(groups) {
        if !p.tensor.requires_grad() || !p.tensor.is_leaf() {
            return Err(Error::invalid(
                op,
                format!(
                    "{} is not a leaf that requires grad, so it would never get a gradient; \
                     create it with set_requires_grad(true)",
                    describe(i, p)
                ),
            ));
        }
        if !seen.insert(Arc::as_ptr(p.tensor.values())) {
            return Err(Error::invalid(
                op,
                format!(
                    "{} shares its storage with an earlier parameter",
                    describe(i, p)
                ),
            ));
        }
    }
    Ok(())
}

/// The gradient of parameter `i`, checked against the parameter it will update.
pub(super) fn checked_grad(op: &'static str, i: usize, p: &Param) -> Result<Option<Tensor>> {
    let Some(g) = p.tensor.grad() else {
        return Ok(None);
    };
    if g.shape() != p.tensor.shape() {
        return Err(Error::shape(
            op,
            format!("{} has a gradient of shape {}", describe(i, p), g.shape()),
        ));
    }
    p.tensor.check_same(op, &g)?;
    if g.same_storage(&p.tensor) {
        return Err(Error::invalid(
            op,
            format!("the gradient of {} shares its storage", describe(i, p)),
        ));
    }
    Ok(Some(g))
}

pub(super) fn check_lr(op: &'static str, lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("lr {lr} must be finite and >= 0"),
        ))
    }
}
