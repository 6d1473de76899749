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
