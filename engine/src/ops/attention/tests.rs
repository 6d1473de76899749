use super::attention;
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
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}
