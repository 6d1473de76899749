use crate::{DType, Device, Tensor};

/// Values and gradients of `f` at (x, bias) on `device`, in `dtype`.
fn run(
    f: impl Fn(&Tensor, &Tensor) -> crate::Result<Tensor>,
    x: &[f64],
    sx: &[usize],
    b: &[f64],
    dtype: DType,
    device: &Device,
) -> [Vec<f64>; 3] {
    let x = Tensor::from_f64_slice(x, sx, dtype, device)
        .unwrap()
        .set_requires_grad(true);
    let b = Tensor::from_f64_slice(b, [b.len()], dtype, device)
        .unwrap()
        .set_requires_grad(true);
    let y = f(&x, &b).unwrap();
    let r = Tensor::randn(y.shape().clone(), 1.0, 7, dtype, device).unwrap();
    y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    [
        y.to_vec_f64().unwrap(),
        x.grad().unwrap().to_vec_f64().unwrap(),
        b.grad().unwrap().to_vec_f64().unwrap(),
    ]
}

fn spread(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7919 + seed) % 1201) as f64 / 100.0 - 6.0)
        .collect()
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

/// The fused op gives bit for bit what `add` then `gelu` give (the models' fixtures rely on
/// it), in f32 (the fast GELU) and f64, below and above the parallel threshold.
#[test]
fn equals_add_then_gelu_exactly() {
    for (rows, d) in [(1, 1), (3, 7), (61, 769)] {
        let (x, b) = (spread(rows * d, 3), spread(d, 11));
        for dtype in [DType::F32, DType::F64] {
            let fused = run(
                |x, b| x.bias_gelu(b),
                &x,
                &[rows, d],
                &b,
                dtype,
                &Device::Cpu,
            );
            let composed = run(
                |x, b| x.add(b)?.gelu(),
                &x,
                &[rows, d],
                &b,
                dtype,
                &Device::Cpu,
            );
            assert_eq!(fused, composed, "{rows}x{d} {dtype:?}");
        }
    }
}

#[test]
fn rejects_a_bias_of_another_width() {
    let x = Tensor::zeros([2, 3], DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros([2], DType::F32, &Device::Cpu).unwrap();
    assert!(x.bias_gelu(&b).is_err());
    assert!(Tensor::zeros([], DType::F32, &Device::Cpu)
        .unwrap()
        .bias_gelu(&b)
        .is_err());
}

mod gpu {
    use crate::gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on, test_device};
    use crate::gradcheck::Case;

    /// Sizes around the 256-wide workgroup and rows of prime widths, inputs over [-6, 6].
    fn awkward_cases() -> Vec<Case> {
        let spread = |_: usize, s: &[usize], seed: u64| -> Vec<f64> {
            super::spread(s.iter().product(), seed as usize)
        };
        let shapes: [(&[usize], &[usize]); 5] = [
            (&[1], &[1]),
            (&[255], &[255]),
            (&[257, 1], &[1]),
            (&[2, 601], &[601]),
            (&[3, 13, 17], &[17]),
        ];
        shapes
            .into_iter()
            .map(|(sx, sb)| {
                Case::new("bias_gelu", &[sx, sb], |x| x[0].bias_gelu(&x[1])).with_init(spread)
            })
            .collect()
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

    /// On the GPU too, the fused op gives what `add` then `gelu` give (the same WGSL GELU).
    #[test]
    fn gpu_equals_add_then_gelu() {
        let Some(gpu) = test_device() else { return };
        let (x, b) = (super::spread(3 * 257, 5), super::spread(257, 2));
        let dt = crate::DType::F32;
        let fused = super::run(|x, b| x.bias_gelu(b), &x, &[3, 257], &b, dt, &gpu);
        let composed = super::run(|x, b| x.add(b)?.gelu(), &x, &[3, 257], &b, dt, &gpu);
        for (f, c) in fused.iter().zip(&composed) {
            for (f, c) in f.iter().zip(c) {
                assert!((f - c).abs() <= 1e-6 * (1.0 + c.abs()), "{f} vs {c}");
            }
        }
    }

    /// The backward kernel reading the f16 x of `--precision f16` against the CPU's.
    #[test]
    fn f16_x_backward_matches_the_cpu() {
        use super::super::{cpu, gpu};
        use crate::ops::cast::gpu::f32_to_f16_storage;
        use crate::Storage;
        let Some(device) = test_device() else { return };
        for (rows, d) in [(1, 1), (3, 7), (257, 31)] {
            let (x, b, g) = super::f16_case(rows, d);
            let want = cpu::backward(&x.0, &b, &g).to_f32_vec();
            let on_gpu = |v: &[f32]| {
                let t = crate::Tensor::from_vec(v.to_vec(), [v.len()], &device).unwrap();
                let Storage::Gpu(s) = &*t.storage() else {
                    unreachable!("made on the GPU")
                };
                s.clone()
            };
            let xh = f32_to_f16_storage(&on_gpu(&x.1), "test").unwrap();
            let (bg, gg) = (on_gpu(&b.to_f32_vec()), on_gpu(&g.to_f32_vec()));
            let got = gpu::backward(&xh, &bg, &gg).unwrap().to_vec().unwrap();
            for (a, w) in got.iter().zip(&want) {
                assert!(
                    (a - w).abs() < 1e-5 * (1.0 + w.abs()),
                    "{rows}x{d}: {a} vs {w}"
                );
            }
        }
    }
}

/// x [rows, d] as f16 storage with its widened values, a bias and a gradient (f32).
fn f16_case(
    rows: usize,
    d: usize,
) -> (
    (crate::CpuStorage, Vec<f32>),
    crate::CpuStorage,
    crate::CpuStorage,
) {
    use crate::storage::{narrow, widen};
    use crate::CpuStorage;
    let x: Vec<f32> = spread(rows * d, 1).iter().map(|&v| v as f32).collect();
    let half = narrow(&x);
    let wide = widen(&half);
    let b = CpuStorage::F32(spread(d, 2).iter().map(|&v| v as f32).collect());
    let g = CpuStorage::F32(spread(rows * d, 3).iter().map(|&v| v as f32).collect());
    ((CpuStorage::F16(half), wide), b, g)
}

/// The backward pass reading the f16 x of `--precision f16` is the backward of its widened
/// values, bit for bit, in the serial and the row-parallel loop.
#[test]
fn f16_x_backward_is_the_backward_of_the_rounded_x() {
    use super::cpu;
    use crate::CpuStorage;
    for (rows, d) in [(1, 1), (3, 7), (257, 31), (1031, 67)] {
        let ((half, wide), b, g) = f16_case(rows, d);
        assert_eq!(
            cpu::backward(&half, &b, &g).to_f32_vec(),
            cpu::backward(&CpuStorage::F32(wide), &b, &g).to_f32_vec(),
            "{rows}x{d}"
        );
    }
}
