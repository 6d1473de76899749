//! A set of feature vectors with their class labels: the encoder's pooled features of a split,
//! computed once, from which few-shot episodes are drawn and the embedding analysis reads.
//!
//! On disk (`clce-cli embed`) they are a safetensors file with two tensors, `embeddings`
//! [N, d] F32 and `labels` [N] I64, and the class names as a JSON list under the metadata key
//! `class_names` (optional when reading: classes are then named by their number).
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::error::{EvalError, Result};

pub const EMBEDDINGS: &str = "embeddings";
pub const LABELS: &str = "labels";
pub const CLASS_NAMES: &str = "class_names";

#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// `len() × dim`, row i is the feature of example i.
    pub values: Vec<f32>,
    pub dim: usize,
    pub labels: Vec<usize>,
    /// Label `c` is `class_names[c]`.
    pub class_names: Vec<String>,
}

impl Embeddings {
    pub fn new(
        values: Vec<f32>,
        dim: usize,
        labels: Vec<usize>,
        class_names: Vec<String>,
    ) -> Result<Embeddings> {
        if dim == 0 || values.len() != labels.len() * dim {
            return Err(EvalError::Invalid(format!(
                "{} values do not make {} embeddings of dimension {dim}",
                values.len(),
                labels.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l >= class_names.len()) {
            return Err(EvalError::Invalid(format!(
                "label {bad} but only {} class names",
                class_names.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::Invalid(format!(
                "embedding {} has a non-finite value ({})",
                i / dim,
                values[i]
            )));
        }
        Ok(Embeddings {
            values,
            dim,
            labels,
            class_names,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// The indices of the examples of every class, in example order.
    pub fn indices_by_class(&self) -> Vec<Vec<usize>> {
        indices_by_class(&self.labels, self.num_classes())
    }

    /// Every row divided by its Euclidean norm (a zero row stays zero).
    pub fn l2_normalized(&self) -> Embeddings {
        let mut values = self.values.clone();
        for row in values.chunks_exact_mut(self.dim) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Embeddings {
            values,
            ..self.clone()
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let values: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let labels: Vec<u8> = self
            .labels
            .iter()
            .flat_map(|&l| (l as i64).to_le_bytes())
            .collect();
        let invalid = |e: safetensors::SafeTensorError| EvalError::format(path, e.to_string());
        let tensors = [
            (
                EMBEDDINGS,
                TensorView::new(Dtype::F32, vec![self.len(), self.dim], &values)
                    .map_err(invalid)?,
            ),
            (
                LABELS,
                TensorView::new(Dtype::I64, vec![self.len()], &labels).map_err(invalid)?,
            ),
        ];
        let names = serde_json::to_string(&self.class_names).expect("strings serialise");
        let metadata = HashMap::from([(CLASS_NAMES.to_string(), names)]);
        let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(invalid)?;
        std::fs::write(path, bytes).map_err(|e| EvalError::io(path, e))
    }

    pub fn load(path: &Path) -> Result<Embeddings> {
        let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
        let bad = |msg: String| EvalError::format(path, msg);
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let get = |name: &str| {
            file.tensor(name).map_err(|_| {
                bad(format!(
                    "has no tensor named {name:?} (it has {:?}); an embeddings file holds \
                     {EMBEDDINGS:?} [N, d] F32 and {LABELS:?} [N] I64, as `clce-cli embed` writes",
                    file.names()
                ))
            })
        };
        let (embeddings, labels) = (get(EMBEDDINGS)?, get(LABELS)?);
        let (n, dim) = match (embeddings.dtype(), embeddings.shape()) {
            (Dtype::F32, &[n, dim]) => (n, dim),
            (dtype, shape) => {
                return Err(bad(format!(
                    "{EMBEDDINGS:?} is {dtype:?} {shape:?}, expected F32 [N, d]"
                )))
            }
        };
        match (labels.dtype(), labels.shape()) {
            (Dtype::I64, &[m]) if m == n => {}
            (dtype, shape) => {
                return Err(bad(format!(
                "{LABELS:?} is {dtype:?} {shape:?}, expected I64 [{n}] (one label per embedding)"
            )))
            }
        }
        let values: Vec<f32> = embeddings
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let labels = labels
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .map(|l| usize::try_from(l).map_err(|_| bad(format!("negative label {l}"))))
            .collect::<Result<Vec<usize>>>()?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let class_names = match header.metadata().as_ref().and_then(|m| m.get(CLASS_NAMES)) {
            Some(json) => serde_json::from_str::<Vec<String>>(json).map_err(|e| {
                bad(format!(
                    "metadata {CLASS_NAMES:?} is not a list of names: {e}"
                ))
            })?,
            None => {
                let classes = labels.iter().max().map_or(0, |m| m + 1);
                (0..classes).map(|c| c.to_string()).collect()
            }
        };
        Embeddings::new(values, dim, labels, class_names).map_err(|e| bad(e.to_string()))
    }
}

/// The indices of the examples of every class (labels in 0..classes), in example order.
pub fn indices_by_class(labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    by_class
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Embeddings {
        Embeddings::new(
            vec![3.0, 4.0, 0.0, 0.0, -1.0, 0.0],
            2,
            vec![1, 0, 1],
            vec!["cat".into(), "dog".into()],
        )
        .unwrap()
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.safetensors");
        let e = sample();
        e.save(&path).unwrap();
        assert_eq!(Embeddings::load(&path).unwrap(), e);
    }

    #[test]
    fn normalising_gives_unit_rows_and_keeps_zero_rows() {
        let n = sample().l2_normalized();
        assert_eq!(n.values, vec![0.6, 0.8, 0.0, 0.0, -1.0, 0.0]);
        assert_eq!(sample().indices_by_class(), vec![vec![1], vec![0, 2]]);
    }

    #[test]
    fn inconsistent_contents_are_errors() {
        assert!(Embeddings::new(vec![0.0; 5], 2, vec![0, 0], vec!["a".into()]).is_err());
        assert!(Embeddings::new(vec![0.0; 4], 2, vec![0, 1], vec!["a".into()]).is_err());
        assert!(Embeddings::new(vec![f32::NAN, 0.0], 2, vec![0], vec!["a".into()]).is_err());
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Embeddings::load(&dir.path().join("nope.safetensors")).unwrap_err();
        assert!(
            missing.to_string().contains("nope.safetensors"),
            "{missing}"
        );

        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a tensor file").unwrap();
        let err = Embeddings::load(&junk).unwrap_err().to_string();
        assert!(err.contains("not a safetensors file"), "{err}");

        // Wrong tensor names.
        let wrong = dir.path().join("wrong.safetensors");
        let bytes: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![1, 2], &bytes).unwrap();
        std::fs::write(
            &wrong,
            safetensors::serialize([("features", view)], None).unwrap(),
        )
        .unwrap();
        let err = Embeddings::load(&wrong).unwrap_err().to_string();
        assert!(
            err.contains("\"embeddings\"") && err.contains("features"),
            "{err}"
        );

        // Mismatched lengths: 2 embeddings, 3 labels.
        let lengths = dir.path().join("lengths.safetensors");
        let e: Vec<u8> = [0f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let l: Vec<u8> = [0i64; 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensors = [
            (
                EMBEDDINGS,
                TensorView::new(Dtype::F32, vec![2, 2], &e).unwrap(),
            ),
            (LABELS, TensorView::new(Dtype::I64, vec![3], &l).unwrap()),
        ];
        std::fs::write(&lengths, safetensors::serialize(tensors, None).unwrap()).unwrap();
        let err = Embeddings::load(&lengths).unwrap_err().to_string();
        assert!(err.contains("one label per embedding"), "{err}");
    }
}
