//! The optimisers' per-element arithmetic on CPU slices. Each update is written in the order
//! torch's single-tensor implementation applies its in-place ops, so f32 results round alike.
use rayon::prelude::*;

use super::adamw::AdamWUpdate;
use super::sgd::SgdUpdate;
use crate::ops::CPU_PAR_MIN;
use crate::{CpuStorage, DType, Elem, Error, Result};

fn dtype_error(op: &'static str) -> Error {
    Error::invalid(
        op,
        "the parameter, its gradient and its state must share a dtype",
    )
}

pub(super) fn adamw(
    p: &mut CpuStorage,
    g: &CpuStorage,
    m: &mut CpuStorage,
    v: &mut CpuStorage,
    u: &AdamWUpdate,
) -> Result<()> {
    match p.dtype() {
        DType::F32 => adamw_typed::<f32>(p, g, m, v, u),
        DType::F64 => adamw_typed::<f64>(p, g, m, v, u),
        DType::F16 => Err(dtype_error("adamw")),
    }
}

fn adamw_typed<T: Elem>(
    p: &mut CpuStorage,
    g: &CpuStorage,
    m: &mut CpuStorage,
    v: &mut CpuStorage,
    u: &AdamWUpdate,
) -> Result<()> {
    let err = || dtype_error("adamw");
    let p = T::slice_mut(p).ok_or_else(err)?;
    let g = T::slice(g).ok_or_else(err)?;
    let m = T::slice_mut(m).ok_or_else(err)?;
    let v = T::slice_mut(v).ok_or_else(err)?;
    // Scalars in f64, as torch computes them in Python floats.
    let step = u.step as f64;
    let bias_correction1 = 1.0 - u.beta1.powf(step);
    let bias_correction2 = 1.0 - u.beta2.powf(step);
    let decay = T::c(1.0 - u.lr * u.weight_decay);
    let one_minus_beta1 = T::c(1.0 - u.beta1);
    let beta2 = T::c(u.beta2);
    let one_minus_beta2 = T::c(1.0 - u.beta2);
    let neg_step_size = T::c(-u.lr / bias_correction1);
    let bias_correction2_sqrt = T::c(bias_correction2.sqrt());
    let eps = T::c(u.eps);
    let grad_scale = T::c(u.grad_scale);
    let update = |p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
            // --clip-grad's factor (1 without clipping), as torch multiplies the gradients.
            let g = g * grad_scale;
            // Decoupled weight decay shrinks the weights before, and apart from, Adam.
            *p *= decay;
            // torch's lerp(m, g, 1 - beta1) for a weight below 1/2.
            *m += one_minus_beta1 * (g - *m);
            *v = *v * beta2 + one_minus_beta2 * g * g;
            let denom = v.sqrt() / bias_correction2_sqrt + eps;
            *p += neg_step_size * *m / denom;
        }
    };
    if p.len() >= CPU_PAR_MIN {
        p.par_chunks_mut(CPU_PAR_MIN)
            .zip(g.par_chunks(CPU_PAR_MIN))
            .zip(m.par_chunks_mut(CPU_PAR_MIN))
            .zip(v.par_chunks_mut(CPU_PAR_MIN))
            .for_each(|(((p, g), m), v)| update(p, g, m, v));
    } else {
        update(p, g, m, v);
    }
    Ok(())
}

pub(super) fn sgd(
    p: &mut CpuStorage,
    g: &CpuStorage,
    buffer: Option<&mut CpuStorage>,
    u: &SgdUpdate,
) -> Result<()> {
    match p.dtype() {
        DType::F32 => sgd_typed::<f32>(p, g, buffer, u),
        DType::F64 => sgd_typed::<f64>(p, g, buffer, u),
        DType::F16 => Err(dtype_error("sgd")),
    }
}

fn sgd_typed<T: Elem>(
    p: &mut CpuStorage,
    g: &CpuStorage,
    buffer: Option<&mut CpuStorage>,
    u: &SgdUpdate,
) -> Result<()> {
    let err = || dtype_error("sgd");
    let p = T::slice_mut(p).ok_or_else(err)?;
    let g = T::slice(g).ok_or_else(err)?;
    let buffer = buffer
        .map(|b| T::slice_mut(b).ok_or_else(err))
        .transpose()?;
    let weight_decay = T::c(u.weight_decay);
    let momentum = T::c(u.momentum);
    let neg_lr = T::c(-u.lr);
    // The descent direction before momentum: the gradient plus the coupled weight decay
    // (skipped at 0, as torch does, so that 0 * inf cannot turn into NaN).
    let direction = |p: T, g: T| {
        if u.weight_decay != 0.0 {
            g + weight_decay * p
        } else {
            g
        }
    };
    match buffer {
        None => {
            let update = |p: &mut [T], g: &[T]| {
                for (p, &g) in p.iter_mut().zip(g) {
                    *p += neg_lr * direction(*p, g);
                }
            };
            if p.len() >= CPU_PAR_MIN {
                p.par_chunks_mut(CPU_PAR_MIN)
                    .zip(g.par_chunks(CPU_PAR_MIN))
                    .for_each(|(p, g)| update(p, g));
            } else {
                update(p, g);
            }
        }
        Some(buffer) => {
            let update = |p: &mut [T], g: &[T], b: &mut [T]| {
                for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
                    let d = direction(*p, g);
                    *b = *b * momentum + d;
                    let d = if u.nesterov { d + momentum * *b } else { *b };
                    *p += neg_lr * d;
                }
            };
            if p.len() >= CPU_PAR_MIN {
                p.par_chunks_mut(CPU_PAR_MIN)
                    .zip(g.par_chunks(CPU_PAR_MIN))
                    .zip(buffer.par_chunks_mut(CPU_PAR_MIN))
                    .for_each(|((p, g), b)| update(p, g, b));
            } else {
                update(p, g, buffer);
            }
        }
    }
    Ok(())
}
