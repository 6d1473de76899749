//! The contrastive losses on the GPU (shaders/lacln.wgsl) against the PyTorch fixtures
//! and the CPU ops, edge cases included. Skipped without an adapter unless
//! CLCE_REQUIRE_GPU=1.
use super::tests::{
    check_against_fixtures, check_low_temperature_with_nearly_identical_features, loss_and_grad,
    CONTRASTIVE,
};
use super::{hscl, lacln, objective, supcon, LossConfig, LossKind};
use crate::gpu::testing::{assert_gradients_pass_on, test_device};
use crate::{DType, Device, Tensor};

#[test]
fn gpu_matches_pytorch_fixtures() {
    let Some(gpu) = test_device() else { return };
    check_against_fixtures(&gpu, DType::F32, 1e-5, 1e-4);
}

#[test]
fn gpu_gradients_match_finite_differences() {
    let Some(gpu) = test_device() else { return };
    assert_gradients_pass_on(&gpu, &super::gradcheck_cases());
}

/// `raw` [m, d] (values f32 can hold, so both sides see the same inputs) on `device`.
fn leaf(raw: &[f64], m: usize, d: usize, dtype: DType, device: &Device) -> Tensor {
    Tensor::from_f64_slice(raw, [m, d], dtype, device)
        .unwrap()
        .set_requires_grad(true)
}

/// The fused op of `kind` itself (no normalisation: its gradient is the op's alone).
fn fused_loss_and_grad(
    kind: LossKind,
    cfg: &LossConfig,
    z: &Tensor,
    labels: &[usize],
) -> (f64, Vec<f64>) {
    let (tau, beta) = (cfg.tau, cfg.beta);
    let loss = match kind {
        LossKind::Lacln => lacln(z, labels, tau, beta, true),
        LossKind::LaclnNoHnm => lacln(z, labels, tau, beta, false),
        LossKind::SupCon => supcon(z, labels, tau),
        LossKind::Hscl => hscl(z, labels, tau, beta),
        other => unreachable!("{other} is not a contrastive loss"),
    }
    .unwrap();
    loss.backward().unwrap();
    (
        loss.to_scalar().unwrap(),
        z.grad().unwrap().to_vec_f64().unwrap(),
    )
}

/// Random raw features rounded to f32.
fn random_features(m: usize, d: usize, seed: u64) -> Vec<f64> {
    Tensor::randn([m, d], 1.0, seed, DType::F32, &Device::Cpu)
        .unwrap()
        .to_vec_f64()
        .unwrap()
}

/// Random L2-normalised features rounded to f32.
fn random_normalised(m: usize, d: usize, seed: u64) -> Vec<f64> {
    Tensor::from_f64_slice(
        &random_features(m, d, seed),
        [m, d],
        DType::F64,
        &Device::Cpu,
    )
    .unwrap()
    .l2_normalize(-1, 1e-12)
    .unwrap()
    .to_dtype(DType::F32)
    .unwrap()
    .to_vec_f64()
    .unwrap()
}

/// The fused ops on normalised features against the CPU in f64 (the objective around them,
/// normalisation and cross-entropy included, is checked against the fixtures above).
#[test]
fn gpu_matches_cpu_on_awkward_sizes() {
    let Some(gpu) = test_device() else { return };
    // 300 > 256 makes the invocations of a row's workgroup take more than one element each.
    for m in [1usize, 2, 7, 13, 37, 67, 300] {
        // About two samples a class: some classes are seen once (their anchors are skipped),
        // and M = 2 is a one-class batch.
        let classes = m.div_ceil(2);
        let labels: Vec<usize> = (0..m).map(|i| (i * 5 + m) % classes).collect();
        for d in [1, 3, 17] {
            let z = random_normalised(m, d, (m * 31 + d) as u64);
            for tau in [0.07, 1.0] {
                for beta in [0.0, 1.0] {
                    let kinds = if beta == 0.0 {
                        [LossKind::Lacln, LossKind::Hscl, LossKind::SupCon]
                    } else {
                        [LossKind::Lacln, LossKind::Hscl, LossKind::LaclnNoHnm]
                    };
                    let cfg = LossConfig {
                        tau,
                        beta,
                        ..LossConfig::default()
                    };
                    for kind in kinds {
                        let what = format!("{kind} M={m} D={d} τ={tau} β={beta}");
                        let on_gpu = leaf(&z, m, d, DType::F32, &gpu);
                        let (loss, grad) = fused_loss_and_grad(kind, &cfg, &on_gpu, &labels);
                        let on_cpu = leaf(&z, m, d, DType::F64, &Device::Cpu);
                        let (want, want_grad) = fused_loss_and_grad(kind, &cfg, &on_cpu, &labels);
                        assert!(
                            (loss - want).abs() <= 1e-5 * want.abs(),
                            "{what}: loss {loss} vs {want}"
                        );
                        // Relative, and exact where the reference is 0 (no anchor counted).
                        let norm = want_grad.iter().map(|g| g * g).sum::<f64>().sqrt();
                        let err = grad
                            .iter()
                            .zip(&want_grad)
                            .map(|(a, b)| (a - b).powi(2))
                            .sum::<f64>()
                            .sqrt();
                        assert!(
                            err <= 1e-4 * norm,
                            "{what}: gradient off by {err:.2e} (norm {norm:.2e})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_class_seen_once_is_a_negative_but_not_an_anchor_on_gpu() {
    // As the CPU test of the same name: ℓ0 = log(1 + e^2), ℓ1 = log 2, L = (ℓ0 + ℓ1) / 2.
    let Some(gpu) = test_device() else { return };
    let raw = [3.0, 0.0, 0.0, 0.5, 2.0, 0.0];
    let expected = ((1.0 + 2f64.exp()).ln() + 2f64.ln()) / 2.0;
    for kind in [LossKind::Lacln, LossKind::LaclnNoHnm] {
        let x = leaf(&raw, 3, 2, DType::F32, &gpu);
        let (loss, grad) = loss_and_grad(kind, &LossConfig::default(), &x, &[0, 0, 1]);
        assert!(
            (loss - expected).abs() < 1e-6,
            "{kind}: {loss} vs {expected}"
        );
        assert!(grad.iter().all(|g| g.is_finite()), "{kind}: {grad:?}");
    }
}

#[test]
fn one_class_batch_has_no_negatives_on_gpu() {
    let Some(gpu) = test_device() else { return };
    let raw = random_features(5, 4, 7);
    for kind in [LossKind::Lacln, LossKind::LaclnNoHnm, LossKind::Hscl] {
        let x = leaf(&raw, 5, 4, DType::F32, &gpu);
        let (loss, grad) = loss_and_grad(kind, &LossConfig::default(), &x, &[3; 5]);
        assert_eq!(loss, 0.0, "{kind}");
        assert!(grad.iter().all(|&g| g == 0.0), "{kind}: {grad:?}");
    }
    // SupCon's denominator runs over every other view: identical features give log(M - 1).
    let same = leaf(&[1.0, 2.0].repeat(4), 4, 2, DType::F32, &gpu);
    let (loss, _) = loss_and_grad(LossKind::SupCon, &LossConfig::default(), &same, &[0; 4]);
    assert!((loss - 3f64.ln()).abs() < 1e-6, "{loss}");
}

#[test]
fn no_anchor_with_a_positive_gives_zero_loss_and_gradient_on_gpu() {
    let Some(gpu) = test_device() else { return };
    for (m, labels) in [(4, vec![0, 1, 2, 3]), (1, vec![0])] {
        let raw = random_features(m, 3, 3);
        for kind in CONTRASTIVE {
            let x = leaf(&raw, m, 3, DType::F32, &gpu);
            let (loss, grad) = loss_and_grad(kind, &LossConfig::default(), &x, &labels);
            assert_eq!(loss, 0.0, "{kind} M={m}");
            assert!(grad.iter().all(|&g| g == 0.0), "{kind} M={m}: {grad:?}");
        }
    }
}

#[test]
fn hscl_of_two_views_has_no_negative_term_on_gpu() {
    // M = 2: the factor M - 2 makes g_i = 0 even with a negative present, so every ℓ_ip = 0.
    let Some(gpu) = test_device() else { return };
    let raw = random_features(3, 4, 9);
    let x = leaf(&raw[..8], 2, 4, DType::F32, &gpu);
    let (loss, grad) = loss_and_grad(LossKind::Hscl, &LossConfig::default(), &x, &[1, 1]);
    assert_eq!(loss, 0.0);
    assert!(grad.iter().all(|&g| g == 0.0), "{grad:?}");
}

#[test]
fn low_temperature_with_nearly_identical_features_stays_finite_on_gpu() {
    let Some(gpu) = test_device() else { return };
    check_low_temperature_with_nearly_identical_features(DType::F32, &gpu);
}

#[test]
fn fused_ops_on_gpu_tensors_stay_on_the_gpu() {
    let Some(gpu) = test_device() else { return };
    let raw = random_features(6, 5, 4);
    let labels = [0, 1, 2, 0, 1, 2];
    let z = leaf(&raw, 6, 5, DType::F32, &gpu);
    let z = z.l2_normalize(-1, 1e-12).unwrap();
    for loss in [
        lacln(&z, &labels, 0.5, 1.0, true).unwrap(),
        supcon(&z, &labels, 0.5).unwrap(),
        hscl(&z, &labels, 0.5, 1.0).unwrap(),
    ] {
        assert_eq!(loss.device(), &gpu);
        assert!(loss.storage().len() == 1 && loss.dims().is_empty());
    }
    // The whole objective, cross-entropy and all, on GPU tensors.
    let x = leaf(&raw, 6, 5, DType::F32, &gpu);
    let logits = leaf(&random_features(6, 3, 5), 6, 3, DType::F32, &gpu);
    let cfg = LossConfig::default();
    let loss = objective(LossKind::Clce, &cfg, &x, &labels, Some(&logits)).unwrap();
    loss.backward().unwrap();
    assert_eq!(loss.device(), &gpu);
    assert_eq!(x.grad().unwrap().device(), &gpu);
    assert_eq!(logits.grad().unwrap().device(), &gpu);
}
