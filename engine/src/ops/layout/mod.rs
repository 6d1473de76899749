//! Ops that move values without arithmetic: reshape, permute/transpose, narrow, concat,
//! index_select and gather. Each backward is the adjoint move (pad, split, scatter-add).
mod cpu;
pub(crate) mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::gpu::Indices;
use crate::{ensure_shape, Error, Result, Shape, Storage, Tensor};

impl Tensor {
    /// Same values, another shape with as many elements (shares storage).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        ensure_shape!(
            shape.numel() == self.numel(),
            "reshape",
            "cannot reshape {:?} ({} elements) to {:?}",
            self.shape(),
            self.numel(),
            shape
        );
        Ok(self.view_from_op(shape, ReshapeBackward, vec![self.clone()]))
    }

    /// Reorders dimensions: output dimension i is input dimension `dims[i]` (a copy).
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        ensure_shape!(
            dims.len() == rank,
            "permute",
            "{dims:?} for a tensor of rank {rank}"
        );
        for &d in dims {
            ensure_shape!(
                d < rank && !seen[d],
                "permute",
                "{dims:?} is not a permutation of 0..{rank}"
            );
            seen[d] = true;
        }
        let out_shape = Shape::from(dims.iter().map(|&d| self.dims()[d]).collect::<Vec<_>>());
        let storage = match &*self.storage() {
            Storage::Cpu(s) => Storage::Cpu(cpu::permute(s, self.shape(), dims)),
            Storage::Gpu(s) => Storage::Gpu(gpu::permute(s, self.shape(), dims)?),
            Storage::Meta(s) => Storage::Meta(s.like("permute")),
        };
        Ok(Tensor::from_op(
            storage,
            out_shape,
            self.device().clone(),
            PermuteBackward(dims.to_vec()),
            vec![self.clone()],
        ))
    }

    /// Swaps two dimensions (negative counts from the end).
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let a = self.shape().axis("transpose", a)?;
        let b = self.shape().axis("transpose", b)?;
        let mut dims: Vec<usize> = (0..self.rank()).collect();
        dims.swap(a, b);
        self.permute(&dims)
    }

    /// Elements `start..start + len` along `axis` (a copy).
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let axis = self.shape().axis("narrow", axis)?;
        let n = self.dims()[axis];
        ensure_shape!(
            start + len <= n,
            "narrow",
            "range {start}..{} is outside axis {axis} of size {n}",
            start + len
        );
        let (outer, _, inner) = self.shape().split_at_axis(axis);
        let storage = match &*self.storage() {
            Storage::Cpu(s) => Storage::Cpu(cpu::narrow(s, outer, n, inner, start, len)),
            Storage::Gpu(s) => Storage::Gpu(gpu::narrow(s, outer, n, inner, start, len)?),
            Storage::Meta(s) => Storage::Meta(s.output(outer * len * inner, "narrow")),
        };
        let out_shape = self.shape().with_dim(axis, len);
        Ok(Tensor::from_op(
            storage,
            out_shape,
            self.device().clone(),
            NarrowBackward { axis, start },
            vec![self.clone()],
        ))
    }

    /// Joins tensors along `axis`; all other dimensions must agree.
    pub fn concat(tensors: &[Tensor], axis: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid("concat", "no tensors to concatenate"))?;
        let axis = first.shape().axis("concat", axis)?;
        let mut total = 0;
        for t in tensors {
            first.check_same("concat", t)?;
            ensure_shape!(
                t.rank() == first.rank()
                    && t.shape().with_dim(axis, 0) == first.shape().with_dim(axis, 0),
                "concat",
                "{:?} and {:?} differ outside axis {axis}",
                first.shape(),
                t.shape()
            );
            total += t.dims()[axis];
        }
        let out_shape = first.shape().with_dim(axis, total);
        let (outer, _, inner) = out_shape.split_at_axis(axis);
        let guards: Vec<_> = tensors.iter().map(|t| t.storage()).collect();
        let sizes: Vec<usize> = tensors.iter().map(|t| t.dims()[axis]).collect();
        let storage = match &*guards[0] {
            Storage::Cpu(_) => {
                let parts = guards
                    .iter()
                    .zip(&sizes)
                    .map(|(g, &n)| match &**g {
                        Storage::Cpu(s) => Ok((s, n)),
                        _ => Err(crate::storage::mixed_devices("concat")),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Storage::Cpu(cpu::concat(&parts, outer, inner))
            }
            Storage::Gpu(_) => {
                let parts = guards
                    .iter()
                    .zip(&sizes)
                    .map(|(g, &n)| match &**g {
                        Storage::Gpu(s) => Ok((s, n)),
                        _ => Err(crate::storage::mixed_devices("concat")),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Storage::Gpu(gpu::concat(&parts, outer, inner)?)
            }
            Storage::Meta(s) => Storage::Meta(s.output(out_shape.numel(), "concat")),
        };
        drop(guards);
        Ok(Tensor::from_op(
            storage,
            out_shape,
            first.device().clone(),
            ConcatBackward { axis, sizes },
            tensors.to_vec(),
        ))
    }

    /// Picks entries `indices` along `axis` (rows of an embedding table, say).
    pub fn index_select(&self, axis: isize, indices: &[usize]) -> Result<Tensor> {
        let axis = self.shape().axis("index_select", axis)?;
        let n = self.dims()[axis];
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::invalid(
                "index_select",
                format!("index {bad} is out of range for axis {axis} of size {n}"),
            ));
        }
        let (outer, _, inner) = self.shape().split_at_axis(axis);
        let (storage, gpu_rows) = match &*self.storage() {
            Storage::Cpu(s) => (
                Storage::Cpu(cpu::index_select(s, outer, n, inner, indices)),
                None,
            ),
            Storage::Gpu(s) => {
                let out = gpu::index_select(s, outer, n, inner, indices)?;
                // Only a recorded op needs the inverted list (the condition of from_op).
                let recorded = crate::autograd::is_grad_enabled() && self.requires_grad();
                let rows = recorded
                    .then(|| gpu::IndexRows::new(s.device(), n, indices))
                    .transpose()?;
                (Storage::Gpu(out), rows)
            }
            Storage::Meta(s) => (
                Storage::Meta(s.output(outer * indices.len() * inner, "index_select")),
                None,
            ),
        };
        let out_shape = self.shape().with_dim(axis, indices.len());
        let op = IndexSelectBackward {
            axis,
            indices: indices.to_vec(),
            gpu_rows,
        };
        Ok(Tensor::from_op(
            storage,
            out_shape,
            self.device().clone(),
            op,
            vec![self.clone()],
        ))
    }

    /// out[.., j, ..] = self[.., indices[.., j, ..], ..] along `axis` (torch.gather). The
    /// output has `k` entries along `axis`; `indices` holds one index per output element.
    pub fn gather(&self, axis: isize, indices: &[usize], k: usize) -> Result<Tensor> {
        let axis = self.shape().axis("gather", axis)?;
        let n = self.dims()[axis];
        let out_shape = self.shape().with_dim(axis, k);
        ensure_shape!(
            indices.len() == out_shape.numel(),
            "gather",
            "{} indices for an output of shape {:?}",
            indices.len(),
            out_shape
        );
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::invalid(
                "gather",
                format!("index {bad} is out of range for axis {axis} of size {n}"),
            ));
        }
        let (outer, _, inner) = self.shape().split_at_axis(axis);
        let (storage, indices) = match &*self.storage() {
            Storage::Cpu(s) => (
                Storage::Cpu(cpu::gather(s, outer, n, inner, indices, k)),
                Indices::Host(indices.to_vec()),
            ),
            Storage::Gpu(s) => {
                let (out, indices) = gpu::gather(s, outer, n, inner, indices, k)?;
                (Storage::Gpu(out), Indices::Gpu(indices))
            }
            Storage::Meta(s) => (
                Storage::Meta(s.output(out_shape.numel(), "gather")),
                Indices::Host(Vec::new()),
            ),
        };
        let op = GatherBackward { axis, indices };
        Ok(Tensor::from_op(
            storage,
            out_shape,
            self.device().clone(),
            op,
            vec![self.clone()],
        ))
    }
}

struct ReshapeBackward;
impl BackwardOp for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
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
        Ok(vec![Some(g.reshape(inputs[0].shape().clone())?)])
    }
}

struct PermuteBackward(Vec<usize>);
impl BackwardOp for PermuteBackward {
    fn name(&self) -> &'static str {
        "permute"
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn backward(
        &self,
        _inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let mut inverse = vec![0; self.0.len()];
        for (i, &d) in self.0.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(vec![Some(g.permute(&inverse)?)])
    }
}

struct NarrowBackward {
    axis: usize,
    start: usize,
}
impl BackwardOp for NarrowBackward {
    fn name(&self) -> &'static str {
        "narrow"
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
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
        let x = &inputs[0];
        let (outer, n, inner) = x.shape().split_at_axis(self.axis);
        let len = g.dims()[self.axis];
        let storage = match &*g.storage() {
            Storage::Cpu(s) => Storage::Cpu(cpu::pad(s, outer, len, inner, self.start, n)),
            Storage::Gpu(s) => Storage::Gpu(gpu::pad(s, outer, len, inner, self.start, n)?),
            Storage::Meta(s) => Storage::Meta(s.output(x.numel(), "narrow backward")),
        };
        Ok(vec![Some(Tensor::from_storage(
            storage,
            x.shape().clone(),
            x.device().clone(),
        ))])
    }
}

struct ConcatBackward {
    axis: usize,
    sizes: Vec<usize>,
}
impl BackwardOp for ConcatBackward {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
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
        let mut start = 0;
        let mut grads = Vec::new();
        for (t, &size) in inputs.iter().zip(&self.sizes) {
            grads.push(
                t.requires_grad()
                    .then(|| g.narrow(self.axis as isize, start, size))
                    .transpose()?,
            );
            start += size;
        }
        Ok(grads)
    }
}

struct IndexSelectBackward {
    axis: usize,
    indices: Vec<usize>,
    /// A GPU's inverted `indices`, from the forward.
    gpu_rows: Option<gpu::IndexRows>,
}
impl BackwardOp for IndexSelectBackward {
    fn name(&self) -> &'static str {
        "index_select"
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
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
        let x = &inputs[0];
        let (outer, n, inner) = x.shape().split_at_axis(self.axis);
        let storage = match &*g.storage() {
            Storage::Cpu(s) => Storage::Cpu(cpu::index_add(s, outer, n, inner, &self.indices)),
            Storage::Gpu(s) => {
                // A recorded GPU index_select always made them: without, x was on the CPU.
                let rows = self
                    .gpu_rows
                    .as_ref()
                    .ok_or_else(|| crate::storage::mixed_devices("index_select"))?;
                Storage::Gpu(gpu::index_add(s, outer, n, inner, rows)?)
            }
            Storage::Meta(s) => Storage::Meta(s.output(x.numel(), "index_select backward")),
        };
        Ok(vec![Some(Tensor::from_storage(
            storage,
            x.shape().clone(),
            x.device().clone(),
        ))])
    }
}

struct GatherBackward {
    axis: usize,
    indices: Indices,
}
impl BackwardOp for GatherBackward {
    fn name(&self) -> &'static str {
        "gather"
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
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
        let x = &inputs[0];
        let (outer, n, inner) = x.shape().split_at_axis(self.axis);
        let k = g.dims()[self.axis];
        let storage = match (&*g.storage(), &self.indices) {
            (Storage::Cpu(s), Indices::Host(indices)) => {
                Storage::Cpu(cpu::scatter_add(s, outer, n, inner, indices, k))
            }
            (Storage::Gpu(s), Indices::Gpu(indices)) => {
                Storage::Gpu(gpu::scatter_add(s, outer, n, inner, indices, k)?)
            }
            (Storage::Meta(s), _) => Storage::Meta(s.output(x.numel(), "gather backward")),
            _ => return Err(crate::storage::mixed_devices("gather")),
        };
        Ok(vec![Some(Tensor::from_storage(
            storage,
            x.shape().clone(),
            x.device().clone(),
        ))])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    vec![
        Case::new("reshape", &[&[2, 3, 5]], |x| x[0].reshape([6, 5])),
        Case::new("permute", &[&[2, 3, 5]], |x| x[0].permute(&[2, 0, 1])),
        Case::new("transpose", &[&[7, 3]], |x| x[0].transpose(0, 1)),
        Case::new("narrow", &[&[3, 7, 2]], |x| x[0].narrow(1, 2, 4)),
        Case::new("narrow", &[&[1]], |x| x[0].narrow(0, 0, 1)),
        Case::new("concat", &[&[2, 3], &[2, 5], &[2, 1]], |x| {
            Tensor::concat(x, 1)
        }),
        Case::new("index_select", &[&[5, 3]], |x| {
            x[0].index_select(0, &[4, 0, 4, 2])
        }),
        Case::new("gather", &[&[3, 5]], |x| {
            x[0].gather(1, &[4, 0, 1, 1, 3, 3], 2)
        }),
    ]
}
