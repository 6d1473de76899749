//! Elementwise functions of one tensor: exp, log, sqrt, neg, relu, gelu (exact, erf), tanh,
//! sigmoid, powf, and the scalar ops. One enum, so one CPU loop and one WGSL kernel serve all.
pub(crate) mod cpu;
pub(crate) mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::{Result, Storage, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Exp,
    Log,
    Sqrt,
    Neg,
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
    Powf(f64),
    AddScalar(f64),
    MulScalar(f64),
    /// 1 where x > 0, else 0: the derivative of relu (not differentiable itself).
    Step,
    /// d gelu(x) / dx = Phi(x) + x phi(x) (not differentiable itself).
    GeluGrad,
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Neg => "neg",
            UnaryOp::Relu => "relu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Powf(_) => "powf",
            UnaryOp::AddScalar(_) => "add_scalar",
            UnaryOp::MulScalar(_) => "mul_scalar",
            UnaryOp::Step => "step",
            UnaryOp::GeluGrad => "gelu_grad",
        }
    }
}

pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let storage = match &*x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::unary(s, op)),
        Storage::Gpu(s) => Storage::Gpu(gpu::unary(s, op)?),
        Storage::Meta(s) => Storage::Meta(s.like(op.name())),
    };
    Ok(Tensor::from_op(
        storage,
        x.shape().clone(),
        x.device().clone(),
        UnaryBackward(op),
        vec![x.clone()],
    ))
}

struct UnaryBackward(UnaryOp);

impl BackwardOp for UnaryBackward {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn saves_input(&self, _index: usize) -> bool {
        matches!(
            self.0,
            UnaryOp::Log | UnaryOp::Gelu | UnaryOp::Powf(_) | UnaryOp::Step | UnaryOp::GeluGrad
        )
    }
    /// Where the derivative is a function of the output (relu's mask is where it is > 0),
    /// the output is kept rather than the input.
    fn saves_output(&self) -> bool {
        matches!(
            self.0,
            UnaryOp::Exp | UnaryOp::Sqrt | UnaryOp::Relu | UnaryOp::Tanh | UnaryOp::Sigmoid
        )
    }
    fn backward(&self, inputs: &[Tensor], out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let x = &inputs[0];
        let dx = match self.0 {
            UnaryOp::Exp => g.mul(out)?,
            UnaryOp::Log => g.div(x)?,
            UnaryOp::Sqrt => g.div(out)?.mul_scalar(0.5)?,
            UnaryOp::Neg => g.neg()?,
            UnaryOp::Relu if crate::fault::wrong_relu_backward() => {
                times_derivative(g, out, UnaryOp::Step)?.mul_scalar(1.5)?
            }
            UnaryOp::Relu => times_derivative(g, out, UnaryOp::Step)?,
            UnaryOp::Gelu => times_derivative(g, x, UnaryOp::GeluGrad)?,
            UnaryOp::Tanh => g.mul(&out.mul(out)?.neg()?.add_scalar(1.0)?)?,
            UnaryOp::Sigmoid => g.mul(&out.mul(&out.neg()?.add_scalar(1.0)?)?)?,
            UnaryOp::Powf(p) => g.mul(&x.powf(p - 1.0)?.mul_scalar(p)?)?,
            UnaryOp::AddScalar(_) => g.clone(),
            UnaryOp::MulScalar(c) => g.mul_scalar(c)?,
            UnaryOp::Step | UnaryOp::GeluGrad => {
                return Err(crate::Error::Backward(format!(
                    "{} is not differentiable",
                    self.0.name()
                )))
            }
        };
        Ok(vec![Some(dx)])
    }
}

/// g · derivative(t), the chain rule of relu (t its output, derivative Step) and gelu (t its
/// input, GeluGrad). One pass that writes only the result (on the GPU one dispatch): these
/// two run on the largest activations of ResNet and BEiT, where a derivative tensor and then
/// a product would be two trips through memory and one more allocation.
fn times_derivative(g: &Tensor, t: &Tensor, derivative: UnaryOp) -> Result<Tensor> {
    let same = g.shape() == t.shape() && g.dtype() == t.dtype();
    let fused = match (&*g.storage(), &*t.storage()) {
        (Storage::Cpu(gs), Storage::Cpu(ts)) if same => {
            Some(Storage::Cpu(cpu::times(gs, ts, derivative)))
        }
        (Storage::Gpu(gs), Storage::Gpu(ts)) if same && t.dtype() == crate::DType::F32 => {
            Some(Storage::Gpu(gpu::times(gs, ts, derivative)?))
        }
        _ => None,
    };
    match fused {
        Some(s) => Ok(Tensor::from_storage(
            s,
            g.shape().clone(),
            g.device().clone(),
        )),
        None => g.mul(&unary(t, derivative)?),
    }
}

/// relu's backward rule from its output: g where out > 0, else 0.
pub(crate) fn relu_backward(g: &Tensor, out: &Tensor) -> Result<Tensor> {
    times_derivative(g, out, UnaryOp::Step)
}

impl Tensor {
    pub fn exp(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sqrt)
    }
    pub fn neg(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Neg)
    }
    pub fn relu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Relu)
    }
    /// Exact GELU, x * Phi(x), as torch.nn.GELU() (approximate='none').
    pub fn gelu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Gelu)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Tanh)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sigmoid)
    }
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        unary(self, UnaryOp::Powf(p))
    }
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        unary(self, UnaryOp::AddScalar(c))
    }
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        unary(self, UnaryOp::MulScalar(c))
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    type UnaryFn = fn(&Tensor) -> Result<Tensor>;
    let ops: [(&str, UnaryFn); 10] = [
        ("exp", |x| x.exp()),
        ("log", |x| x.mul(x)?.add_scalar(0.5)?.log()),
        ("sqrt", |x| x.mul(x)?.add_scalar(0.5)?.sqrt()),
        ("neg", |x| x.neg()),
        ("relu", |x| x.relu()),
        ("gelu", |x| x.gelu()),
        ("tanh", |x| x.tanh()),
        ("sigmoid", |x| x.sigmoid()),
        ("powf", |x| x.mul(x)?.add_scalar(0.5)?.powf(1.7)),
        ("scalar_ops", |x| x.mul_scalar(-2.5)?.add_scalar(3.0)),
    ];
    let mut cases = Vec::new();
    for (name, f) in ops {
        for dims in [vec![1], vec![7], vec![3, 13]] {
            cases.push(Case::new(name, &[&dims], move |xs| f(&xs[0])));
        }
    }
    cases
}
