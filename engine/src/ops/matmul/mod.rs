//! Batched matrix multiplication with transpose flags: C = op(A) · op(B), where op(X) is X
//! or its transpose over the last two dimensions. Leading (batch) dimensions must match, or
//! one side is a plain matrix shared across the other's batch.
pub(crate) mod cpu;
pub(crate) mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::{ensure_shape, DType, Result, Shape, Storage, Tensor};

/// Sizes of one matmul call, worked out from shapes and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulDims {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    /// Whether A / B have a batch of their own (false: shared by every batch entry).
    pub a_batched: bool,
    pub b_batched: bool,
}

fn matmul_dims(a: &Shape, b: &Shape, trans_a: bool, trans_b: bool) -> Result<(MatmulDims, Shape)> {
    ensure_shape!(
        a.rank() >= 2 && b.rank() >= 2,
        "matmul",
        "needs matrices, got {a:?} and {b:?}"
    );
    let (ad, bd) = (a.dims(), b.dims());
    let (ar, br) = (ad[a.rank() - 2], ad[a.rank() - 1]);
    let (cr, cc) = (bd[b.rank() - 2], bd[b.rank() - 1]);
    let (m, ka) = if trans_a { (br, ar) } else { (ar, br) };
    let (kb, n) = if trans_b { (cc, cr) } else { (cr, cc) };
    ensure_shape!(
        ka == kb,
        "matmul",
        "inner dimensions differ: {a:?}{} x {b:?}{}",
        if trans_a { "ᵀ" } else { "" },
        if trans_b { "ᵀ" } else { "" }
    );
    let (a_batch, b_batch) = (&ad[..a.rank() - 2], &bd[..b.rank() - 2]);
    let batch_dims = match (a_batch.is_empty(), b_batch.is_empty()) {
        (_, true) => a_batch,
        (true, false) => b_batch,
        (false, false) => {
            ensure_shape!(
                a_batch == b_batch,
                "matmul",
                "batch dimensions differ: {a:?} vs {b:?}"
            );
            a_batch
        }
    };
    let mut out = batch_dims.to_vec();
    out.extend([m, n]);
    let dims = MatmulDims {
        batch: batch_dims.iter().product(),
        m,
        k: ka,
        n,
        trans_a,
        trans_b,
        a_batched: !a_batch.is_empty(),
        b_batched: !b_batch.is_empty(),
    };
    Ok((dims, Shape::from(out)))
}

impl Tensor {
    /// Matrix product over the last two dimensions (batched over the leading ones).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_t(rhs, false, false)
    }

    /// op(self) · op(rhs), transposing each operand's last two dimensions when its flag is set,
    /// without materialising the transpose. F16 operands (GPU storage, either or both) give an
    /// F32 product, accumulated in f32.
    pub fn matmul_t(&self, rhs: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        match (self.dtype(), rhs.dtype()) {
            (DType::F16, DType::F32) | (DType::F32, DType::F16) => {
                self.check_same_device("matmul", rhs)?
            }
            _ => self.check_same("matmul", rhs)?,
        }
        let (dims, out_shape) = matmul_dims(self.shape(), rhs.shape(), trans_a, trans_b)?;
        #[cfg(test)]
        tests::PRODUCTS.with(|p| p.borrow_mut().push(dims));
        let storage = match (&*self.storage(), &*rhs.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(cpu::matmul(a, b, &dims)),
            (Storage::Gpu(a), Storage::Gpu(b)) => Storage::Gpu(gpu::matmul(a, b, &dims)?),
            // An F16 product is F32, accumulated in f32.
            (Storage::Meta(a), Storage::Meta(_)) => {
                Storage::Meta(a.output(out_shape.numel(), "matmul"))
            }
            _ => return Err(crate::storage::mixed_devices("matmul")),
        };
        Ok(Tensor::from_op(
            storage,
            out_shape,
            self.device().clone(),
            MatmulBackward { trans_a, trans_b },
            vec![self.clone(), rhs.clone()],
        ))
    }
}

struct MatmulBackward {
    trans_a: bool,
    trans_b: bool,
}

impl BackwardOp for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn reads_f16(&self, _index: usize) -> bool {
        true
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        // F16 operands (f16 storage, or the f16 copies of `--precision f16`) meet the f32
        // gradient as they are; the products, and so their gradients, are f32.
        let (a, b) = (&inputs[0], &inputs[1]);
        let (ta, tb) = (self.trans_a, self.trans_b);
        // C = op(A) op(B)  =>  d op(A) = dC op(B)ᵀ,  d op(B) = op(A)ᵀ dC; a transposed operand
        // takes the transpose of that, which swaps the factors.
        let ga = if !inputs[0].requires_grad() {
            None
        } else if ta {
            Some(b.matmul_t(g, tb, true)?.sum_to(a.shape())?)
        } else {
            Some(g.matmul_t(b, false, !tb)?.sum_to(a.shape())?)
        };
        let gb = if !inputs[1].requires_grad() {
            None
        } else if let Some(gb) = shared_rhs_grad(a, b, g, ta, tb)? {
            Some(gb)
        } else if tb {
            Some(g.matmul_t(a, true, ta)?.sum_to(b.shape())?)
        } else {
            Some(a.matmul_t(g, !ta, false)?.sum_to(b.shape())?)
        };
        Ok(vec![ga, gb])
    }
}

/// The gradient of a B shared by A's batch (a Linear's weight under [N, T, in] inputs) as
/// one 2-D product: d op(B) sums op(A_i)ᵀ dC_i over the batch, and stacking the batch's rows
/// of A and of dC (a free reshape: both are contiguous) makes that sum the inner dimension of
/// a single product, where the batched product would first write a [batch, k, n] temporary
/// for `sum_to` to add up. None where this does not apply: when A is transposed its batch
/// entries' rows lie along the product's inner dimension only after a transposing copy of A,
/// and a shared A meets the batch along dC's columns, which a copy of dC would have to
/// gather; both keep the batched product.
fn shared_rhs_grad(
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Option<Tensor>> {
    if trans_a || a.rank() == 2 || b.rank() != 2 {
        return Ok(None);
    }
    let (k, n) = (a.dims()[a.rank() - 1], g.dims()[g.rank() - 1]);
    let rows = a.numel() / k.max(1);
    let (a, g) = (a.reshape([rows, k])?, g.reshape([rows, n])?);
    // B is [k, n], or [n, k] when transposed: d op(B)ᵀ = dCᵀ A.
    Ok(Some(if trans_b {
        g.matmul_t(&a, true, false)?
    } else {
        a.matmul_t(&g, true, false)?
    }))
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    let mut cases = vec![
        Case::new("matmul", &[&[1, 1], &[1, 1]], |x| x[0].matmul(&x[1])),
        Case::new("matmul", &[&[3, 7], &[7, 5]], |x| x[0].matmul(&x[1])),
        Case::new("matmul", &[&[2, 3, 13], &[2, 13, 5]], |x| {
            x[0].matmul(&x[1])
        }),
        Case::new("matmul", &[&[2, 3, 4], &[4, 5]], |x| x[0].matmul(&x[1])),
        Case::new("matmul", &[&[3, 4], &[2, 4, 5]], |x| x[0].matmul(&x[1])),
        Case::new("matmul", &[&[2, 3, 1, 4], &[4, 5]], |x| x[0].matmul(&x[1])),
    ];
    for (ta, tb) in [(true, false), (false, true), (true, true)] {
        let sa: &[usize] = if ta { &[2, 7, 3] } else { &[2, 3, 7] };
        let sb: &[usize] = if tb { &[5, 7] } else { &[7, 5] };
        cases.push(Case::new(
            &format!("matmul_t{}{}", ta as u8, tb as u8),
            &[sa, sb],
            move |x| x[0].matmul_t(&x[1], ta, tb),
        ));
    }
    cases
}
