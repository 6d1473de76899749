//! Evaluation as in the paper: few-shot episodes on frozen features (Table 1), the embedding
//! analysis of section 4.6 (isotropy, positive/negative similarity distributions, t-SNE), and
//! training curves.
//!
//! Few-shot, top to bottom: [`images`] picks the images of a split (CIFAR-FS and FC100 class
//! lists in [`benchmarks`]), [`features`] turns them into pooled features once, [`episodes`]
//! draws N-way K-shot episodes, [`logreg`] fits the classifier (with [`lbfgs`]) and
//! [`fewshot`] reports the mean accuracy with its interval ([`confidence`], [`student_t`]).
pub mod benchmarks;
pub mod confidence;
pub mod embeddings;
pub mod episodes;
pub mod error;
pub mod features;
pub mod fewshot;
pub mod images;
pub mod isotropy;
pub mod lbfgs;
pub mod logreg;
pub mod plot;
pub mod similarity;
pub mod student_t;
pub mod tsne;

pub use embeddings::Embeddings;
pub use error::{EvalError, Result};
