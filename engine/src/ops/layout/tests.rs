use crate::{DType, Device, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}
fn seq(s: &[usize]) -> Tensor {
    let n: usize = s.iter().product();
    t(&(0..n).map(|i| i as f64).collect::<Vec<_>>(), s)
}

#[test]
fn forward_matches_hand_values() {
    let x = seq(&[2, 3]);
    assert_eq!(
        x.transpose(0, 1).unwrap().to_vec_f64().unwrap(),
        vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    );
    assert_eq!(
        x.narrow(1, 1, 2).unwrap().to_vec_f64().unwrap(),
        vec![1.0, 2.0, 4.0, 5.0]
    );
    let c = Tensor::concat(&[x.clone(), seq(&[1, 3])], 0).unwrap();
    assert_eq!(c.dims(), &[3, 3]);
    assert_eq!(c.to_vec_f64().unwrap()[6..], [0.0, 1.0, 2.0]);
    assert_eq!(
        x.index_select(1, &[2, 0]).unwrap().to_vec_f64().unwrap(),
        vec![2.0, 0.0, 5.0, 3.0]
    );
    assert_eq!(
        x.gather(1, &[2, 1], 1).unwrap().to_vec_f64().unwrap(),
        vec![2.0, 4.0]
    );
    let p = seq(&[2, 3, 4]).permute(&[2, 0, 1]).unwrap();
    assert_eq!(p.dims(), &[4, 2, 3]);
    assert_eq!(p.to_vec_f64().unwrap()[..3], [0.0, 4.0, 8.0]);
    let r = x.reshape([3, 2]).unwrap();
    assert!(r.same_storage(&x));
}

#[test]
fn narrow_gradients_are_the_slice_padded_with_zeros() {
    let x = seq(&[2, 4]).set_requires_grad(true);
    let g = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    crate::autograd::backward_with_grad(&x.narrow(1, 1, 2).unwrap(), &g).unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec_f64().unwrap(),
        vec![0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0]
    );
    // An empty slice sends back zeros.
    let x = seq(&[2, 3]).set_requires_grad(true);
    let y = x.narrow(1, 2, 0).unwrap();
    crate::autograd::backward_with_grad(&y, &t(&[], &[2, 0])).unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![0.0; 6]);
}

#[test]
fn bad_arguments_are_errors() {
    let x = seq(&[2, 3]);
    assert!(x.reshape([4]).unwrap_err().to_string().contains("reshape"));
    assert!(x.permute(&[0, 0]).is_err());
    assert!(x.narrow(1, 2, 2).is_err());
    assert!(Tensor::concat(&[x.clone(), seq(&[2, 2])], 0).is_err());
    assert!(Tensor::concat(&[], 0).is_err());
    assert!(x.index_select(0, &[2]).is_err());
    assert!(x.gather(1, &[3, 0], 1).is_err());
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
    use crate::Tensor;

    fn awkward_cases() -> Vec<Case> {
        vec![
            Case::new("permute", &[&[2, 3, 4, 5]], |x| x[0].permute(&[3, 1, 0, 2])),
            Case::new("transpose", &[&[67, 5]], |x| x[0].transpose(0, 1)),
            Case::new("narrow", &[&[3, 300]], |x| x[0].narrow(-1, 17, 257)),
            Case::new("narrow", &[&[5, 2, 3]], |x| x[0].narrow(0, 4, 1)),
            // The backward's pad kernel: no zeros before, none after, both, wide rows.
            Case::new("narrow", &[&[7, 13, 3]], |x| x[0].narrow(1, 0, 5)),
            Case::new("narrow", &[&[2, 5, 257]], |x| x[0].narrow(1, 4, 1)),
            Case::new("narrow", &[&[1, 263]], |x| x[0].narrow(0, 0, 1)),
            Case::new("narrow", &[&[11, 1, 1]], |x| x[0].narrow(0, 3, 7)),
            Case::new("concat", &[&[1, 3], &[4, 3]], |x| Tensor::concat(x, 0)),
            Case::new("concat", &[&[2, 1, 7], &[2, 3, 7]], |x| {
                Tensor::concat(x, 1)
            }),
            Case::new("index_select", &[&[3, 7, 2]], |x| {
                x[0].index_select(1, &[6, 0, 6, 6, 2])
            }),
            Case::new("index_select", &[&[4]], |x| x[0].index_select(0, &[])),
            Case::new("gather", &[&[5, 3]], |x| {
                x[0].gather(0, &[4, 0, 1, 1, 3, 3, 0, 0, 0, 2, 2, 4], 4)
            }),
            Case::new("gather", &[&[2, 11, 1]], |x| x[0].gather(1, &[10, 3], 1)),
        ]
    }

    #[test]
    fn gpu_matches_cpu() {
        let Some(gpu) = test_device() else { return };
        assert_gpu_agrees(&gpu, &super::super::gradcheck_cases(), 1e-6);
        assert_gpu_agrees(&gpu, &awkward_cases(), 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences_on_gpu() {
        let Some(gpu) = test_device() else { return };
        assert_gradients_pass_on(&gpu, &super::super::gradcheck_cases());
    }
}

/// permute against the definition, element by element: out[idx] = x[idx permuted back], on
/// shapes where dimensions merge (kept order), size-1 dimensions, a moved last dimension, and
/// sizes above the parallel threshold (the heads split of BEiT at batch 4).
#[test]
fn permute_matches_the_definition() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3, 4], &[2, 0, 1]),
        (&[2, 3, 4], &[0, 1, 2]),
        (&[5, 1, 7], &[1, 2, 0]),
        (&[1, 1], &[1, 0]),
        (&[3, 2, 3, 2, 5], &[2, 0, 3, 1, 4]),
        (&[4, 197, 3, 12, 64], &[2, 0, 3, 1, 4]),
        (&[4, 12, 197, 64], &[0, 2, 1, 3]),
        (&[13, 64, 71], &[0, 2, 1]),
        (&[2, 0, 3], &[2, 1, 0]),
    ];
    for &(shape, dims) in cases {
        let x = seq(shape);
        let got = x.permute(dims).unwrap();
        let out_shape: Vec<usize> = dims.iter().map(|&d| shape[d]).collect();
        assert_eq!(got.dims(), &out_shape[..]);
        let got = got.to_vec_f64().unwrap();
        let in_strides = x.shape().strides();
        let mut idx = vec![0; shape.len()];
        for (flat, &v) in got.iter().enumerate() {
            let mut rest = flat;
            for d in (0..shape.len()).rev() {
                idx[d] = rest % out_shape[d];
                rest /= out_shape[d];
            }
            let src: usize = (0..shape.len()).map(|d| idx[d] * in_strides[dims[d]]).sum();
            assert_eq!(v, src as f64, "{shape:?} by {dims:?} at {flat}");
        }
    }
}
