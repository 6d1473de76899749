use crate::{DType, Device, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

fn iota(n: usize) -> Vec<f64> {
    (1..=n).map(|v| v as f64).collect()
}

#[test]
fn forward_matches_hand_values() {
    //  1  2  3  4
    //  5  6  7  8   2x2 windows at stride 2: maxima 6 8 14 16,
    //  9 10 11 12   means (1+2+5+6)/4 = 3.5, 5.5, 11.5, 13.5.
    // 13 14 15 16
    let x = t(&iota(16), &[1, 1, 4, 4]);
    assert_eq!(values(&x.max_pool2d(2, 2, 0).unwrap()), [6., 8., 14., 16.]);
    assert_eq!(
        values(&x.avg_pool2d(2, 2, 0).unwrap()),
        [3.5, 5.5, 11.5, 13.5]
    );
    assert_eq!(values(&x.global_avg_pool2d().unwrap()), [8.5]);

    // 3x3 windows, stride 2, padding 1 over 1..9: each window holds one 2x2 corner of x
    // and five padding cells. Max: 5 6 8 9. Mean over all 9 cells (padding counted):
    // (1+2+4+5)/9, (2+3+5+6)/9, (4+5+7+8)/9, (5+6+8+9)/9.
    let x = t(&iota(9), &[1, 1, 3, 3]);
    let y = x.max_pool2d(3, 2, 1).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(values(&y), [5., 6., 8., 9.]);
    let y = values(&x.avg_pool2d(3, 2, 1).unwrap());
    for (got, sum) in y.iter().zip([12., 16., 24., 28.]) {
        assert!((got - sum / 9.0).abs() < 1e-15);
    }

    // Padding is −∞ for max pooling, not 0: an all-negative plane keeps its values.
    // x = -3 -1   2x2 windows, stride 1, padding 1: the 3x3 output's corners see one value
    //     -4 -2   each, its edges two (e.g. left middle: max(-3, -4)), its centre all four.
    let neg = t(&[-3., -1., -4., -2.], &[1, 1, 2, 2]);
    let want = [-3., -1., -1., -3., -1., -1., -4., -2., -2.];
    assert_eq!(values(&neg.max_pool2d(2, 1, 1).unwrap()), want);

    // Planes are pooled independently: [1,2,1,1] stays two values, [2,3,h,w] gives [2,3].
    let two = t(&[1., 2., 3., 4., 5., 6., 7., 8.], &[1, 2, 2, 2]);
    assert_eq!(values(&two.max_pool2d(2, 2, 0).unwrap()), [4., 8.]);
    assert_eq!(values(&two.global_avg_pool2d().unwrap()), [2.5, 6.5]);
    let g = t(&iota(2 * 3 * 5), &[2, 3, 5, 1])
        .global_avg_pool2d()
        .unwrap();
    assert_eq!(g.dims(), &[2, 3]);
    assert_eq!(values(&g), [3., 8., 13., 18., 23., 28.]);
}

#[test]
fn max_pool_gradient_goes_to_the_first_maximum() {
    // Overlapping 2x2 windows at stride 1 over a plane whose centre is the maximum: all four
    // windows pick the centre, which collects all four output gradients.
    let x = t(&[1., 2., 3., 4., 9., 5., 6., 7., 8.], &[1, 1, 3, 3]).set_requires_grad(true);
    x.max_pool2d(2, 1, 0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        values(&x.grad().unwrap()),
        [0., 0., 0., 0., 4., 0., 0., 0., 0.]
    );

    // A tie: the first maximum in row-major order takes the gradient, as in PyTorch.
    let x = t(&[1., 7., 7., 7.], &[1, 1, 2, 2]).set_requires_grad(true);
    x.max_pool2d(2, 2, 0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(values(&x.grad().unwrap()), [0., 1., 0., 0.]);
}

#[test]
fn avg_pool_gradient_spreads_over_the_window() {
    // 2x2 windows at stride 1 over 3x3: each input gets 1/4 per window covering it, so the
    // centre gets 4/4, edges 2/4 and corners 1/4. With padding 1 and kernel 2 (stride 2)
    // every input lies in exactly one window: 1/4 each.
    let x = t(&iota(9), &[1, 1, 3, 3]).set_requires_grad(true);
    x.avg_pool2d(2, 1, 0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let want = [0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25];
    assert_eq!(values(&x.grad().unwrap()), want);
    let x = t(&iota(9), &[1, 1, 3, 3]).set_requires_grad(true);
    x.avg_pool2d(2, 2, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(values(&x.grad().unwrap()), [0.25; 9]);
}

#[test]
fn nan_propagates_through_max_pooling() {
    let x = t(&[1., f64::NAN, 3., 4.], &[1, 1, 2, 2]);
    assert!(x.max_pool2d(2, 2, 0).unwrap().to_scalar().unwrap().is_nan());
}

/// Direct pooling: every cell of every kernel x kernel window, the padded ones included.
fn naive_pool(x: &[f64], dims: [usize; 4], k: usize, s: usize, p: usize, max: bool) -> Vec<f64> {
    let [n, c, h, w] = dims;
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut y = Vec::new();
    for plane in 0..n * c {
        for oy in 0..ho {
            for ox in 0..wo {
                let cells = (0..k * k).map(|t| {
                    let iy = (oy * s + t / k) as isize - p as isize;
                    let ix = (ox * s + t % k) as isize - p as isize;
                    let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                    match (inside, max) {
                        (true, _) => x[plane * h * w + iy as usize * w + ix as usize],
                        (false, true) => f64::NEG_INFINITY,
                        (false, false) => 0.0,
                    }
                });
                y.push(if max {
                    cells.fold(f64::NEG_INFINITY, f64::max)
                } else {
                    cells.sum::<f64>() / (k * k) as f64
                });
            }
        }
    }
    y
}

#[test]
fn pooling_matches_direct_windows_on_awkward_sizes() {
    // [n, c, h, w], kernel, stride, padding; the last one is large enough for rayon.
    let cases: [([usize; 4], usize, usize, usize); 7] = [
        ([1, 1, 1, 1], 1, 1, 0),
        ([2, 3, 7, 5], 2, 2, 0),
        ([1, 5, 11, 13], 3, 2, 1),
        ([3, 2, 5, 7], 3, 1, 1),
        ([1, 1, 13, 11], 5, 3, 2),
        ([2, 1, 4, 6], 4, 1, 0),
        ([4, 16, 29, 31], 3, 2, 1),
    ];
    for (dims, k, s, p) in cases {
        for dtype in [DType::F64, DType::F32] {
            let x = Tensor::randn(dims, 1.0, 7, dtype, &Device::Cpu).unwrap();
            let xv = values(&x);
            let what = format!("{dims:?} k{k} s{s} p{p} {dtype:?}");
            let max = values(&x.max_pool2d(k, s, p).unwrap());
            assert_eq!(max, naive_pool(&xv, dims, k, s, p, true), "max {what}");
            let avg = values(&x.avg_pool2d(k, s, p).unwrap());
            for (a, b) in avg.iter().zip(naive_pool(&xv, dims, k, s, p, false)) {
                assert!((a - b).abs() < 1e-6, "avg {what}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let x = t(&[0.0; 2 * 3 * 4 * 4], &[2, 3, 4, 4]);
    let err = |r: crate::Result<Tensor>| r.unwrap_err().to_string();
    let flat = x.reshape([6, 4, 4]).unwrap();
    assert!(err(flat.max_pool2d(2, 2, 0)).contains("[N,C,H,W]"));
    assert!(err(flat.avg_pool2d(2, 2, 0)).contains("avg_pool2d"));
    assert!(err(flat.global_avg_pool2d()).contains("[N,C,H,W]"));
    assert!(err(x.max_pool2d(2, 0, 0)).contains("stride"));
    assert!(err(x.avg_pool2d(0, 1, 0)).contains("kernel"));
    assert!(err(x.max_pool2d(3, 1, 2)).contains("half the kernel"));
    assert!(err(x.max_pool2d(7, 1, 1)).contains("larger than the padded input"));
    assert!(x.max_pool2d(6, 1, 1).is_ok());
    assert!(err(t(&[], &[1, 1, 0, 3]).max_pool2d(2, 1, 1)).contains("empty"));
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
        let distinct = |_: usize, s: &[usize], seed: u64| {
            super::super::distinct_values(s.iter().product(), seed)
        };
        let mut cases = Vec::new();
        for (shape, k, s, p) in [
            ([2, 3, 17, 13], 3, 2, 1),
            ([1, 2, 9, 11], 2, 2, 0),
            ([3, 1, 7, 7], 3, 1, 1),
            ([1, 1, 5, 6], 5, 3, 2),
        ] {
            cases.push(
                Case::new("max_pool2d", &[&shape], move |x| x[0].max_pool2d(k, s, p))
                    .with_init(distinct),
            );
            cases.push(Case::new("avg_pool2d", &[&shape], move |x| {
                x[0].avg_pool2d(k, s, p)
            }));
        }
        cases.push(Case::new("global_avg_pool2d", &[&[2, 5, 7, 3]], |x| {
            x[0].global_avg_pool2d()
        }));
        cases
    }

    #[test]
    fn gpu_matches_cpu() {
        let Some(gpu) = test_device() else { return };
        assert_gpu_agrees(&gpu, &super::super::gradcheck_cases(), 1e-5);
        assert_gpu_agrees(&gpu, &awkward_cases(), 1e-5);
    }

    /// Windows whose values differ by less than f16's resolution, with exact ties among them,
    /// pooled from an op's output (which `--precision f16` keeps in f16): the gradient lands on
    /// the maximum the forward pass found (the first, on ties), on the GPU as on the CPU in f64.
    /// Finding the maxima again in the f16-rounded input would move some of it.
    #[test]
    fn the_gradient_lands_on_the_forwards_maximum_when_activations_are_saved_in_f16() {
        let Some(gpu) = test_device() else { return };
        let shape = [2, 4, 23, 29];
        let n: usize = shape.iter().product();
        // Near 1, f16 values are 2^-10 apart and these 2^-13: about 8 of the 11 levels round
        // to one f16; the repeats are exact ties.
        let x: Vec<f64> = (0..n)
            .map(|i| 1.0 + ((i * 37) % 11) as f64 * (2f64).powi(-13))
            .collect();
        let (ho, wo) = (12, 15);
        let w: Vec<f64> = (0..2 * 4 * ho * wo)
            .map(|i| ((i * 7919) % 101) as f64 / 101.0 - 0.5)
            .collect();
        let gradient = |device: &Device, dtype: DType| {
            let leaf = Tensor::from_f64_slice(&x, shape, dtype, device)
                .unwrap()
                .set_requires_grad(true);
            let weights = Tensor::from_f64_slice(&w, [2, 4, ho, wo], dtype, device).unwrap();
            {
                let _f16 = crate::autograd::half_saved::save_in_f16();
                // relu is the identity here; it makes the pool's input an op's output.
                let y = leaf.relu().unwrap().max_pool2d(3, 2, 1).unwrap();
                assert_eq!(y.dims(), &[2, 4, ho, wo]);
                y.mul(&weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
            }
            leaf.grad().unwrap().to_vec_f64().unwrap()
        };
        let want = gradient(&Device::Cpu, DType::F64);
        let got = gradient(&gpu, DType::F32);
        let wrong = want
            .iter()
            .zip(&got)
            .filter(|(a, b)| (*a - *b).abs() > 1e-5)
            .count();
        assert_eq!(wrong, 0, "{wrong} of {n} input gradients differ");
        assert!(want.iter().any(|&g| g != 0.0));
    }

    #[test]
    fn gradients_match_finite_differences_on_gpu() {
        let Some(gpu) = test_device() else { return };
        assert_gradients_pass_on(&gpu, &super::super::gradcheck_cases());
    }
}
