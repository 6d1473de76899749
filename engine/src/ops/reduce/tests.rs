use crate::{DType, Device, Shape, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

#[test]
fn forward_matches_hand_values() {
    let x = t(&[1.0, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3]);
    assert_eq!(
        x.sum(1, false).unwrap().to_vec_f64().unwrap(),
        vec![9.0, 12.0]
    );
    assert_eq!(x.sum(0, true).unwrap().dims(), &[1, 3]);
    assert_eq!(
        x.sum(0, false).unwrap().to_vec_f64().unwrap(),
        vec![5.0, 7.0, 9.0]
    );
    assert_eq!(
        x.mean(-1, false).unwrap().to_vec_f64().unwrap(),
        vec![3.0, 4.0]
    );
    assert_eq!(
        x.max(1, false).unwrap().to_vec_f64().unwrap(),
        vec![5.0, 6.0]
    );
    assert_eq!(x.sum_all().unwrap().to_scalar().unwrap(), 21.0);
    assert_eq!(
        x.sum_to(&Shape::from([3])).unwrap().to_vec_f64().unwrap(),
        vec![5.0, 7.0, 9.0]
    );
    assert_eq!(
        t(&[1.0, 2.0], &[2, 1])
            .broadcast_to(&Shape::from([2, 2]))
            .unwrap()
            .to_vec_f64()
            .unwrap(),
        vec![1.0, 1.0, 2.0, 2.0]
    );
}

#[test]
fn bad_axes_and_shapes_are_errors() {
    let x = t(&[1.0, 2.0], &[2]);
    assert!(x.sum(1, false).is_err());
    assert!(x.max(-2, false).is_err());
    assert!(x.sum_to(&Shape::from([3])).is_err());
    assert!(x.broadcast_to(&Shape::from([3])).is_err());
}

#[test]
fn max_gradient_goes_to_first_maximum() {
    let x = t(&[2.0, 7.0, 7.0, 1.0], &[1, 4]).set_requires_grad(true);
    x.max(1, false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec_f64().unwrap(),
        vec![0.0, 1.0, 0.0, 0.0]
    );
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

/// The fast paths (tiled, spread) must agree with the general index walk on every layout.
#[test]
fn broadcast_patterns_agree_with_the_general_walk() {
    let big = Shape::from([2, 3, 4]);
    for small in [
        vec![],
        vec![1],
        vec![4],
        vec![3, 4],
        vec![2, 1, 1],
        vec![2, 3, 1],
        vec![3, 1],
        vec![2, 1, 4],
        vec![1, 3, 1],
    ] {
        let small = Shape::from(small);
        let x = Tensor::randn(small.clone(), 1.0, 3, DType::F64, &Device::Cpu).unwrap();
        let b = x.broadcast_to(&big).unwrap().to_vec_f64().unwrap();
        let xs = x.to_vec_f64().unwrap();
        let strides = small.broadcast_strides(&big);
        let mut want = vec![0.0; big.numel()];
        super::cpu::for_each_index(&big, |flat, idx| {
            want[flat] = xs[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()];
        });
        assert_eq!(b, want, "broadcast {small:?}");
        let g = Tensor::randn(big.clone(), 1.0, 4, DType::F64, &Device::Cpu).unwrap();
        let gs = g.to_vec_f64().unwrap();
        let got = g.sum_to(&small).unwrap().to_vec_f64().unwrap();
        let mut want = vec![0.0; small.numel()];
        super::cpu::for_each_index(&big, |flat, idx| {
            want[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()] += gs[flat];
        });
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "sum_to {small:?}");
        }
    }
}

mod gpu {
    use crate::gpu::testing::{assert_gpu_agrees, assert_gradients_pass_on, test_device};
    use crate::gradcheck::Case;
    use crate::Shape;

    fn awkward_cases() -> Vec<Case> {
        let mut cases = Vec::new();
        for (dims, axis) in [
            (vec![7, 513, 3], 1isize),
            (vec![7, 513, 3], 0),
            (vec![2, 1000], -1),
            (vec![300], 0),
            (vec![1, 1], 0),
        ] {
            cases.push(Case::new("sum", &[&dims], move |x| x[0].sum(axis, false)));
            cases.push(Case::new("max", &[&dims], move |x| x[0].max(axis, true)));
        }
        cases.push(Case::new("sum_to", &[&[2, 3, 7]], |x| {
            x[0].sum_to(&Shape::from([7]))
        }));
        cases.push(Case::new("sum_to", &[&[5]], |x| {
            x[0].sum_to(&Shape::scalar())
        }));
        cases.push(Case::new("sum_to", &[&[4, 3, 5, 2]], |x| {
            x[0].sum_to(&Shape::from([4, 1, 5, 1]))
        }));
        cases.push(Case::new("broadcast_to", &[&[]], |x| {
            x[0].broadcast_to(&Shape::from([257]))
        }));
        cases.push(Case::new("broadcast_to", &[&[4, 1, 5]], |x| {
            x[0].broadcast_to(&Shape::from([2, 4, 3, 5]))
        }));
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
