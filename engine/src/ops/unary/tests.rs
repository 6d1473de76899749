use crate::{DType, Device, Tensor};

fn t(v: &[f64]) -> Tensor {
    Tensor::from_f64_slice(v, [v.len()], DType::F64, &Device::Cpu).unwrap()
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn forward_matches_hand_values() {
    let x = t(&[-1.0, 0.0, 2.0]);
    close(
        &x.exp().unwrap().to_vec_f64().unwrap(),
        &[(-1f64).exp(), 1.0, 2f64.exp()],
    );
    close(&x.relu().unwrap().to_vec_f64().unwrap(), &[0.0, 0.0, 2.0]);
    close(&x.neg().unwrap().to_vec_f64().unwrap(), &[1.0, 0.0, -2.0]);
    // gelu(1) = 0.5 * (1 + erf(1/sqrt 2)) = 0.8413447460685429 (torch.nn.functional.gelu)
    close(
        &t(&[1.0, -1.0]).gelu().unwrap().to_vec_f64().unwrap(),
        &[0.8413447460685429, -0.15865525393145707],
    );
    close(&t(&[0.0]).sigmoid().unwrap().to_vec_f64().unwrap(), &[0.5]);
    close(&t(&[4.0]).sqrt().unwrap().to_vec_f64().unwrap(), &[2.0]);
    close(&t(&[2.0]).powf(3.0).unwrap().to_vec_f64().unwrap(), &[8.0]);
    close(
        &t(&[1.0]).tanh().unwrap().to_vec_f64().unwrap(),
        &[1f64.tanh()],
    );
    close(
        &t(&[1.0])
            .mul_scalar(3.0)
            .unwrap()
            .add_scalar(-1.0)
            .unwrap()
            .to_vec_f64()
            .unwrap(),
        &[2.0],
    );
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

#[test]
fn relu_gradient_is_step() {
    let x = t(&[-2.0, 3.0]).set_requires_grad(true);
    x.relu().unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![0.0, 1.0]);
}
