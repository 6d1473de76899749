use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use super::{hscl, lacln, objective, supcon, LossConfig, LossKind};
use crate::{DType, Device, Tensor};

/// One PyTorch-made batch: its tensors (as f64), labels and hyper-parameters.
pub(super) struct Fixture {
    name: String,
    tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
    labels: Vec<usize>,
    cfg: LossConfig,
}

impl Fixture {
    fn load(path: &std::path::Path) -> Fixture {
        let bytes = std::fs::read(path).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        let param = |k: &str| meta[k].parse::<f64>().unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let tensors: HashMap<_, _> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let values: Vec<f64> = match view.dtype() {
                    Dtype::F32 => view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                        .collect(),
                    Dtype::F64 => view
                        .data()
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                    Dtype::I64 => view
                        .data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                        .collect(),
                    other => panic!("unexpected dtype {other:?} in {path:?}"),
                };
                (name, (view.shape().to_vec(), values))
            })
            .collect();
        let labels = tensors["labels"].1.iter().map(|&l| l as usize).collect();
        Fixture {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            tensors,
            labels,
            cfg: LossConfig {
                tau: param("tau"),
                beta: param("beta"),
                lambda: param("lambda"),
                label_smoothing: 0.0,
            },
        }
    }

    fn all() -> Vec<Fixture> {
        let mut paths: Vec<_> = std::fs::read_dir(crate::fixtures::dir().join("losses"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        paths.sort();
        assert!(
            paths.len() >= 4,
            "loss fixtures missing in {}",
            crate::fixtures::dir().display()
        );
        paths.iter().map(|p| Fixture::load(p)).collect()
    }

    fn values(&self, name: &str) -> &[f64] {
        &self.tensors[name].1
    }

    /// A leaf that requires grad, in `dtype` on `device`.
    fn input(&self, name: &str, dtype: DType, device: &Device) -> Tensor {
        let (shape, values) = &self.tensors[name];
        Tensor::from_f64_slice(values, shape.as_slice(), dtype, device)
            .unwrap()
            .set_requires_grad(true)
    }
}

fn relative_error(actual: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(actual.len(), reference.len());
    let diff: f64 = actual
        .iter()
        .zip(reference)
        .map(|(a, r)| (a - r).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = reference.iter().map(|r| r * r).sum::<f64>().sqrt();
    diff / norm
}

/// Loss within `loss_tol` and gradients within `grad_tol` relative of the fixture's values,
/// computed on `device`.
pub(super) fn check_against_fixtures(device: &Device, dtype: DType, loss_tol: f64, grad_tol: f64) {
    let cases = [
        ("lacln", LossKind::Lacln),
        ("lacln_nohnm", LossKind::LaclnNoHnm),
        ("supcon", LossKind::SupCon),
        ("hscl", LossKind::Hscl),
        ("clce", LossKind::Clce),
        ("ce", LossKind::Ce),
    ];
    for f in Fixture::all() {
        for (key, kind) in cases {
            let features = f.input("features", dtype, device);
            let logits = f.input("logits", dtype, device);
            let loss = objective(kind, &f.cfg, &features, &f.labels, Some(&logits)).unwrap();
            loss.backward().unwrap();
            let what = format!("{} {key} {dtype:?} on {device}", f.name);
            let expected = f.values(&format!("{key}.loss"))[0];
            let got = loss.to_scalar().unwrap();
            let err = (got - expected).abs() / expected.abs();
            assert!(err < loss_tol, "{what}: loss {got} vs {expected}");
            let mut grads = vec![("logits", &logits)];
            if kind.uses_features() {
                grads.push(("features", &features));
            }
            for (input, t) in grads {
                let Some(reference) = f.tensors.get(&format!("{key}.grad_{input}")) else {
                    continue;
                };
                let grad = t.grad().unwrap().to_vec_f64().unwrap();
                let err = relative_error(&grad, &reference.1);
                assert!(err < grad_tol, "{what}: grad_{input} off by {err:.2e}");
            }
        }
    }
}

#[test]
fn f32_matches_pytorch_fixtures() {
    check_against_fixtures(&Device::Cpu, DType::F32, 1e-5, 1e-4);
}

#[test]
fn f64_matches_pytorch_fixtures() {
    check_against_fixtures(&Device::Cpu, DType::F64, 1e-10, 1e-9);
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}

fn features(rows: &[&[f64]], dtype: DType) -> Tensor {
    let d = rows[0].len();
    let flat: Vec<f64> = rows.concat();
    Tensor::from_f64_slice(&flat, [rows.len(), d], dtype, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true)
}

pub(super) fn loss_and_grad(
    kind: LossKind,
    cfg: &LossConfig,
    x: &Tensor,
    labels: &[usize],
) -> (f64, Vec<f64>) {
    x.zero_grad();
    let loss = objective(kind, cfg, x, labels, None).unwrap();
    loss.backward().unwrap();
    (
        loss.to_scalar().unwrap(),
        x.grad().unwrap().to_vec_f64().unwrap(),
    )
}

pub(super) const CONTRASTIVE: [LossKind; 4] = [
    LossKind::Lacln,
    LossKind::LaclnNoHnm,
    LossKind::SupCon,
    LossKind::Hscl,
];

#[test]
fn a_class_seen_once_is_a_negative_but_not_an_anchor() {
    // Raw features along the axes (normalisation brings them to unit length): z0 = z2 = e1,
    // z1 = e2. Labels [0, 0, 1]: sample 2 has no positive, so only anchors 0 and 1 count.
    // τ = 0.5: s01 = 0, s02 = 2, s12 = 0. Each counted anchor has one positive and one
    // negative, so w = 1 and ℓ_i = log(1 + e^{s_neg} / e^{s_pos}):
    //   ℓ0 = log(1 + e^2), ℓ1 = log(1 + 1), L = (ℓ0 + ℓ1) / 2 (not / 3).
    let x = features(&[&[3.0, 0.0], &[0.0, 0.5], &[2.0, 0.0]], DType::F64);
    let expected = ((1.0 + 2f64.exp()).ln() + 2f64.ln()) / 2.0;
    for kind in [LossKind::Lacln, LossKind::LaclnNoHnm] {
        let (loss, grad) = loss_and_grad(kind, &LossConfig::default(), &x, &[0, 0, 1]);
        assert!(
            (loss - expected).abs() < 1e-12,
            "{kind}: {loss} vs {expected}"
        );
        assert!(grad.iter().all(|g| g.is_finite()));
    }
}

#[test]
fn one_class_batch_has_no_negatives() {
    // Every anchor has positives but N(i) is empty: n_i = 0, so -log(m/(m+0)) = 0 exactly
    // for LACLN (and g_i = 0 for H-SCL), with a zero gradient.
    let x = Tensor::randn([5, 4], 1.0, 7, DType::F32, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    let labels = [3; 5];
    for kind in [LossKind::Lacln, LossKind::LaclnNoHnm, LossKind::Hscl] {
        let (loss, grad) = loss_and_grad(kind, &LossConfig::default(), &x, &labels);
        assert_eq!(loss, 0.0, "{kind}");
        assert!(grad.iter().all(|&g| g == 0.0), "{kind}: {grad:?}");
    }
    // SupCon's denominator runs over every other view, so it does not vanish: with identical
    // features every s_ia = 1/τ and ℓ_i = log((M-1) e^{1/τ}) - 1/τ = log(M - 1).
    let same = features(
        &[&[1.0, 2.0], &[1.0, 2.0], &[1.0, 2.0], &[1.0, 2.0]],
        DType::F64,
    );
    let (loss, _) = loss_and_grad(LossKind::SupCon, &LossConfig::default(), &same, &[0; 4]);
    assert!((loss - 3f64.ln()).abs() < 1e-12, "{loss}");
}

#[test]
fn no_anchor_with_a_positive_gives_zero_loss_and_gradient() {
    let x = Tensor::randn([4, 3], 1.0, 3, DType::F64, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    for kind in CONTRASTIVE {
        let (loss, grad) = loss_and_grad(kind, &LossConfig::default(), &x, &[0, 1, 2, 3]);
        assert_eq!(loss, 0.0, "{kind}");
        assert!(grad.iter().all(|&g| g == 0.0), "{kind}");
    }
    let single = Tensor::randn([1, 3], 1.0, 4, DType::F64, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    for kind in CONTRASTIVE {
        assert_eq!(
            loss_and_grad(kind, &LossConfig::default(), &single, &[0]).0,
            0.0
        );
    }
}

/// All z nearly equal: every s ≈ 1/τ = 14.3, so m_i ≈ e^{1/τ} and n_i ≈ |N(i)| e^{1/τ} (the
/// weights average to 1): ℓ_i ≈ log(1 + |N(i)|). Unshifted, e^{(1+β)s} would be e^28.6.
/// Every contrastive loss stays finite there, and LACLN is near that value.
pub(super) fn check_low_temperature_with_nearly_identical_features(dtype: DType, device: &Device) {
    let base = Tensor::randn([1, 16], 1.0, 1, DType::F64, &Device::Cpu).unwrap();
    let noise = Tensor::randn([8, 16], 1e-4, 2, DType::F64, &Device::Cpu).unwrap();
    let raw = base.add(&noise).unwrap().to_vec_f64().unwrap();
    let labels = [0, 1, 2, 0, 0, 1, 2, 0];
    let cfg = LossConfig {
        tau: 0.07,
        ..LossConfig::default()
    };
    let expected: f64 = labels
        .iter()
        .map(|&y| (1.0 + labels.iter().filter(|&&l| l != y).count() as f64).ln())
        .sum::<f64>()
        / labels.len() as f64;
    let x = Tensor::from_f64_slice(&raw, [8, 16], dtype, device)
        .unwrap()
        .set_requires_grad(true);
    for kind in CONTRASTIVE {
        let (loss, grad) = loss_and_grad(kind, &cfg, &x, &labels);
        assert!(
            loss.is_finite() && grad.iter().all(|g| g.is_finite()),
            "{kind} on {device}"
        );
    }
    let (loss, _) = loss_and_grad(LossKind::Lacln, &cfg, &x, &labels);
    assert!(
        (loss - expected).abs() < 1e-2,
        "{dtype:?} on {device}: {loss} vs {expected}"
    );
}

#[test]
fn low_temperature_with_nearly_identical_features_stays_finite() {
    for dtype in [DType::F32, DType::F64] {
        check_low_temperature_with_nearly_identical_features(dtype, &Device::Cpu);
    }
}

#[test]
fn f32_agrees_with_f64_at_extreme_temperatures() {
    let raw = Tensor::randn([24, 9], 1.0, 11, DType::F64, &Device::Cpu)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let labels: Vec<usize> = (0..24).map(|i| i % 5).collect();
    for tau in [0.07, 1.0] {
        let cfg = LossConfig {
            tau,
            beta: 2.0,
            ..LossConfig::default()
        };
        for kind in CONTRASTIVE {
            let run = |dtype| {
                let x = Tensor::from_f64_slice(&raw, [24, 9], dtype, &Device::Cpu)
                    .unwrap()
                    .set_requires_grad(true);
                loss_and_grad(kind, &cfg, &x, &labels)
            };
            let (l32, g32) = run(DType::F32);
            let (l64, g64) = run(DType::F64);
            assert!((l32 - l64).abs() / l64.abs() < 1e-5, "{kind} τ={tau}");
            assert!(relative_error(&g32, &g64) < 1e-4, "{kind} τ={tau}");
        }
    }
}

#[test]
fn the_fused_ops_take_normalised_features() {
    // Called directly, the ops do not normalise: scaling z scales every s_ij.
    let z = features(&[&[1.0, 0.0], &[0.0, 1.0], &[1.0, 0.0]], DType::F64);
    let labels = [0, 0, 1];
    let l = lacln(&z, &labels, 0.5, 1.0, true)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((l - ((1.0 + 2f64.exp()).ln() + 2f64.ln()) / 2.0).abs() < 1e-12);
    assert!(supcon(&z, &labels, 0.5).is_ok());
    assert!(hscl(&z, &labels, 0.5, 1.0).is_ok());
}

#[test]
fn bad_inputs_are_errors() {
    let cfg = LossConfig::default();
    let x = Tensor::randn([4, 3], 1.0, 0, DType::F32, &Device::Cpu).unwrap();
    let logits = Tensor::randn([4, 2], 1.0, 0, DType::F32, &Device::Cpu).unwrap();
    let labels = [0, 1, 0, 1];
    let flat = x.reshape([12]).unwrap();
    assert!(objective(LossKind::Lacln, &cfg, &flat, &labels, None).is_err());
    assert!(objective(LossKind::Lacln, &cfg, &x, &labels[..3], None).is_err());
    assert!(objective(LossKind::Clce, &cfg, &x, &labels, None).is_err());
    assert!(objective(LossKind::Ce, &cfg, &x, &[0, 1, 0, 2], Some(&logits)).is_err());
    assert!(objective(LossKind::Ce, &cfg, &x, &labels[..3], Some(&logits)).is_err());
    for bad in [
        LossConfig { tau: 0.0, ..cfg },
        LossConfig {
            tau: f64::NAN,
            ..cfg
        },
        LossConfig { lambda: 1.5, ..cfg },
        LossConfig {
            label_smoothing: 1.5,
            ..cfg
        },
    ] {
        assert!(objective(LossKind::Clce, &bad, &x, &labels, Some(&logits)).is_err());
    }
    assert!(supcon(&x, &labels, -1.0).is_err());
}

#[test]
fn loss_names_parse_and_unknown_ones_list_the_valid_names() {
    for kind in LossKind::ALL {
        assert_eq!(kind.name().parse::<LossKind>().unwrap(), kind);
    }
    assert_eq!("ce+supcon".parse::<LossKind>().unwrap(), LossKind::CeSupCon);
    let err = "simclr".parse::<LossKind>().unwrap_err().to_string();
    assert!(err.contains("simclr") && err.contains("clce-nohnm") && err.contains("ce+supcon"));
}
