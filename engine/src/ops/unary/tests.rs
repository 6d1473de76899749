use crate::{DType, Device, Tensor};

fn t(v: &[f64]) -> Tensor {
    Tensor::from_f64_slice(v, [v.len()], DType::F64, &Device::Cpu).unwrap()
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn forward_matches_hand_values() {
    let x = t(&[-1.0, 0.0, 2.0]);
    close(
        &x.exp().unwrap().to_vec_f64().unwrap(),
        &[(-1f64).exp(), 1.0, 2f64.exp()],
    );
    close(&x.relu().unwrap().to_vec_f64().unwrap(), &[0.0, 0.0, 2.0]);
    close(&x.neg().unwrap().to_vec_f64().unwrap(), &[1.0, 0.0, -2.0]);
    // gelu(1) = 0.5 * (1 + erf(1/sqrt 2)) = 0.8413447460685429 (torch.nn.functional.gelu)
    close(
        &t(&[1.0, -1.0]).gelu().unwrap().to_vec_f64().unwrap(),
        &[0.8413447460685429, -0.15865525393145707],
    );
    close(&t(&[0.0]).sigmoid().unwrap().to_vec_f64().unwrap(), &[0.5]);
    close(&t(&[4.0]).sqrt().unwrap().to_vec_f64().unwrap(), &[2.0]);
    close(&t(&[2.0]).powf(3.0).unwrap().to_vec_f64().unwrap(), &[8.0]);
    close(
        &t(&[1.0]).tanh().unwrap().to_vec_f64().unwrap(),
        &[1f64.tanh()],
    );
    close(
        &t(&[1.0])
            .mul_scalar(3.0)
            .unwrap()
            .add_scalar(-1.0)
            .unwrap()
            .to_vec_f64()
            .unwrap(),
        &[2.0],
    );
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

#[test]
fn relu_gradient_is_step() {
    let x = t(&[-2.0, 3.0]).set_requires_grad(true);
    x.relu().unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![0.0, 1.0]);
}

mod gpu {
    use crate::gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on, test_device};
    use crate::gradcheck::Case;

    /// Every op at sizes around the 256-wide workgroup, on inputs spread over [-6, 6].
    fn awkward_cases() -> Vec<Case> {
        let spread = |_: usize, s: &[usize], seed: u64| -> Vec<f64> {
            let n: usize = s.iter().product();
            (0..n)
                .map(|i| ((i as u64 * 7919 + seed) % 1201) as f64 / 100.0 - 6.0)
                .collect()
        };
        let mut cases = Vec::new();
        for case in super::super::gradcheck_cases() {
            if case.shapes == [vec![3, 13]] {
                for dims in [vec![255], vec![257], vec![2, 601]] {
                    let c = case.clone();
                    cases.push(
                        Case::new(&case.name, &[&dims], move |x| c.apply(x)).with_init(spread),
                    );
                }
            }
        }
        // Negative bases with integer exponents have real powers; WGSL's pow has none.
        for p in [2.0, 3.0] {
            cases.push(
                Case::new("powf_integer", &[&[257]], move |x| x[0].powf(p)).with_init(spread),
            );
        }
        cases
    }

    #[test]
    fn gpu_matches_cpu() {
        let Some(gpu) = test_device() else { return };
        assert_gpu_agrees(&gpu, &super::super::gradcheck_cases(), 1e-5);
        assert_gpu_agrees(&gpu, &awkward_cases(), 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences_on_gpu() {
        let Some(gpu) = test_device() else { return };
        assert_gradients_pass_on(&gpu, &super::super::gradcheck_cases());
    }

    /// `full` fills on the device (the fill kernel) what the CPU fills on the host.
    #[test]
    fn full_on_the_gpu_matches_the_cpu() {
        use crate::{DType, Device, Tensor};
        let Some(gpu) = test_device() else { return };
        for (dims, value) in [
            (vec![], 2.5),
            (vec![1], -1.0),
            (vec![13], 0.0),
            (vec![255], 7.25),
            (vec![257], 1e-3),
            (vec![3, 65537], -3.5),
        ] {
            let want = Tensor::full(value, dims.as_slice(), DType::F32, &Device::Cpu).unwrap();
            let got = Tensor::full(value, dims.as_slice(), DType::F32, &gpu).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert_eq!(
                got.to_vec_f32().unwrap(),
                want.to_vec_f32().unwrap(),
                "{dims:?}"
            );
        }
        assert_eq!(
            Tensor::zeros([0], DType::F32, &gpu)
                .unwrap()
                .to_vec_f32()
                .unwrap(),
            Vec::<f32>::new()
        );
        assert!(Tensor::ones([3], DType::F64, &gpu).is_err());
    }
}

/// The f32 GELU path (vectorisable erf and exp) against libm in f64, over a dense grid that
/// covers erf's clamp at ±4 and the exp's range down to -87.
#[test]
fn fast_f32_gelu_matches_libm() {
    use super::cpu::fast;
    let (mut erf_err, mut exp_err, mut gelu_err, mut grad_err) = (0f64, 0f64, 0f64, 0f64);
    for i in -40_000..=40_000 {
        let x = i as f32 * 2.5e-4 * 40.0; // -400 .. 400 in steps of 0.01
        let xd = x as f64;
        erf_err = erf_err.max((fast::erf(x) as f64 - libm::erf(xd)).abs());
        let a = -(x.abs());
        if a > -87.0 {
            let e = (a as f64).exp();
            exp_err = exp_err.max((fast::exp_nonpositive(a) as f64 - e).abs() / e);
        }
        let cdf = 0.5 * (1.0 + libm::erf(xd / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
        gelu_err = gelu_err.max((fast::gelu(x) as f64 - xd * cdf).abs() / (1.0 + xd.abs()));
        grad_err = grad_err.max((fast::gelu_grad(x) as f64 - (cdf + xd * pdf)).abs());
    }
    assert!(erf_err < 5e-7, "erf {erf_err:e}");
    assert!(exp_err < 5e-7, "exp {exp_err:e}");
    assert!(gelu_err < 5e-7, "gelu {gelu_err:e}");
    assert!(grad_err < 1e-6, "gelu grad {grad_err:e}");
    assert!(fast::gelu(f32::NAN).is_nan());
    // The edges a softmax's shifted scores reach: a NaN row, masked (-inf) and far entries.
    assert!(fast::exp_nonpositive(f32::NAN).is_nan());
    assert_eq!(fast::exp_nonpositive(f32::NEG_INFINITY), 0.0);
    assert_eq!(fast::exp_nonpositive(-87.5), 0.0);
    assert_eq!(fast::exp_nonpositive(0.0), 1.0);
}

/// gelu and its gradient on f32 tensors (the fast path) agree with the f64 ones (libm).
#[test]
fn f32_gelu_and_its_gradient_match_f64() {
    let n = 40_000; // above the parallel threshold
    let v: Vec<f64> = (0..n).map(|i| (i as f64 - n as f64 / 2.0) * 3e-4).collect();
    let run = |dtype| {
        let x = Tensor::from_f64_slice(&v, [n], dtype, &Device::Cpu)
            .unwrap()
            .set_requires_grad(true);
        let y = x.gelu().unwrap();
        y.mul(&y).unwrap().sum_all().unwrap().backward().unwrap();
        (
            y.to_vec_f64().unwrap(),
            x.grad().unwrap().to_vec_f64().unwrap(),
        )
    };
    let (y32, g32) = run(DType::F32);
    let (y64, g64) = run(DType::F64);
    for i in 0..n {
        // Where Phi(x) is tiny, gelu(x) = x·Phi(x) inherits erf's absolute error (< 5e-7,
        // the test above) times |x| / 2.
        let tol = 1e-6 * (1.0 + y64[i].abs()) + 5e-7 * v[i].abs();
        assert!((y32[i] - y64[i]).abs() < tol, "y at {}", v[i]);
        assert!(
            (g32[i] - g64[i]).abs() < 1e-5 * (1.0 + g64[i].abs()),
            "grad at {}",
            v[i]
        );
    }
}
