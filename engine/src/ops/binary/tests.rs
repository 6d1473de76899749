use crate::{DType, Device, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

#[test]
fn broadcast_forward_matches_hand_values() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&[10.0, 20.0, 30.0], &[3]);
    assert_eq!(
        a.add(&b).unwrap().to_vec_f64().unwrap(),
        vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    let c = t(&[2.0, 4.0], &[2, 1]);
    assert_eq!(
        a.div(&c).unwrap().to_vec_f64().unwrap(),
        vec![0.5, 1.0, 1.5, 1.0, 1.25, 1.5]
    );
    assert_eq!(c.sub(&b).unwrap().dims(), &[2, 3]);
    assert_eq!(
        a.mul(&t(&[2.0], &[])).unwrap().to_vec_f64().unwrap(),
        vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    );
}

#[test]
fn bad_shapes_and_dtypes_are_errors() {
    let a = t(&[1.0, 2.0, 3.0], &[3]);
    let b = t(&[1.0, 2.0], &[2]);
    let err = a.add(&b).unwrap_err().to_string();
    assert!(err.contains("broadcast"), "{err}");
    let c = a.to_dtype(DType::F32).unwrap();
    assert!(a.mul(&c).unwrap_err().to_string().contains("dtype"));
}

#[test]
fn broadcast_gradient_sums_over_repeated_dims() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&[1.0, 1.0, 1.0], &[3]).set_requires_grad(true);
    a.mul(&b).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(b.grad().unwrap().to_vec_f64().unwrap(), vec![5.0, 7.0, 9.0]);
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
    use crate::{DType, Tensor};

    fn awkward_cases() -> Vec<Case> {
        let shapes: [(&[usize], &[usize]); 7] = [
            (&[257], &[257]),
            (&[257], &[1]),
            (&[], &[2, 3]),
            (&[1, 6], &[6, 1]),
            (&[3, 1, 5, 1], &[1, 4, 1, 7]),
            (&[2, 3, 4, 5, 6], &[3, 1, 5, 1]),
            (&[600, 3], &[600, 1]),
        ];
        let mut cases = Vec::new();
        for (sa, sb) in shapes {
            cases.push(Case::new("add", &[sa, sb], |x| x[0].add(&x[1])));
            cases.push(Case::new("sub", &[sa, sb], |x| x[0].sub(&x[1])));
            cases.push(Case::new("mul", &[sa, sb], |x| x[0].mul(&x[1])));
            cases.push(Case::new("div", &[sa, sb], |x| {
                x[0].div(&x[1].mul(&x[1])?.add_scalar(0.5)?)
            }));
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

    #[test]
    fn unmergeable_high_rank_broadcasts_are_errors() {
        let Some(gpu) = test_device() else { return };
        // Broadcast and full dimensions alternate, so nothing merges: 9 dimensions.
        let a = Tensor::ones([2; 9], DType::F32, &gpu).unwrap();
        let b = Tensor::ones([2, 1, 2, 1, 2, 1, 2, 1, 2], DType::F32, &gpu).unwrap();
        let err = a.add(&b).unwrap_err().to_string();
        assert!(err.contains("at most 8"), "{err}");
    }
}
