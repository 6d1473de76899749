//! The training objectives of CLCE and its baselines (METHOD.md), on raw features and logits.
//!
//! - `lacln.rs`: LACLN, the label-aware contrastive loss with hard-negative mining (and its
//!   ablation without hard negatives);
//! - `supcon.rs`, `hscl.rs`: the SupCon and H-SCL baselines;
//! - `pairwise.rs`: what those three share (S = z zᵀ / τ, log-sum-exp over positives or
//!   negatives, the hard-negative-weighted sum, dL/dS -> dL/dz);
//! - `gpu.rs`: the three on a GPU tensor (shaders/lacln.wgsl), with the same statistics
//!   and closed-form backward.
//!
//! Each contrastive loss is one fused op with a closed-form backward over S. [`objective`] is
//! the one entry point: it L2-normalises the features (inside the differentiated graph) and
//! mixes in cross-entropy for the `clce*` and `ce+supcon` objectives.
mod gpu;
#[cfg(test)]
mod gpu_tests;
mod hscl;
mod lacln;
mod pairwise;
mod supcon;
#[cfg(test)]
mod tests;

pub use hscl::hscl;
pub use lacln::lacln;
pub use supcon::supcon;

use crate::{Error, Result, Tensor};

/// Which objective to train with; `--loss NAME` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// LACLN alone.
    Lacln,
    /// LACLN with every hard-negative weight w_ik = 1 (ablation).
    LaclnNoHnm,
    /// SupCon (Khosla et al.), factor 1 instead of τ / base_τ.
    SupCon,
    /// H-SCL (Jiang et al.).
    Hscl,
    /// Cross-entropy alone.
    Ce,
    /// (1-λ) CE + λ LACLN, the paper's objective.
    Clce,
    /// (1-λ) CE + λ LACLN without hard-negative mining (ablation).
    ClceNoHnm,
    /// (1-λ) CE + λ SupCon (the paper's "CE+SupCon" baseline).
    CeSupCon,
}

impl LossKind {
    pub const ALL: [LossKind; 8] = [
        LossKind::Clce,
        LossKind::ClceNoHnm,
        LossKind::Lacln,
        LossKind::LaclnNoHnm,
        LossKind::Ce,
        LossKind::SupCon,
        LossKind::CeSupCon,
        LossKind::Hscl,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Lacln => "lacln",
            LossKind::LaclnNoHnm => "lacln-nohnm",
            LossKind::SupCon => "supcon",
            LossKind::Hscl => "hscl",
            LossKind::Ce => "ce",
            LossKind::Clce => "clce",
            LossKind::ClceNoHnm => "clce-nohnm",
            LossKind::CeSupCon => "ce+supcon",
        }
    }

    /// Whether the objective has a cross-entropy term (and so needs logits).
    pub fn needs_logits(self) -> bool {
        matches!(
            self,
            LossKind::Ce | LossKind::Clce | LossKind::ClceNoHnm | LossKind::CeSupCon
        )
    }

    /// Whether the objective has a contrastive term (and so depends on the features).
    pub fn uses_features(self) -> bool {
        self != LossKind::Ce
    }

    /// The contrastive term of the objective, if any.
    fn contrastive(self) -> Option<Contrastive> {
        match self {
            LossKind::Lacln | LossKind::Clce => Some(Contrastive::Lacln {
                hard_negatives: true,
            }),
            LossKind::LaclnNoHnm | LossKind::ClceNoHnm => Some(Contrastive::Lacln {
                hard_negatives: false,
            }),
            LossKind::SupCon | LossKind::CeSupCon => Some(Contrastive::SupCon),
            LossKind::Hscl => Some(Contrastive::Hscl),
            LossKind::Ce => None,
        }
    }
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LossKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        LossKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = LossKind::ALL.iter().map(|k| k.name()).collect();
                Error::invalid(
                    "loss",
                    format!("unknown loss {s:?}; expected one of {}", names.join(", ")),
                )
            })
    }
}

#[derive(Clone, Copy, Debug)]
enum Contrastive {
    Lacln { hard_negatives: bool },
    SupCon,
    Hscl,
}

/// Hyper-parameters of the objectives (METHOD.md defaults: τ = 0.5, β = 1, λ = 0.9).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossConfig {
    /// Temperature τ of the similarities s_ij = z_i · z_j / τ.
    pub tau: f64,
    /// Hardness β of the negative weights (LACLN, H-SCL).
    pub beta: f64,
    /// Weight λ of the contrastive term: (1-λ) CE + λ contrastive.
    pub lambda: f64,
    /// Label smoothing of the cross-entropy term.
    pub label_smoothing: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            tau: 0.5,
            beta: 1.0,
            lambda: 0.9,
            label_smoothing: 0.0,
        }
    }
}

impl LossConfig {
    fn check(&self) -> Result<()> {
        let bad =
            |what: &str, v: f64| Err(Error::invalid("loss", format!("{what} out of range: {v}")));
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return bad("tau must be > 0;", self.tau);
        }
        if !self.beta.is_finite() {
            return bad("beta must be finite;", self.beta);
        }
        if !(0.0..=1.0).contains(&self.lambda) {
            return bad("lambda must lie in [0, 1];", self.lambda);
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return bad("label smoothing must lie in [0, 1];", self.label_smoothing);
        }
        Ok(())
    }
}

/// The training objective `kind` as a scalar, differentiable with respect to `features` and
/// `logits`.
///
/// `features` [M, D] are the raw embeddings (L2-normalised here, inside the graph); `labels`
/// one class per row; `logits` [M, C] are needed by the objectives with a cross-entropy term
/// and ignored by the others. `ce` ignores the features.
pub fn objective(
    kind: LossKind,
    cfg: &LossConfig,
    features: &Tensor,
    labels: &[usize],
    logits: Option<&Tensor>,
) -> Result<Tensor> {
    cfg.check()?;
    let contrastive = match kind.contrastive() {
        None => None,
        Some(c) => {
            // z_i = x_i / max(||x_i||, ε), as F.normalize: part of the graph, so the
            // gradients reach the raw features through it.
            let z = features.l2_normalize(-1, 1e-12)?;
            Some(match c {
                Contrastive::Lacln { hard_negatives } => {
                    lacln(&z, labels, cfg.tau, cfg.beta, hard_negatives)?
                }
                Contrastive::SupCon => supcon(&z, labels, cfg.tau)?,
                Contrastive::Hscl => hscl(&z, labels, cfg.tau, cfg.beta)?,
            })
        }
    };
    let ce = if kind.needs_logits() {
        let logits = logits.ok_or_else(|| {
            Error::invalid(
                "loss",
                format!("`{kind}` has a cross-entropy term and needs logits [M, C]"),
            )
        })?;
        Some(logits.cross_entropy(labels, cfg.label_smoothing)?)
    } else {
        None
    };
    match (ce, contrastive) {
        (Some(ce), Some(con)) => ce
            .mul_scalar(1.0 - cfg.lambda)?
            .add(&con.mul_scalar(cfg.lambda)?),
        (Some(ce), None) => Ok(ce),
        (None, Some(con)) => Ok(con),
        (None, None) => unreachable!("every loss has a cross-entropy or a contrastive term"),
    }
}

/// Finite-difference checks of every objective (raw features in, so the normalisation is
/// checked too). The labels leave one class with a single sample: its anchor has no positive.
pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    const LABELS: [usize; 7] = [0, 1, 0, 2, 1, 0, 1];
    let contrastive = |name: &str, kind: LossKind, cfg: LossConfig, shape: &[usize]| {
        let labels: Vec<usize> = (0..shape[0]).map(|i| LABELS[i % LABELS.len()]).collect();
        Case::new(name, &[shape], move |x| {
            objective(kind, &cfg, &x[0], &labels, None)
        })
    };
    let sharp = LossConfig {
        tau: 0.1,
        beta: 2.0,
        ..LossConfig::default()
    };
    let mut cases = Vec::new();
    for (name, kind) in [
        ("lacln", LossKind::Lacln),
        ("lacln_nohnm", LossKind::LaclnNoHnm),
        ("supcon", LossKind::SupCon),
        ("hscl", LossKind::Hscl),
    ] {
        cases.push(contrastive(name, kind, LossConfig::default(), &[7, 5]));
        cases.push(contrastive(name, kind, sharp, &[11, 3]));
    }
    let cfg = LossConfig {
        label_smoothing: 0.1,
        ..LossConfig::default()
    };
    cases.push(Case::new("clce", &[&[7, 5], &[7, 3]], move |x| {
        objective(LossKind::Clce, &cfg, &x[0], &LABELS, Some(&x[1]))
    }));
    cases
}
