use safetensors::{Dtype, SafeTensors};

use crate::{DType, Device, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

/// Loss and logit gradient of mean cross-entropy.
fn loss_and_grad(logits: &Tensor, labels: &[usize], smoothing: f64) -> (f64, Vec<f64>) {
    let x = logits.detach().set_requires_grad(true);
    let loss = x.cross_entropy(labels, smoothing).unwrap();
    assert_eq!(loss.dims(), &[] as &[usize]);
    loss.backward().unwrap();
    (
        loss.to_scalar().unwrap(),
        x.grad().unwrap().to_vec_f64().unwrap(),
    )
}

#[test]
fn forward_and_backward_match_hand_values() {
    // Row 0: logits [0, ln 3] give p = [1/4, 3/4]; label 1. Row 1: [0, 0] gives [1/2, 1/2];
    // label 0. Loss = (-ln 3/4 - ln 1/2) / 2.
    let x = t(&[0.0, 3f64.ln(), 0.0, 0.0], &[2, 2]);
    let (loss, grad) = loss_and_grad(&x, &[1, 0], 0.0);
    close(&[loss], &[(-(0.75f64).ln() + 2f64.ln()) / 2.0], 1e-12);
    // (p - onehot) / 2.
    close(&grad, &[0.125, -0.125, -0.25, 0.25], 1e-12);

    // Smoothing 0.2 over C = 2: target = 0.8 onehot + 0.1.
    // Row 0: 0.9 (-ln 3/4) + 0.1 (-ln 1/4); row 1: 0.9 (-ln 1/2) + 0.1 (-ln 1/2).
    let (loss, grad) = loss_and_grad(&x, &[1, 0], 0.2);
    let row0 = -0.9 * (0.75f64).ln() - 0.1 * (0.25f64).ln();
    close(&[loss], &[(row0 + 2f64.ln()) / 2.0], 1e-12);
    close(
        &grad,
        &[
            (0.25 - 0.1) / 2.0,
            (0.75 - 0.9) / 2.0,
            (0.5 - 0.9) / 2.0,
            (0.5 - 0.1) / 2.0,
        ],
        1e-12,
    );
}

#[test]
fn huge_logits_stay_finite() {
    let x = Tensor::from_f64_slice(&[1e4, 0.0, -1e4], [1, 3], DType::F32, &Device::Cpu).unwrap();
    let (loss, grad) = loss_and_grad(&x, &[1], 0.0);
    close(&[loss], &[1e4], 1e-6);
    close(&grad, &[1.0, -1.0, 0.0], 1e-6);
}

#[test]
fn bad_inputs_are_errors() {
    let x = t(&[0.0; 6], &[2, 3]);
    assert!(x.cross_entropy(&[0, 3], 0.0).is_err());
    assert!(x.cross_entropy(&[0], 0.0).is_err());
    assert!(x.cross_entropy(&[0, 1, 2], 0.0).is_err());
    assert!(x.cross_entropy(&[0, 1], 1.5).is_err());
    assert!(x.cross_entropy(&[0, 1], -0.1).is_err());
    assert!(t(&[0.0; 6], &[6]).cross_entropy(&[0], 0.0).is_err());
    assert!(t(&[0.0; 6], &[1, 2, 3]).cross_entropy(&[0], 0.0).is_err());
    assert!(t(&[], &[0, 3]).cross_entropy(&[], 0.0).is_err());
}

/// A named tensor of a safetensors file as f64 values.
fn read_f64(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f64>) {
    let view = st.tensor(name).unwrap();
    let bytes = view.data();
    let values = match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    (view.shape().to_vec(), values)
}

#[test]
fn matches_pytorch_on_the_loss_fixtures() {
    let dir = crate::fixtures::dir().join("losses");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "safetensors") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (shape, logits) = read_f64(&st, "logits");
        let labels: Vec<usize> = read_f64(&st, "labels")
            .1
            .iter()
            .map(|&y| y as usize)
            .collect();
        let want_loss = read_f64(&st, "ce.loss").1[0];
        let want_grad = read_f64(&st, "ce.grad_logits").1;
        let x =
            Tensor::from_f64_slice(&logits, shape.as_slice(), DType::F32, &Device::Cpu).unwrap();
        let (loss, grad) = loss_and_grad(&x, &labels, 0.0);
        let name = path.display();
        assert!(
            (loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
            "{name}: loss {loss} vs {want_loss}"
        );
        let diff: f64 = grad
            .iter()
            .zip(&want_grad)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        let norm: f64 = want_grad.iter().map(|b| b * b).sum();
        let rel = (diff / norm).sqrt();
        assert!(rel <= 1e-4, "{name}: gradient relative error {rel}");
        checked += 1;
    }
    assert!(checked > 0, "no fixtures found in {}", dir.display());
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

    fn awkward_cases() -> Vec<Case> {
        let labels: Vec<usize> = (0..37).map(|i| (i * 7919) % 300).collect();
        let few = labels.clone();
        vec![
            Case::new("cross_entropy", &[&[37, 300]], move |x| {
                x[0].mul_scalar(3.0)?.cross_entropy(&labels, 0.0)
            }),
            Case::new("cross_entropy_smoothed", &[&[37, 300]], move |x| {
                x[0].cross_entropy(&few, 0.1)
            }),
            Case::new("cross_entropy", &[&[257, 2]], |x| {
                let labels: Vec<usize> = (0..257).map(|i| i % 2).collect();
                x[0].cross_entropy(&labels, 0.2)
            }),
        ]
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
