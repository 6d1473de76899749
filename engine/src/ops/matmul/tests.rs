use crate::{DType, Device, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

/// Textbook triple loop, the reference for random sizes.
fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn forward_matches_hand_values() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    assert_eq!(
        a.matmul(&b).unwrap().to_vec_f64().unwrap(),
        vec![58.0, 64.0, 139.0, 154.0]
    );
    // Aᵀ·Aᵀ-shaped product through the flags: (3x2)ᵀ... A is [2,3]; Aᵀ [3,2] · Bᵀ [2,3].
    let c = a.matmul_t(&b, true, true).unwrap();
    assert_eq!(c.dims(), &[3, 3]);
    assert_eq!(c.to_vec_f64().unwrap()[0], 1.0 * 7.0 + 4.0 * 8.0);
}

#[test]
fn awkward_sizes_match_the_naive_product_in_f32() {
    for (m, k, n) in [
        (1, 1, 1),
        (1, 17, 3),
        (13, 1, 7),
        (31, 37, 29),
        (64, 67, 65),
        (130, 33, 97),
    ] {
        let a = Tensor::randn([m, k], 1.0, 1, DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::randn([k, n], 1.0, 2, DType::F32, &Device::Cpu).unwrap();
        let got = a.matmul(&b).unwrap().to_vec_f64().unwrap();
        let want = naive(&a.to_vec_f64().unwrap(), &b.to_vec_f64().unwrap(), m, k, n);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 1e-4 * (1.0 + w.abs()) * (k as f64).sqrt(),
                "{m}x{k}x{n}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let a = t(&[1.0; 6], &[2, 3]);
    assert!(a
        .matmul(&a)
        .unwrap_err()
        .to_string()
        .contains("inner dimensions"));
    assert!(a.matmul(&t(&[1.0; 3], &[3])).is_err());
    let b1 = t(&[1.0; 12], &[2, 2, 3]);
    let b2 = t(&[1.0; 27], &[3, 3, 3]);
    assert!(b1.matmul(&b2).unwrap_err().to_string().contains("batch"));
    assert!(a.matmul_t(&a, false, true).is_ok());
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}
