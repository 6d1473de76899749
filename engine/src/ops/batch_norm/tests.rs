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

/// x [4, 2]: channel 0 holds 1, 2, 3, 6 (mean 3, biased variance 3.5, unbiased 14/3);
/// channel 1 holds 5, 5, 5, 5 (mean 5, variance 0).
fn batch() -> Tensor {
    t(&[1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 6.0, 5.0], &[4, 2])
}

#[test]
fn training_normalises_with_batch_statistics() {
    let w = t(&[2.0, 1.0], &[2]);
    let b = t(&[0.5, -1.0], &[2]);
    let (rm, rv) = (t(&[0.0, 0.0], &[2]), t(&[1.0, 1.0], &[2]));
    let y = batch()
        .batch_norm(&w, &b, &rm, &rv, true, 0.1, 1e-5)
        .unwrap();
    let s = 2.0 / (3.5f64 + 1e-5).sqrt();
    close(
        &y.to_vec_f64().unwrap(),
        &[
            0.5 - 2.0 * s,
            -1.0,
            0.5 - s,
            -1.0,
            0.5,
            -1.0,
            0.5 + 3.0 * s,
            -1.0,
        ],
        1e-12,
    );
}

#[test]
fn training_moves_running_statistics_in_place() {
    let (w, b) = (t(&[1.0, 1.0], &[2]), t(&[0.0, 0.0], &[2]));
    let (rm, rv) = (t(&[0.5, -1.0], &[2]), t(&[2.0, 1.0], &[2]));
    batch()
        .batch_norm(&w, &b, &rm, &rv, true, 0.1, 1e-5)
        .unwrap();
    // mean: 0.9 * 0.5 + 0.1 * 3 = 0.75 and 0.9 * -1 + 0.1 * 5 = -0.4.
    close(&rm.to_vec_f64().unwrap(), &[0.75, -0.4], 1e-12);
    // var (unbiased batch variance): 0.9 * 2 + 0.1 * 14/3 and 0.9 * 1 + 0.1 * 0.
    close(&rv.to_vec_f64().unwrap(), &[1.8 + 1.4 / 3.0, 0.9], 1e-12);
}

#[test]
fn eval_uses_running_statistics_and_leaves_them_alone() {
    // [1, 2, 1, 2]: channel 0 is x[0, 0, :, :] = 1, 2; channel 1 is 3, 4.
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 1, 2]);
    let (w, b) = (t(&[3.0, 1.0], &[2]), t(&[0.0, 1.0], &[2]));
    let (rm, rv) = (t(&[1.0, 2.0], &[2]), t(&[4.0, 0.25], &[2]));
    let y = x.batch_norm(&w, &b, &rm, &rv, false, 0.1, 0.0).unwrap();
    // (x - 1) / 2 * 3 and (x - 2) / 0.5 + 1.
    close(&y.to_vec_f64().unwrap(), &[0.0, 1.5, 3.0, 5.0], 1e-12);
    close(&rm.to_vec_f64().unwrap(), &[1.0, 2.0], 0.0);
    close(&rv.to_vec_f64().unwrap(), &[4.0, 0.25], 0.0);
}

#[test]
fn eval_gradients_match_hand_values() {
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 1, 2]).set_requires_grad(true);
    let w = t(&[3.0, 1.0], &[2]).set_requires_grad(true);
    let b = t(&[0.0, 1.0], &[2]).set_requires_grad(true);
    let (rm, rv) = (t(&[1.0, 2.0], &[2]), t(&[4.0, 0.25], &[2]));
    let y = x.batch_norm(&w, &b, &rm, &rv, false, 0.1, 0.0).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    close(
        &x.grad().unwrap().to_vec_f64().unwrap(),
        &[1.5, 1.5, 2.0, 2.0],
        1e-12,
    );
    // Σ x̂: (0 + 0.5) and (2 + 4).
    close(&w.grad().unwrap().to_vec_f64().unwrap(), &[0.5, 6.0], 1e-12);
    close(&b.grad().unwrap().to_vec_f64().unwrap(), &[2.0, 2.0], 1e-12);
}

#[test]
fn bad_inputs_are_errors() {
    let c2 = t(&[1.0, 1.0], &[2]);
    let c3 = t(&[1.0; 3], &[3]);
    let x = batch();
    let bn = |x: &Tensor, p: [&Tensor; 4], training, momentum| {
        x.batch_norm(p[0], p[1], p[2], p[3], training, momentum, 1e-5)
    };
    assert!(bn(&x, [&c2; 4], true, 0.1).is_ok());
    assert!(bn(&x, [&c3, &c2, &c2, &c2], true, 0.1).is_err());
    assert!(bn(&x, [&c2, &c2, &c2, &c3], false, 0.1).is_err());
    assert!(bn(&t(&[1.0; 8], &[4, 2, 1]), [&c2; 4], true, 0.1).is_err());
    assert!(bn(&x, [&c2; 4], true, 1.5).is_err());
    // One value per channel has no batch variance.
    assert!(bn(&t(&[1.0, 2.0], &[1, 2]), [&c2; 4], true, 0.1).is_err());
    assert!(bn(&t(&[1.0, 2.0], &[1, 2]), [&c2; 4], false, 0.1).is_ok());
}

#[test]
fn large_training_batch_matches_composed_ops() {
    // Big enough for the rayon paths; reference written with elementary ops over [N, C, S].
    let (n, c, s) = (5, 7, 1031);
    let dev = &Device::Cpu;
    let x = Tensor::randn([n, c, s, 1], 2.0, 1, DType::F64, dev).unwrap();
    let w = Tensor::randn([c], 1.0, 2, DType::F64, dev).unwrap();
    let b = Tensor::randn([c], 1.0, 3, DType::F64, dev).unwrap();
    let r = Tensor::randn([n, c, s, 1], 1.0, 4, DType::F64, dev).unwrap();
    let run = |fused: bool| {
        let (x, w, b) = (
            x.detach().set_requires_grad(true),
            w.detach().set_requires_grad(true),
            b.detach().set_requires_grad(true),
        );
        let y = if fused {
            let (rm, rv) = (
                Tensor::zeros([c], DType::F64, dev).unwrap(),
                Tensor::ones([c], DType::F64, dev).unwrap(),
            );
            x.batch_norm(&w, &b, &rm, &rv, true, 0.1, 1e-5).unwrap()
        } else {
            // Move channels last, normalise over all other positions.
            let xc = x
                .permute(&[0, 2, 3, 1])
                .unwrap()
                .reshape([n * s, c])
                .unwrap();
            let centred = xc.sub(&xc.mean(0, true).unwrap()).unwrap();
            let var = centred.mul(&centred).unwrap().mean(0, true).unwrap();
            let yc = centred
                .div(&var.add_scalar(1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .mul(&w)
                .unwrap()
                .add(&b)
                .unwrap();
            yc.reshape([n, s, 1, c])
                .unwrap()
                .permute(&[0, 3, 1, 2])
                .unwrap()
        };
        y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        [y, x.grad().unwrap(), w.grad().unwrap(), b.grad().unwrap()]
            .map(|t| t.to_vec_f64().unwrap())
    };
    for (f, r) in run(true).iter().zip(&run(false)) {
        close(f, r, 1e-9);
    }
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

mod gpu {
    use crate::gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on, test_device};
    use crate::gradcheck::Case;
    use crate::{DType, Device, Tensor};

    fn awkward_cases() -> Vec<Case> {
        let mut cases = Vec::new();
        for training in [true, false] {
            for shape in [vec![3, 5, 11, 13], vec![300, 3], vec![2, 1, 17, 1]] {
                let c = shape[1];
                cases.push(Case::new("batch_norm", &[&shape, &[c], &[c]], move |x| {
                    let (dtype, device) = (x[0].dtype(), x[0].device());
                    let rm = Tensor::randn([c], 0.5, 11, dtype, device)?;
                    let rv = Tensor::rand_uniform([c], 0.5, 2.0, 12, dtype, device)?;
                    x[0].batch_norm(&x[1], &x[2], &rm, &rv, training, 0.1, 1e-5)
                }));
            }
        }
        cases
    }

    #[test]
    fn gpu_matches_cpu() {
        let Some(gpu) = test_device() else { return };
        assert_gpu_agrees(&gpu, &super::super::gradcheck_cases(), 1e-4);
        assert_gpu_agrees(&gpu, &awkward_cases(), 1e-4);
    }

    #[test]
    fn gradients_match_finite_differences_on_gpu() {
        let Some(gpu) = test_device() else { return };
        assert_gradients_pass_on(&gpu, &super::super::gradcheck_cases());
    }

    /// The GPU's fused statistics kernel (rstd and both running averages in one launch)
    /// against the CPU's elementwise ops, on awkward channel counts and batch shapes.
    #[test]
    fn running_statistics_update_alike() {
        let Some(gpu) = test_device() else { return };
        let run = |device: &Device, dims: &[usize]| {
            let on = |t: Tensor| t.to_device(device).unwrap();
            let c = dims[1];
            let x = on(Tensor::randn(dims.to_vec(), 2.0, 1, DType::F32, &Device::Cpu).unwrap());
            let (w, b) = (
                on(Tensor::randn([c], 1.0, 2, DType::F32, &Device::Cpu).unwrap()),
                on(Tensor::randn([c], 1.0, 3, DType::F32, &Device::Cpu).unwrap()),
            );
            let rm = on(Tensor::randn([c], 1.0, 4, DType::F32, &Device::Cpu).unwrap());
            let rv = on(Tensor::ones([c], DType::F32, &Device::Cpu).unwrap());
            let y = x.batch_norm(&w, &b, &rm, &rv, true, 0.1, 1e-5).unwrap();
            [y, rm, rv].map(|t| t.to_vec_f64().unwrap())
        };
        for dims in [
            vec![4, 3, 5, 2],
            vec![2, 1, 1, 1],
            vec![3, 7],
            vec![2, 13, 3, 1],
            vec![1, 257, 2, 1],
        ] {
            for (want, got) in run(&Device::Cpu, &dims).iter().zip(run(&gpu, &dims)) {
                for (a, b) in want.iter().zip(&got) {
                    assert!(
                        (a - b).abs() < 1e-4 * (1.0 + a.abs()),
                        "{dims:?}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
