use super::DropPath;
use crate::{DType, Device, Result, SamplePlace, Tensor};

fn spread(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7919 + seed) % 1201) as f64 / 100.0 - 6.0)
        .collect()
}

/// The output and the gradients of x, branch and gamma under a random projection.
fn run(
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    dims: &[usize],
    dtype: DType,
    device: &Device,
) -> [Vec<f64>; 4] {
    let n: usize = dims.iter().product();
    let d = dims[dims.len() - 1];
    let input = |v: Vec<f64>, s: &[usize]| {
        Tensor::from_f64_slice(&v, s, dtype, device)
            .unwrap()
            .set_requires_grad(true)
    };
    let (x, b, g) = (
        input(spread(n, 1), dims),
        input(spread(n, 5), dims),
        input(spread(d, 9), &[d]),
    );
    let y = f(&x, &b, &g).unwrap();
    let r = Tensor::randn(y.shape().clone(), 1.0, 3, dtype, device).unwrap();
    y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = |t: &Tensor| t.grad().map_or(vec![], |g| g.to_vec_f64().unwrap());
    [y.to_vec_f64().unwrap(), grad(&x), grad(&b), grad(&g)]
}

fn drop(p: f64) -> Option<DropPath> {
    Some(DropPath {
        p,
        seed: 17,
        place: SamplePlace {
            first: 2,
            split: 3,
            second: 40,
        },
    })
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

/// Bit for bit what mul, drop_path_at and add give (the models' fixtures rely on it), with
/// and without gamma and mask, in f32 and f64, below and above the parallel threshold.
#[test]
fn equals_the_unfused_ops_exactly() {
    let place = drop(0.5).unwrap().place;
    for dims in [vec![1], vec![6, 7], vec![5, 13, 601]] {
        for dtype in [DType::F32, DType::F64] {
            for p in [0.0, 0.5] {
                let fused = run(
                    |x, b, g| x.add_residual(b, Some(g), drop(p)),
                    &dims,
                    dtype,
                    &Device::Cpu,
                );
                let composed = run(
                    |x, b, g| {
                        let m = b.mul(g)?;
                        let m = if p > 0.0 {
                            m.drop_path_at(p, 17, place)?
                        } else {
                            m
                        };
                        x.add(&m)
                    },
                    &dims,
                    dtype,
                    &Device::Cpu,
                );
                assert_eq!(fused, composed, "{dims:?} {dtype:?} p {p}");
                let fused = run(
                    |x, b, _| x.add_residual(b, None, drop(0.5)),
                    &dims,
                    dtype,
                    &Device::Cpu,
                );
                let composed = run(
                    |x, b, _| x.add(&b.drop_path_at(0.5, 17, place)?),
                    &dims,
                    dtype,
                    &Device::Cpu,
                );
                assert_eq!(fused, composed, "{dims:?} {dtype:?} without gamma");
            }
        }
    }
}

/// add_relu gives bit for bit what add then relu give, values and gradients.
#[test]
fn add_relu_equals_add_then_relu_exactly() {
    for dims in [vec![1], vec![6, 7], vec![5, 13, 601]] {
        for dtype in [DType::F32, DType::F64] {
            let fused = run(|x, b, _| x.add_relu(b), &dims, dtype, &Device::Cpu);
            let composed = run(|x, b, _| x.add(b)?.relu(), &dims, dtype, &Device::Cpu);
            assert_eq!(fused, composed, "{dims:?} {dtype:?}");
        }
    }
}

#[test]
fn rejects_mismatched_shapes() {
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &Device::Cpu).unwrap();
    assert!(z(&[2, 3]).add_residual(&z(&[3]), None, drop(0.5)).is_err());
    assert!(z(&[2, 3])
        .add_residual(&z(&[2, 3]), Some(&z(&[2])), None)
        .is_err());
    assert!(z(&[]).add_residual(&z(&[]), None, drop(0.5)).is_err());
    assert!(z(&[2, 3]).add_relu(&z(&[3])).is_err());
}

mod gpu {
    use crate::gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on, test_device};
    use crate::gradcheck::Case;

    /// Sizes around the 256-wide workgroup, prime widths and sample sizes, some samples
    /// dropped; inputs over [-6, 6].
    fn awkward_cases() -> Vec<Case> {
        let spread = |_: usize, s: &[usize], seed: u64| -> Vec<f64> {
            super::spread(s.iter().product(), seed as usize)
        };
        let mut cases = Vec::new();
        for dims in [
            vec![1],
            vec![255],
            vec![257, 1],
            vec![2, 601],
            vec![7, 13, 17],
        ] {
            let (s, d) = (dims.as_slice(), &dims[dims.len() - 1..]);
            for p in [0.0, 0.5] {
                cases.push(
                    Case::new("add_residual", &[s, s, d], move |x| {
                        x[0].add_residual(&x[1], Some(&x[2]), super::drop(p))
                    })
                    .with_init(spread),
                );
            }
            cases.push(Case::new("add_relu", &[s, s], |x| x[0].add_relu(&x[1])).with_init(spread));
            cases.push(
                Case::new("add_residual_no_gamma", &[s, s], |x| {
                    x[0].add_residual(&x[1], None, super::drop(0.5))
                })
                .with_init(spread),
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
}
