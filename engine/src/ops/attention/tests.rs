use super::{attention, attention_packed};
use crate::{DType, Device, Result, Tensor};

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
    // One head, N = 2, D = 1. Scores q kᵀ = [[0, ln 3], [0, ln 3]] give weights [1/4, 3/4]:
    // output 1/4 * 4 + 3/4 * 8 = 7 for both rows.
    let q = t(&[1.0, 1.0], &[1, 1, 2, 1]);
    let k = t(&[0.0, 3f64.ln()], &[1, 1, 2, 1]);
    let v = t(&[4.0, 8.0], &[1, 1, 2, 1]);
    let o = attention(&q, &k, &v, None, 1.0).unwrap();
    close(&o.to_vec_f64().unwrap(), &[7.0, 7.0], 1e-12);
    // A bias of -ln 3 on (0, 1) evens out row 0's weights: output (4 + 8) / 2 = 6.
    let bias = t(&[0.0, -(3f64.ln()), 0.0, 0.0], &[1, 2, 2]);
    let o = attention(&q, &k, &v, Some(&bias), 1.0).unwrap();
    close(&o.to_vec_f64().unwrap(), &[6.0, 7.0], 1e-12);
    // Scale 0 makes the weights uniform whatever the scores.
    let o = attention(&q, &k, &v, None, 0.0).unwrap();
    close(&o.to_vec_f64().unwrap(), &[6.0, 6.0], 1e-12);
}

/// The same attention from separate ops (matmul_t, mul_scalar, add, softmax, matmul).
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    q.matmul_t(k, false, true)?
        .mul_scalar(scale)?
        .add(bias)?
        .softmax(-1)?
        .matmul(v)
}

/// Output and the gradients of q, k, v and bias for loss = sum(O * R).
fn run(f: impl Fn(&[Tensor]) -> Result<Tensor>, values: &[Tensor], r: &Tensor) -> Vec<Vec<f64>> {
    let leaves: Vec<Tensor> = values
        .iter()
        .map(|t| t.detach().set_requires_grad(true))
        .collect();
    let o = f(&leaves).unwrap();
    o.mul(r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut all = vec![o.to_vec_f64().unwrap()];
    all.extend(
        leaves
            .iter()
            .map(|t| t.grad().unwrap().to_vec_f64().unwrap()),
    );
    all
}

#[test]
fn matches_composed_ops() {
    // Odd sizes, B = 1 and B = 2 (the bias gradient sums over the batch), and one size large
    // enough for the parallel paths.
    for (i, [b, h, n, d]) in [[1, 3, 7, 5], [2, 1, 5, 3], [2, 5, 67, 7]]
        .into_iter()
        .enumerate()
    {
        let dev = &Device::Cpu;
        let seed = 10 * i as u64;
        let qkv = [b, h, n, d];
        let values = [
            Tensor::randn(qkv, 1.0, seed, DType::F64, dev).unwrap(),
            Tensor::randn(qkv, 1.0, seed + 1, DType::F64, dev).unwrap(),
            Tensor::randn(qkv, 1.0, seed + 2, DType::F64, dev).unwrap(),
            Tensor::randn([h, n, n], 1.0, seed + 3, DType::F64, dev).unwrap(),
        ];
        let r = Tensor::randn(qkv, 1.0, seed + 4, DType::F64, dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let fused = run(
            |x| attention(&x[0], &x[1], &x[2], Some(&x[3]), scale),
            &values,
            &r,
        );
        let reference = run(|x| composed(&x[0], &x[1], &x[2], &x[3], scale), &values, &r);
        for (f, r) in fused.iter().zip(&reference) {
            close(f, r, 1e-10);
        }
    }
}

#[test]
fn packed_matches_separate() {
    // Gradients of a packed [3, B, H, N, D] input against those of its three parts, with
    // and without a bias, and past the parallel paths' thresholds.
    for (i, [b, h, n, d]) in [[2, 3, 7, 5], [3, 5, 41, 8]].into_iter().enumerate() {
        let dev = &Device::Cpu;
        let seed = 100 + 10 * i as u64;
        let qkv = Tensor::randn([3, b, h, n, d], 1.0, seed, DType::F64, dev).unwrap();
        let bias = Tensor::randn([h, n, n], 1.0, seed + 1, DType::F64, dev).unwrap();
        let r = Tensor::randn([b, h, n, d], 1.0, seed + 2, DType::F64, dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        for values in [vec![qkv.clone(), bias], vec![qkv]] {
            let packed = run(|x| attention_packed(&x[0], x.get(1), scale), &values, &r);
            let separate = run(
                |x| {
                    let part = |i| x[0].narrow(0, i, 1)?.reshape([b, h, n, d]);
                    attention(&part(0)?, &part(1)?, &part(2)?, x.get(1), scale)
                },
                &values,
                &r,
            );
            assert_eq!(packed.len(), separate.len());
            for (p, s) in packed.iter().zip(&separate) {
                close(p, s, 1e-12);
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let x = t(&[0.0; 12], &[1, 2, 3, 2]);
    let bias = t(&[0.0; 18], &[2, 3, 3]);
    assert!(attention(&x, &x, &x, Some(&bias), 1.0).is_ok());
    let other = t(&[0.0; 12], &[1, 2, 2, 3]);
    assert!(attention(&x, &other, &x, None, 1.0).is_err());
    assert!(attention(&x, &x, &other, None, 1.0).is_err());
    let bad_bias = t(&[0.0; 9], &[1, 3, 3]);
    assert!(attention(&x, &x, &x, Some(&bad_bias), 1.0).is_err());
    let flat = t(&[0.0; 12], &[2, 3, 2]);
    assert!(attention(&flat, &flat, &flat, None, 1.0).is_err());
    let x32 = Tensor::zeros([1, 2, 3, 2], DType::F32, &Device::Cpu).unwrap();
    assert!(attention(&x, &x32, &x, None, 1.0).is_err());
    let packed = t(&[0.0; 36], &[3, 1, 2, 3, 2]);
    assert!(attention_packed(&packed, Some(&bias), 1.0).is_ok());
    assert!(attention_packed(&packed, Some(&bad_bias), 1.0).is_err());
    assert!(attention_packed(&t(&[0.0; 24], &[2, 1, 2, 3, 2]), None, 1.0).is_err());
    assert!(attention_packed(&x, None, 1.0).is_err());
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
    use crate::ops::attention::{attention, gpu::MAX_HEAD_DIM};
    use crate::{DType, Tensor};

    fn case(b: usize, h: usize, n: usize, d: usize, with_bias: bool) -> Case {
        let qkv = vec![b, h, n, d];
        let scale = 1.0 / (d as f64).sqrt();
        if with_bias {
            Case::new("attention", &[&qkv, &qkv, &qkv, &[h, n, n]], move |x| {
                attention(&x[0], &x[1], &x[2], Some(&x[3]), scale)
            })
        } else {
            Case::new("attention_no_bias", &[&qkv, &qkv, &qkv], move |x| {
                attention(&x[0], &x[1], &x[2], None, scale)
            })
        }
    }

    /// Every N (one row, primes, one past a multiple of the tiles) with every head dimension
    /// up to 64 (the 16-row tiles), once as [2, 3, N, D] with a bias and once as [1, 1, N, D]
    /// without; then head dimensions on the 8-row tiles, rows past many tiles, and batches
    /// beyond one bias-gradient group (8 entries), and an empty batch (a zero bias gradient).
    fn awkward_cases() -> Vec<Case> {
        let mut cases = Vec::new();
        for n in [1, 7, 13, 33] {
            for d in [1, 5, 16, 64] {
                cases.push(case(2, 3, n, d, true));
                cases.push(case(1, 1, n, d, false));
            }
        }
        cases.extend([
            case(1, 2, 13, 65, true),
            case(2, 1, 7, MAX_HEAD_DIM, false),
            case(2, 3, 67, 9, true),
            case(1, 2, 300, 4, false),
            case(9, 2, 7, 3, true),
            case(17, 1, 5, 2, true),
            case(0, 2, 3, 4, true),
        ]);
        cases
    }

    #[test]
    fn gpu_matches_cpu() {
        let Some(gpu) = test_device() else { return };
        assert_gpu_agrees(&gpu, &super::super::gradcheck_cases(), 1e-5);
        assert_gpu_agrees(&gpu, &awkward_cases(), 1e-4);
    }

    #[test]
    fn gradients_match_finite_differences_on_gpu() {
        let Some(gpu) = test_device() else { return };
        assert_gradients_pass_on(&gpu, &super::super::gradcheck_cases());
        assert_gradients_pass_on(
            &gpu,
            &[
                case(2, 3, 13, 5, true),
                case(1, 2, 33, 16, false),
                case(9, 1, 7, 1, true),
                case(1, 1, 5, 65, true),
            ],
        );
    }

    #[test]
    fn head_dimensions_past_the_limit_are_errors() {
        let Some(gpu) = test_device() else { return };
        for d in [MAX_HEAD_DIM + 1, 0] {
            let x = Tensor::zeros([1, 1, 3, d], DType::F32, &gpu).unwrap();
            let err = attention(&x, &x, &x, None, 1.0).unwrap_err().to_string();
            assert!(err.contains("head dimension"), "{err}");
        }
    }
}
