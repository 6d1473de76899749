//! The tape's contract: what is recorded, where gradients go, and how it fails.
use std::sync::{Arc, Mutex, Weak};

use crate::memory::StorageCell;

use crate::autograd::BackwardOp;
use crate::{
    backward_with_grads, checkpoint, enable_grad, is_grad_enabled, no_grad, DType, Device, Error,
    Tensor,
};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, shape, DType::F64, &Device::Cpu).unwrap()
}

fn param(v: &[f64], shape: &[usize]) -> Tensor {
    t(v, shape).set_requires_grad(true)
}

fn grad_of(x: &Tensor) -> Vec<f64> {
    x.grad().expect("a gradient").to_vec_f64().unwrap()
}

#[test]
fn gradients_accumulate_across_backward_calls_until_zero_grad() {
    let x = param(&[1.0, -2.0, 3.0], &[3]);
    // d/dx sum(x * x) = 2x
    let loss = || x.mul(&x).unwrap().sum_all().unwrap();
    loss().backward().unwrap();
    assert_eq!(grad_of(&x), vec![2.0, -4.0, 6.0]);
    loss().backward().unwrap();
    assert_eq!(grad_of(&x), vec![4.0, -8.0, 12.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    loss().backward().unwrap();
    assert_eq!(grad_of(&x), vec![2.0, -4.0, 6.0]);
}

#[test]
fn a_graph_is_differentiated_once_and_a_second_pass_says_recompute() {
    let x = param(&[3.0], &[1]);
    let loss = x.mul(&x).unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    let err = loss.backward().unwrap_err();
    assert!(matches!(err, Error::Backward(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("already used by a backward pass") && msg.contains("recompute the forward"),
        "{msg}"
    );
    assert_eq!(grad_of(&x), vec![6.0], "the failed pass adds nothing");
    // Recomputing the forward records a fresh graph.
    x.mul(&x).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(grad_of(&x), vec![12.0]);
}

#[test]
fn a_second_loss_over_a_differentiated_subgraph_is_an_error() {
    let x = param(&[1.0, 2.0], &[2]);
    let h = x.exp().unwrap();
    let first = h.sum_all().unwrap();
    let second = h.mul_scalar(2.0).unwrap().sum_all().unwrap();
    first.backward().unwrap();
    let err = second.backward().unwrap_err();
    assert!(err.to_string().contains("exp node"), "{err}");
}

#[test]
fn no_grad_records_nothing_and_backward_says_why() {
    let x = param(&[1.0, 2.0], &[2]);
    let y = {
        let _g = no_grad();
        assert!(!is_grad_enabled());
        x.mul(&x).unwrap().sum_all().unwrap()
    };
    assert!(
        is_grad_enabled(),
        "the guard restores recording when dropped"
    );
    assert!(y.is_leaf());
    assert!(!y.requires_grad());
    let err = y.backward().unwrap_err();
    assert!(matches!(err, Error::Backward(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("does not require grad") && msg.contains("no_grad"),
        "{msg}"
    );
    assert!(x.grad().is_none());
}

#[test]
fn enable_grad_records_inside_no_grad() {
    let x = param(&[1.0, 2.0], &[2]);
    let _outer = no_grad();
    let y = {
        let _inner = enable_grad();
        assert!(is_grad_enabled());
        x.mul_scalar(3.0).unwrap().sum_all().unwrap()
    };
    assert!(!is_grad_enabled(), "leaving enable_grad returns to no_grad");
    assert!(y.requires_grad() && !y.is_leaf());
    y.backward().unwrap();
    assert_eq!(grad_of(&x), vec![3.0, 3.0]);
}

#[test]
fn detach_stops_gradients() {
    let x = param(&[2.0, -1.0], &[2]);
    let d = x.detach();
    assert!(d.same_storage(&x), "detach shares the values");
    assert!(!d.requires_grad() && d.is_leaf());
    // Only the non-detached factor carries a gradient: d/dx (c * x) = c = x.
    x.detach()
        .mul(&x)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(grad_of(&x), vec![2.0, -1.0]);
    assert!(d.grad().is_none());
}

#[test]
fn a_tensor_used_twice_gets_the_sum_of_both_paths() {
    let x = param(&[1.5, -2.0], &[2]);
    // y = x*x + x: the x*x node uses x twice, the add uses it a third time; dy/dx = 2x + 1.
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    assert_eq!(grad_of(&x), vec![4.0, -3.0]);

    // A shared intermediate: h = 2x used by two branches, loss = sum(h*h) + sum(3h).
    let x = param(&[0.5, 1.0], &[2]);
    let h = x.mul_scalar(2.0).unwrap();
    let loss = h
        .mul(&h)
        .unwrap()
        .sum_all()
        .unwrap()
        .add(&h.mul_scalar(3.0).unwrap().sum_all().unwrap())
        .unwrap();
    loss.backward().unwrap();
    // d/dx = (2h + 3) * 2 = 8x + 6
    assert_eq!(grad_of(&x), vec![10.0, 14.0]);
}

#[test]
fn backward_on_a_non_scalar_is_an_error() {
    let x = param(&[1.0, 2.0, 3.0], &[3]);
    let y = x.mul_scalar(2.0).unwrap();
    let err = y.backward().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Backward(_)), "{msg}");
    assert!(msg.contains("scalar") && msg.contains("[3]"), "{msg}");
    assert!(x.grad().is_none());
}

#[test]
fn backward_with_grad_checks_the_seed_shape() {
    let x = param(&[1.0, 2.0, 3.0], &[3]);
    let y = x.mul_scalar(2.0).unwrap();
    let err = crate::autograd::backward_with_grad(&y, &t(&[1.0, 1.0], &[2])).unwrap_err();
    assert!(err.to_string().contains("gradient shape"), "{err}");
    crate::autograd::backward_with_grad(&y, &t(&[1.0, 0.5, -1.0], &[3])).unwrap();
    assert_eq!(grad_of(&x), vec![2.0, 1.0, -2.0]);
}

/// y = tanh(tanh(x W1 + b) W2) + x: two matmul + tanh layers and a residual add.
/// Seeding several outputs of one graph is the gradient of sum_k <root_k, seed_k>, also when
/// one root is computed from another and when the same root is seeded twice.
#[test]
fn backward_from_several_roots_sums_their_seeded_gradients() {
    let x = param(&[1.0, -2.0, 0.5], &[3]);
    let w = param(&[0.3, 0.7, -1.1], &[3]);
    let a = x.mul(&w).unwrap(); // root 1
    let b = a.mul(&x).unwrap().exp().unwrap(); // root 2, built on root 1
    let (ga, gb) = (t(&[0.5, -1.0, 2.0], &[3]), t(&[1.5, 0.25, -0.75], &[3]));
    backward_with_grads(&[(&a, &ga), (&b, &gb), (&a, &ga)]).unwrap();
    let got = (grad_of(&x), grad_of(&w));

    let (x2, w2) = (
        x.detach().set_requires_grad(true),
        w.detach().set_requires_grad(true),
    );
    let a2 = x2.mul(&w2).unwrap();
    let b2 = a2.mul(&x2).unwrap().exp().unwrap();
    let surrogate = a2
        .mul(&ga.mul_scalar(2.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .add(&b2.mul(&gb).unwrap().sum_all().unwrap())
        .unwrap();
    surrogate.backward().unwrap();
    for (g, want) in [(got.0, grad_of(&x2)), (got.1, grad_of(&w2))] {
        for (g, want) in g.iter().zip(&want) {
            assert!((g - want).abs() < 1e-12, "{g} vs {want}");
        }
    }
    // A root that records nothing cannot be seeded.
    let plain = t(&[1.0], &[1]);
    assert!(backward_with_grads(&[(&plain, &plain)]).is_err());
}

fn block(x: &Tensor, w1: &Tensor, b: &Tensor, w2: &Tensor) -> crate::Result<Tensor> {
    x.matmul(w1)?.add(b)?.tanh()?.matmul(w2)?.tanh()?.add(x)
}

#[test]
fn checkpoint_gives_the_same_gradients_as_the_plain_block() {
    let x0 = param(&[0.3, -1.2, 0.7, 2.0, -0.4, 0.9], &[2, 3]);
    let w1 = param(
        &[
            0.5, -0.3, 0.8, 0.1, -0.7, 0.2, 0.4, 0.6, -0.9, 0.3, 0.05, -0.2,
        ],
        &[3, 4],
    );
    let b = param(&[0.1, -0.2, 0.3, 0.0], &[4]);
    let w2 = param(
        &[
            0.2, -0.5, 0.7, 0.3, -0.1, 0.4, 0.9, -0.6, 0.25, -0.35, 0.15, 0.45,
        ],
        &[4, 3],
    );
    let r = t(&[1.0, -2.0, 0.5, 3.0, 0.25, -1.0], &[2, 3]);
    let leaves = [&x0, &w1, &b, &w2];
    // The block's input is an intermediate (2 x0), so its gradient must flow on to x0.
    let loss_of = |y: Tensor| y.mul(&r).unwrap().sum_all().unwrap();

    let x = x0.mul_scalar(2.0).unwrap();
    let plain = loss_of(block(&x, &w1, &b, &w2).unwrap());
    plain.backward().unwrap();
    let expected: Vec<Vec<f64>> = leaves.iter().map(|p| grad_of(p)).collect();
    for p in leaves {
        p.zero_grad();
    }

    let (w1c, bc, w2c) = (w1.clone(), b.clone(), w2.clone());
    let f: crate::autograd::BlockFn = Arc::new(move |xs| block(&xs[0], &w1c, &bc, &w2c));
    let x = x0.mul_scalar(2.0).unwrap();
    let out = checkpoint(&[x], &[w1.clone(), b.clone(), w2.clone()], f).unwrap();
    assert_eq!(
        out.node().map(|n| n.name()),
        Some("checkpoint"),
        "the block is one node on the tape"
    );
    let checkpointed = loss_of(out);
    assert_eq!(
        checkpointed.to_scalar().unwrap(),
        plain.to_scalar().unwrap()
    );
    checkpointed.backward().unwrap();
    for (p, want) in leaves.iter().zip(&expected) {
        assert_eq!(&grad_of(p), want);
    }
}

#[test]
fn deep_chains_neither_overflow_backward_nor_drop() {
    // 10,000 recorded ops; built, differentiated and freed on a thread with a small stack so
    // that any recursion over the chain's length fails here rather than in a deep model.
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            let x = param(&[1.0], &[1]);
            let mut y = x.clone();
            for _ in 0..10_000 {
                y = y.mul_scalar(1.0001).unwrap().add_scalar(-0.5).unwrap();
            }
            y.sum_all().unwrap().backward().unwrap();
            let g = grad_of(&x)[0];
            let want = 1.0001f64.powi(10_000);
            assert!((g - want).abs() < 1e-9 * want, "{g} vs {want}");
            drop(y);
        })
        .unwrap()
        .join()
        .unwrap();
}

/// A handle on a tensor's storage that does not keep it alive.
fn watch(t: &Tensor) -> Weak<StorageCell> {
    Arc::downgrade(t.values())
}

#[test]
fn ops_keep_only_what_their_backward_reads() {
    let x = param(&[1.0, -2.0, 3.0], &[3]);
    // add needs no values, relu only its output, matmul its inputs but not its output.
    let a = x.mul_scalar(2.0).unwrap();
    let (a_values, sum) = (watch(&a), a.add(&x).unwrap());
    drop(a);
    assert!(a_values.upgrade().is_none(), "add kept its input");

    let a = x.mul_scalar(2.0).unwrap();
    let (a_values, r) = (watch(&a), a.relu().unwrap());
    let r_values = watch(&r);
    drop((a, r));
    assert!(a_values.upgrade().is_none(), "relu kept its input");
    assert!(
        r_values.upgrade().is_none(),
        "nothing uses relu's output yet"
    );

    let a = x.mul_scalar(2.0).unwrap();
    let a_values = watch(&a);
    let r = a.relu().unwrap();
    let r_values = watch(&r);
    let loss = r.sum_all().unwrap().add(&sum.sum_all().unwrap()).unwrap();
    drop((a, r));
    assert!(a_values.upgrade().is_none(), "relu kept its input");
    assert!(r_values.upgrade().is_some(), "relu must keep its output");

    // The counter-check: mul reads both factors, so it keeps them.
    let a = x.mul_scalar(2.0).unwrap();
    let a_values = watch(&a);
    let m = a.mul(&a).unwrap();
    drop(a);
    assert!(a_values.upgrade().is_some(), "mul must keep its inputs");

    let w = param(&[0.5, -1.0, 2.0, 0.25, 1.5, -0.5], &[3, 2]);
    let y = x.reshape([1, 3]).unwrap().matmul(&w).unwrap();
    let y_values = watch(&y);
    let loss = loss.add(&y.sum_all().unwrap()).unwrap();
    drop(y);
    assert!(y_values.upgrade().is_none(), "matmul kept its output");

    loss.add(&m.sum_all().unwrap()).unwrap().backward().unwrap();
    // d/dx: relu(2x) -> 2 [x > 0]; 2x + x -> 3; x W -> row sums of W; (2x)^2 -> 8x.
    assert_eq!(
        grad_of(&x),
        vec![
            2.0 + 3.0 - 0.5 + 8.0,
            3.0 + 2.25 - 16.0,
            2.0 + 3.0 + 1.0 + 24.0
        ]
    );
}

/// y = x, whose backward records whether a watched storage is still alive when it runs.
struct Probe {
    watched: Arc<Mutex<Weak<StorageCell>>>,
    alive_at_backward: Arc<Mutex<Option<bool>>>,
}

impl BackwardOp for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn backward(&self, _: &[Tensor], _: &Tensor, g: &Tensor) -> crate::Result<Vec<Option<Tensor>>> {
        let alive = self.watched.lock().unwrap().upgrade().is_some();
        *self.alive_at_backward.lock().unwrap() = Some(alive);
        Ok(vec![Some(g.clone())])
    }
    fn saves_input(&self, _: usize) -> bool {
        false
    }
    fn saves_output(&self) -> bool {
        false
    }
}

#[test]
fn saved_tensors_are_freed_while_backward_proceeds() {
    let x = param(&[0.5, -1.0], &[2]);
    let watched = Arc::new(Mutex::new(Weak::new()));
    let alive_at_backward = Arc::new(Mutex::new(None));
    let probe = Probe {
        watched: watched.clone(),
        alive_at_backward: alive_at_backward.clone(),
    };
    let storage = x.storage().clone();
    let p = Tensor::from_op(
        storage,
        x.shape().clone(),
        Device::Cpu,
        probe,
        vec![x.clone()],
    );
    // h = exp(p) is saved twice: as exp's output and as both factors of h * h.
    let h = p.exp().unwrap();
    *watched.lock().unwrap() = watch(&h);
    let loss = h.mul(&h).unwrap().sum_all().unwrap();
    drop((p, h));
    assert!(
        watched.lock().unwrap().upgrade().is_some(),
        "the tape holds h"
    );
    loss.backward().unwrap();
    assert_eq!(
        *alive_at_backward.lock().unwrap(),
        Some(false),
        "h's storage must be freed once mul's and exp's rules have run, before the probe's"
    );
    // d/dx exp(x)^2 = 2 exp(2x)
    let want: Vec<f64> = [0.5f64, -1.0]
        .iter()
        .map(|v| 2.0 * (2.0 * v).exp())
        .collect();
    for (g, w) in grad_of(&x).iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}

/// Claims to read nothing, then reads its input.
struct ReadsUnsaved;

impl BackwardOp for ReadsUnsaved {
    fn name(&self) -> &'static str {
        "reads_unsaved"
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _: &Tensor,
        g: &Tensor,
    ) -> crate::Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.mul(&inputs[0])?)])
    }
    fn saves_input(&self, _: usize) -> bool {
        false
    }
}

#[test]
fn a_rule_that_reads_what_its_op_did_not_save_is_named() {
    let x = param(&[1.0], &[1]);
    let y = x.mul_scalar(2.0).unwrap();
    let storage = y.storage().clone();
    let z = Tensor::from_op(
        storage,
        y.shape().clone(),
        Device::Cpu,
        ReadsUnsaved,
        vec![y],
    );
    let loss = z.sum_all().unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loss.backward()))
        .expect_err("reading an unsaved input must fail loudly");
    let msg = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(
        msg.contains("`reads_unsaved`") && msg.contains("did not save"),
        "{msg}"
    );
}
