use crate::{DType, Device, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn forward_matches_hand_values() {
    // Row [1, 2, 3, 6]: mean 3, biased variance (4 + 1 + 0 + 9) / 4 = 3.5.
    let x = t(&[1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0], &[2, 4]);
    let s = 1.0 / (3.5f64 + 1e-5).sqrt();
    let plain = x.layer_norm(None, None, 1e-5).unwrap();
    close(
        &plain.to_vec_f64().unwrap(),
        &[-2.0 * s, -s, 0.0, 3.0 * s, 0.0, 0.0, 0.0, 0.0],
        1e-12,
    );
    let w = t(&[1.0, 2.0, -1.0, 0.5], &[4]);
    let b = t(&[0.0, 1.0, 0.0, -1.0], &[4]);
    let y = x.layer_norm(Some(&w), Some(&b), 1e-5).unwrap();
    // A constant row normalises to 0, leaving the bias.
    close(
        &y.to_vec_f64().unwrap(),
        &[
            -2.0 * s,
            1.0 - 2.0 * s,
            0.0,
            1.5 * s - 1.0,
            0.0,
            1.0,
            0.0,
            -1.0,
        ],
        1e-12,
    );
}

#[test]
fn gradient_of_parameters_matches_hand_values() {
    // loss = sum(y): dbias = rows summed = [2, 2], dweight = Σ x̂ over rows.
    let x = t(&[1.0, 3.0, 4.0, 0.0], &[2, 2]);
    let w = t(&[2.0, 3.0], &[2]).set_requires_grad(true);
    let b = t(&[0.0, 0.0], &[2]).set_requires_grad(true);
    let x = x.set_requires_grad(true);
    let loss = x
        .layer_norm(Some(&w), Some(&b), 0.0)
        .unwrap()
        .sum_all()
        .unwrap();
    loss.backward().unwrap();
    // x̂ rows are [-1, 1] and [1, -1]: Σ x̂ = [0, 0].
    close(&b.grad().unwrap().to_vec_f64().unwrap(), &[2.0, 2.0], 1e-12);
    close(&w.grad().unwrap().to_vec_f64().unwrap(), &[0.0, 0.0], 1e-12);
    // sum(y) = Σ w x̂ + const; with d = 2 the Jacobian of x̂ vanishes at these points.
    close(&x.grad().unwrap().to_vec_f64().unwrap(), &[0.0; 4], 1e-12);
}

#[test]
fn bad_shapes_are_errors() {
    let x = t(&[1.0; 6], &[2, 3]);
    let w3 = t(&[1.0; 3], &[3]);
    let w2 = t(&[1.0; 2], &[2]);
    assert!(x.layer_norm(Some(&w2), None, 1e-5).is_err());
    assert!(x.layer_norm(Some(&w3), Some(&w2), 1e-5).is_err());
    assert!(x
        .layer_norm(Some(&t(&[1.0; 3], &[1, 3])), None, 1e-5)
        .is_err());
    assert!(x.layer_norm(None, None, -1.0).is_err());
    assert!(t(&[1.0], &[]).layer_norm(None, None, 1e-5).is_err());
    let w32 = Tensor::ones([3], DType::F32, &Device::Cpu).unwrap();
    assert!(x.layer_norm(Some(&w32), None, 1e-5).is_err());
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

/// The same normalisation written with elementary ops, differentiated by the tape.
fn composed(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    let xc = x.sub(&x.mean(-1, true).unwrap()).unwrap();
    let var = xc.mul(&xc).unwrap().mean(-1, true).unwrap();
    let std = var.add_scalar(eps).unwrap().sqrt().unwrap();
    xc.div(&std).unwrap().mul(w).unwrap().add(b).unwrap()
}

#[test]
fn large_input_matches_composed_ops() {
    // Large enough for the rayon split of rows and of the dweight / dbias partial sums.
    let (rows, d) = (301, 129);
    let dev = &Device::Cpu;
    let x = Tensor::randn([rows, d], 2.0, 1, DType::F64, dev).unwrap();
    let w = Tensor::randn([d], 1.0, 2, DType::F64, dev).unwrap();
    let b = Tensor::randn([d], 1.0, 3, DType::F64, dev).unwrap();
    let r = Tensor::randn([rows, d], 1.0, 4, DType::F64, dev).unwrap();
    let run = |f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor| {
        let (x, w, b) = (
            x.detach().set_requires_grad(true),
            w.detach().set_requires_grad(true),
            b.detach().set_requires_grad(true),
        );
        let y = f(&x, &w, &b);
        y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        [y, x.grad().unwrap(), w.grad().unwrap(), b.grad().unwrap()]
            .map(|t| t.to_vec_f64().unwrap())
    };
    let fused = run(&|x, w, b| x.layer_norm(Some(w), Some(b), 1e-5).unwrap());
    let reference = run(&|x, w, b| composed(x, w, b, 1e-5));
    for (f, r) in fused.iter().zip(&reference) {
        close(f, r, 1e-10);
    }
}
