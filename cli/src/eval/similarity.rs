//! Cosine similarities of positive pairs (two embeddings of the same class) and negative pairs
//! (different classes): the distributions of the paper's figures 3 and 4, and their means.
use rayon::prelude::*;

use super::embeddings::Embeddings;
use super::error::{EvalError, Result};

/// The similarity of every unordered pair of the chosen embeddings, split by kind.
#[derive(Clone, Debug, Default)]
pub struct PairSimilarities {
    pub positive: Vec<f32>,
    pub negative: Vec<f32>,
}

/// Mean cosine similarity over all positive and all negative pairs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanSimilarities {
    pub positive: f64,
    pub negative: f64,
}

/// Every pair among the embeddings of `classes`, at most `per_class` embeddings of each class
/// (the first ones in file order): positive when both share a class, negative otherwise.
pub fn pair_similarities(
    embeddings: &Embeddings,
    classes: &[usize],
    per_class: usize,
) -> Result<PairSimilarities> {
    let unit = embeddings.l2_normalized();
    let by_class = unit.indices_by_class();
    let mut chosen: Vec<(usize, usize)> = Vec::new();
    for &class in classes {
        let examples = by_class.get(class).ok_or_else(|| {
            EvalError::Invalid(format!(
                "class {class} does not exist: the embeddings have classes 0..{}",
                unit.num_classes()
            ))
        })?;
        if examples.is_empty() {
            return Err(EvalError::Invalid(format!(
                "class {class} ({}) has no embeddings",
                unit.class_names[class]
            )));
        }
        chosen.extend(examples.iter().take(per_class).map(|&i| (i, class)));
    }
    let rows: Vec<PairSimilarities> = (0..chosen.len())
        .into_par_iter()
        .map(|a| {
            let (i, ci) = chosen[a];
            let mut out = PairSimilarities::default();
            for &(j, cj) in &chosen[a + 1..] {
                let cos = dot(unit.row(i), unit.row(j));
                if ci == cj {
                    out.positive.push(cos);
                } else {
                    out.negative.push(cos);
                }
            }
            out
        })
        .collect();
    let mut all = PairSimilarities::default();
    for row in rows {
        all.positive.extend(row.positive);
        all.negative.extend(row.negative);
    }
    Ok(all)
}

/// The exact means over all pairs of the whole set, without visiting the pairs: with unit
/// vectors u_i and class sums S_c, Σ_{i<j in c} u_i·u_j = (|S_c|² - Σ_{i in c} |u_i|²) / 2,
/// and the negative pairs hold the rest of the all-pairs sum (|S|² - Σ |u_i|²) / 2.
pub fn mean_similarities(embeddings: &Embeddings) -> Result<MeanSimilarities> {
    let unit = embeddings.l2_normalized();
    let d = unit.dim;
    let mut class_sums = vec![vec![0.0f64; d]; unit.num_classes()];
    let mut class_norms = vec![0.0f64; unit.num_classes()];
    let mut class_counts = vec![0usize; unit.num_classes()];
    for i in 0..unit.len() {
        let c = unit.labels[i];
        for (s, &v) in class_sums[c].iter_mut().zip(unit.row(i)) {
            *s += f64::from(v);
        }
        class_norms[c] += unit.row(i).iter().map(|&v| f64::from(v * v)).sum::<f64>();
        class_counts[c] += 1;
    }
    let pairs = |n: usize| (n * n.saturating_sub(1) / 2) as f64;
    let squared = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
    let mut total = vec![0.0f64; d];
    let (mut positive_sum, mut positive_pairs) = (0.0, 0.0);
    for c in 0..unit.num_classes() {
        positive_sum += (squared(&class_sums[c]) - class_norms[c]) / 2.0;
        positive_pairs += pairs(class_counts[c]);
        total
            .iter_mut()
            .zip(&class_sums[c])
            .for_each(|(t, s)| *t += s);
    }
    let all_sum = (squared(&total) - class_norms.iter().sum::<f64>()) / 2.0;
    let negative_pairs = pairs(unit.len()) - positive_pairs;
    if positive_pairs == 0.0 || negative_pairs == 0.0 {
        return Err(EvalError::Invalid(
            "mean similarities need a class with two embeddings and two classes".into(),
        ));
    }
    Ok(MeanSimilarities {
        positive: positive_sum / positive_pairs,
        negative: (all_sum - positive_sum) / negative_pairs,
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class 0: (1,0), (0.6,0.8) scaled by 5; class 1: (0,1), (-1,0).
    fn sample() -> Embeddings {
        Embeddings::new(
            vec![1.0, 0.0, 3.0, 4.0, 0.0, 1.0, -1.0, 0.0],
            2,
            vec![0, 0, 1, 1],
            vec!["a".into(), "b".into()],
        )
        .unwrap()
    }

    #[test]
    fn pairs_by_hand() {
        let mut s = pair_similarities(&sample(), &[0, 1], 10).unwrap();
        s.positive.sort_by(f32::total_cmp);
        s.negative.sort_by(f32::total_cmp);
        // Positive: (1,0)·(.6,.8) = .6 and (0,1)·(-1,0) = 0.
        assert_eq!(s.positive, vec![0.0, 0.6]);
        // Negative: (1,0)·(0,1) = 0, (1,0)·(-1,0) = -1, (.6,.8)·(0,1) = .8, (.6,.8)·(-1,0) = -.6.
        let expected = [-1.0, -0.6, 0.0, 0.8];
        for (got, want) in s.negative.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{:?}", s.negative);
        }
        // Only class 0, one embedding of it: no pairs.
        let one = pair_similarities(&sample(), &[0], 1).unwrap();
        assert!(one.positive.is_empty() && one.negative.is_empty());
    }

    #[test]
    fn exact_means_match_the_pairs() {
        let means = mean_similarities(&sample()).unwrap();
        assert!((means.positive - 0.3).abs() < 1e-7, "{means:?}");
        assert!((means.negative - (-0.2)).abs() < 1e-7, "{means:?}");
    }

    #[test]
    fn unknown_classes_are_errors() {
        let err = pair_similarities(&sample(), &[0, 5], 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("class 5"), "{err}");
    }
}
