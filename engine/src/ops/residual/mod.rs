//! The residual add of a pre-norm transformer block, x + drop_path(gamma * branch) (layer
//! scale gamma along the last dimension, drop path as `Tensor::drop_path_at`), as one op:
//! the same f32 operations in the same order as `mul`, `drop_path_at` and `add`, so the same
//! values, with one pass over the activations instead of three forward and two instead of
//! four backward (on the GPU one dispatch forward; one, plus gamma's `sum_to`, backward).
//! Also ResNet's residual add and ReLU, relu(x + y), one pass (dispatch) instead of two.
mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::ops::dropout::{masked, Mask};
use crate::{ensure_shape, Result, SamplePlace, Storage, Tensor};

/// Stochastic depth on a residual branch: rate `p`, mask seed, and where the tensor's samples
/// sit in the step's batch (see `Tensor::drop_path_at`).
#[derive(Clone, Copy, Debug)]
pub struct DropPath {
    pub p: f64,
    pub seed: u64,
    pub place: SamplePlace,
}

impl Tensor {
    /// self + drop_path(gamma * branch): `branch` of self's shape, `gamma` of shape
    /// [last dim]; without gamma the branch is not scaled, without `drop_path` (or at p = 0)
    /// not dropped.
    pub fn add_residual(
        &self,
        branch: &Tensor,
        gamma: Option<&Tensor>,
        drop_path: Option<DropPath>,
    ) -> Result<Tensor> {
        const OP: &str = "add_residual";
        self.check_same(OP, branch)?;
        ensure_shape!(
            self.rank() >= 1 && self.shape() == branch.shape(),
            OP,
            "branch {:?} is not the shape of x {:?} (rank 1 or more)",
            branch.dims(),
            self.dims()
        );
        if let Some(gamma) = gamma {
            self.check_same(OP, gamma)?;
            ensure_shape!(
                gamma.dims() == [self.dims()[self.rank() - 1]],
                OP,
                "gamma {:?} is not [last dim] of {:?}",
                gamma.dims(),
                self.dims()
            );
        }
        let mask = match drop_path {
            Some(d) if d.p != 0.0 => {
                let group = self.dims()[1..].iter().product();
                Some(Mask::new("drop_path", d.p, d.seed, group, d.place)?)
            }
            _ => None,
        };
        if gamma.is_none() && mask.is_none() {
            return self.add(branch);
        }
        let storage = match (
            &*self.storage(),
            &*branch.storage(),
            gamma.map(|g| g.storage()),
        ) {
            (Storage::Cpu(x), Storage::Cpu(b), g) => {
                let g = g.as_deref().map(|g| cpu_of(g, OP)).transpose()?;
                Storage::Cpu(cpu::forward(x, b, g, mask.as_ref()))
            }
            (Storage::Gpu(x), Storage::Gpu(b), g) => {
                let g = g.as_deref().map(|g| gpu_of(g, OP)).transpose()?;
                Storage::Gpu(gpu::forward(x, b, g, mask.as_ref())?)
            }
            (Storage::Meta(x), Storage::Meta(_), _) => Storage::Meta(x.like(OP)),
            _ => return Err(crate::storage::mixed_devices(OP)),
        };
        let mut inputs = vec![self.clone(), branch.clone()];
        inputs.extend(gamma.cloned());
        Ok(Tensor::from_op(
            storage,
            self.shape().clone(),
            self.device().clone(),
            ResidualBackward(mask),
            inputs,
        ))
    }
}

impl Tensor {
    /// relu(self + other), of one shape: the same values as `add` then `relu`.
    pub fn add_relu(&self, other: &Tensor) -> Result<Tensor> {
        const OP: &str = "add_relu";
        self.check_same(OP, other)?;
        ensure_shape!(
            self.shape() == other.shape(),
            OP,
            "{:?} and {:?} differ",
            self.dims(),
            other.dims()
        );
        let storage = match (&*self.storage(), &*other.storage()) {
            (Storage::Cpu(x), Storage::Cpu(y)) => Storage::Cpu(cpu::add_relu(x, y)),
            (Storage::Gpu(x), Storage::Gpu(y)) => Storage::Gpu(gpu::add_relu(x, y)?),
            (Storage::Meta(x), Storage::Meta(_)) => Storage::Meta(x.like(OP)),
            _ => return Err(crate::storage::mixed_devices(OP)),
        };
        Ok(Tensor::from_op(
            storage,
            self.shape().clone(),
            self.device().clone(),
            AddReluBackward,
            vec![self.clone(), other.clone()],
        ))
    }
}

/// relu's rule (g where the output is > 0), given to both addends.
struct AddReluBackward;

impl BackwardOp for AddReluBackward {
    fn name(&self) -> &'static str {
        "add_relu"
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
    }
    fn backward(&self, inputs: &[Tensor], out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dz = crate::ops::unary::relu_backward(g, out)?;
        let dx = inputs[0].requires_grad().then(|| dz.clone());
        Ok(vec![dx, inputs[1].requires_grad().then_some(dz)])
    }
}

fn cpu_of<'a>(s: &'a Storage, op: &'static str) -> Result<&'a crate::CpuStorage> {
    match s {
        Storage::Cpu(s) => Ok(s),
        _ => Err(crate::storage::mixed_devices(op)),
    }
}

fn gpu_of<'a>(s: &'a Storage, op: &'static str) -> Result<&'a crate::gpu::GpuStorage> {
    match s {
        Storage::Gpu(s) => Ok(s),
        _ => Err(crate::storage::mixed_devices(op)),
    }
}

/// Inputs x, branch and (where given) gamma. x's gradient is g itself; with m = g · mask,
/// branch's is m · gamma and gamma's the row sum of m · branch, in the order of `mul`'s
/// and `drop_path`'s rules.
struct ResidualBackward(Option<Mask>);

impl BackwardOp for ResidualBackward {
    fn name(&self) -> &'static str {
        "add_residual"
    }
    fn saves_input(&self, index: usize) -> bool {
        index > 0
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (x, branch) = (&inputs[0], &inputs[1]);
        let dx = x.requires_grad().then(|| g.clone());
        let like = |s: Storage| Tensor::from_storage(s, g.shape().clone(), g.device().clone());
        let Some(gamma) = inputs.get(2) else {
            // No layer scale (so a mask, or the op would have been an add): drop path's rule.
            let mask = self
                .0
                .as_ref()
                .expect("a residual without gamma has a mask");
            let db = branch
                .requires_grad()
                .then(|| masked(g, mask))
                .transpose()?;
            return Ok(vec![dx, db.map(like)]);
        };
        let (db, dgamma_rows) = match (&*g.storage(), &*branch.storage(), &*gamma.storage()) {
            (Storage::Cpu(gs), Storage::Cpu(b), Storage::Cpu(gm)) => {
                let (db, dg) = cpu::backward(gs, b, gm, self.0.as_ref());
                (Storage::Cpu(db), Storage::Cpu(dg))
            }
            (Storage::Gpu(gs), Storage::Gpu(b), Storage::Gpu(gm)) => {
                let (db, dg) = gpu::backward(gs, b, gm, self.0.as_ref())?;
                (Storage::Gpu(db), Storage::Gpu(dg))
            }
            (Storage::Meta(gs), _, _) => (
                Storage::Meta(gs.like("add_residual_grad")),
                Storage::Meta(gs.like("add_residual_grad")),
            ),
            _ => return Err(crate::storage::mixed_devices("add_residual")),
        };
        let dgamma = gamma
            .requires_grad()
            .then(|| like(dgamma_rows).sum_to(gamma.shape()))
            .transpose()?;
        Ok(vec![dx, branch.requires_grad().then(|| like(db)), dgamma])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    let drop = |p: f64, seed: u64, first: usize| {
        Some(DropPath {
            p,
            seed,
            place: SamplePlace::from(first),
        })
    };
    let mut cases = Vec::new();
    for shape in [&[1][..], &[7], &[3, 13]] {
        cases.push(Case::new("add_relu", &[shape, shape], |x| {
            x[0].add_relu(&x[1])
        }));
    }
    for (shape, dp) in [
        (&[1][..], None),
        (&[1][..], drop(0.3, 1, 0)),
        (&[3, 5][..], None),
        (&[5, 3][..], drop(0.5, 7, 0)),
        (&[7, 2, 3][..], drop(0.5, 3, 1000)),
    ] {
        let d = &shape[shape.len() - 1..];
        cases.push(Case::new("add_residual", &[shape, shape, d], move |x| {
            x[0].add_residual(&x[1], Some(&x[2]), dp)
        }));
        if dp.is_some() {
            cases.push(Case::new(
                "add_residual_no_gamma",
                &[shape, shape],
                move |x| x[0].add_residual(&x[1], None, dp),
            ));
        }
    }
    cases
}
