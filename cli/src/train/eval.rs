//! Classification accuracy: top-1, top-5 and per class, of the classifier head on a split
//! (no augmentation: resize, centre, normalise), as `finetune` reports it every epoch and
//! `clce-cli eval` reports it for a saved model.
use std::sync::Arc;

use clce_engine::{no_grad, Device};
use serde_json::json;

use super::error::{Result, TrainError};
use super::network::{Mode, Network};
use crate::data::{Loader, Normalization, Split};

/// Correct predictions counted over a split.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Per class: images whose top-1 prediction is right, and images.
    pub correct: Vec<usize>,
    pub total: Vec<usize>,
    /// Images whose label is among the 5 highest logits.
    pub correct5: usize,
}

impl Tally {
    pub fn new(classes: usize) -> Tally {
        Tally {
            correct: vec![0; classes],
            total: vec![0; classes],
            correct5: 0,
        }
    }

    /// Counts a batch: `logits` row-major [labels.len(), classes].
    pub fn add(&mut self, logits: &[f32], labels: &[usize]) {
        let classes = self.total.len();
        for (row, &label) in logits.chunks_exact(classes).zip(labels) {
            let rank = rank_of(row, label);
            self.total[label] += 1;
            self.correct[label] += usize::from(rank == 0);
            self.correct5 += usize::from(rank < 5);
        }
    }

    pub fn images(&self) -> usize {
        self.total.iter().sum()
    }

    /// Fraction of images whose top-1 prediction is right (0 for no images).
    pub fn top1(&self) -> f64 {
        fraction(self.correct.iter().sum(), self.images())
    }

    /// Fraction of images whose label is among the 5 highest logits (1 with 5 classes or
    /// fewer).
    pub fn top5(&self) -> f64 {
        fraction(self.correct5, self.images())
    }

    /// Top-1 accuracy of every class, None for a class without images.
    pub fn per_class(&self) -> Vec<Option<f64>> {
        self.correct
            .iter()
            .zip(&self.total)
            .map(|(&c, &t)| (t > 0).then(|| fraction(c, t)))
            .collect()
    }
}

fn fraction(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Position of `label` in `row` sorted by decreasing logit, ties broken by class index (what
/// a stable sort gives). A NaN logit for the label ranks last: a broken model is never
/// "right".
fn rank_of(row: &[f32], label: usize) -> usize {
    let y = row[label];
    if y.is_nan() {
        return usize::MAX;
    }
    row.iter()
        .enumerate()
        .filter(|&(c, &l)| l > y || (l == y && c < label))
        .count()
}

/// How evaluation views are made and batched.
#[derive(Clone, Copy, Debug)]
pub struct EvalViews {
    pub batch_size: usize,
    /// Side of the square input.
    pub image_size: usize,
    pub norm: Normalization,
}

/// The classifier's accuracy on `split` (labels in 0..classes). `progress(done, total)` is
/// called after each batch.
pub fn evaluate(
    net: &dyn Network,
    split: &Arc<Split>,
    classes: usize,
    views: &EvalViews,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tally> {
    let _no_grad = no_grad();
    let loader = Loader::eval(
        split.clone(),
        views.batch_size,
        views.image_size,
        &views.norm,
    )?;
    let batches = loader.len();
    let mut tally = Tally::new(classes);
    for (i, batch) in loader.enumerate() {
        let batch = batch?;
        let x = batch.to_tensor(device)?;
        let logits = net.forward(&x, Mode::Eval)?.logits.to_vec_f32()?;
        // An argmax over NaN would still pick a class: a broken model must not score.
        let bad = logits.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(TrainError::Invalid(format!(
                "the model gives {bad} NaN or infinite logits on batch {} of {batches}: its \
                 weights overflow (or the run diverged); no accuracy can be reported",
                i + 1
            )));
        }
        tally.add(&logits, &batch.labels);
        progress(i + 1, batches);
    }
    Ok(tally)
}

/// (class name, top-1 or None without images, images) for every class.
pub fn per_class_rows(names: &[String], tally: &Tally) -> Vec<(String, Option<f64>, usize)> {
    tally
        .per_class()
        .into_iter()
        .enumerate()
        .map(|(c, acc)| {
            let name = names.get(c).cloned().unwrap_or_else(|| c.to_string());
            (name, acc, tally.total[c])
        })
        .collect()
}

/// Per-class accuracy, three classes to a line; names as wide as the longest, up to 24
/// characters.
pub fn per_class_table(rows: &[(String, Option<f64>, usize)]) -> String {
    let width = rows
        .iter()
        .map(|(name, _, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    let cells: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (name, acc, _))| {
            let acc = acc.map_or("   -  ".into(), |a| format!("{:5.1}%", 100.0 * a));
            let name: String = name.chars().take(width).collect();
            format!("{i:>4} {name:<width$} {acc}")
        })
        .collect();
    let mut out = String::from("per-class top-1 accuracy:");
    for line in cells.chunks(3) {
        out.push('\n');
        out.push_str(line.join("   ").trim_end());
    }
    out
}

pub fn per_class_json(rows: &[(String, Option<f64>, usize)]) -> serde_json::Value {
    rows.iter()
        .map(|(name, acc, n)| json!({"class": name, "top1": acc, "images": n}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_top5_and_per_class_count_ranks() {
        // 7 classes; class 6 is never seen.
        let mut t = Tally::new(7);
        let logits = [
            // label 0 ranks first.
            [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            // label 1 ranks fifth (9, 8, 7, 6 above it): top-5 but not top-1.
            [9.0, 5.0, 8.0, 7.0, 6.0, 1.0, 0.0],
            // label 2 ranks sixth: neither.
            [9.0, 8.0, 4.0, 7.0, 6.0, 5.0, 0.0],
            // label 0 ties with class 3 for first: the lower index wins.
            [5.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0],
        ];
        let flat: Vec<f32> = logits.iter().flatten().copied().collect();
        t.add(&flat, &[0, 1, 2, 0]);
        assert_eq!(t.images(), 4);
        assert_eq!(t.top1(), 0.5);
        assert_eq!(t.top5(), 0.75);
        let per_class = t.per_class();
        assert_eq!(per_class[0], Some(1.0));
        assert_eq!(per_class[1], Some(0.0));
        assert_eq!(per_class[6], None);
        // The same tie the other way round: class 3 is the label, class 0 wins.
        let mut u = Tally::new(7);
        u.add(&flat[21..28], &[3]);
        assert_eq!((u.top1(), u.top5()), (0.0, 1.0));
    }

    #[test]
    fn nan_logits_are_never_right() {
        let mut t = Tally::new(3);
        t.add(&[f32::NAN, f32::NAN, f32::NAN], &[1]);
        assert_eq!((t.top1(), t.top5()), (0.0, 0.0));
    }

    #[test]
    fn per_class_rows_name_every_class() {
        let mut t = Tally::new(3);
        t.add(&[1.0, 0.0, 0.0, 1.0, 0.0, 0.0], &[0, 1]);
        let names = vec!["cat".to_string(), "dog".to_string(), "emu".to_string()];
        let rows = per_class_rows(&names, &t);
        assert_eq!(
            rows,
            [
                ("cat".to_string(), Some(1.0), 1),
                ("dog".to_string(), Some(0.0), 1),
                ("emu".to_string(), None, 0)
            ]
        );
        let table = per_class_table(&rows);
        assert!(table.contains("cat") && table.contains("100.0%") && table.contains("-"));
        assert_eq!(per_class_json(&rows)[2]["top1"], serde_json::Value::Null);
    }

    #[test]
    fn the_table_shows_whole_names_up_to_24_characters() {
        let rows = [
            ("yellow-triangle-solid".to_string(), Some(0.5), 2),
            ("a-name-of-exactly-30-letters!!".to_string(), Some(1.0), 1),
        ];
        let table = per_class_table(&rows);
        assert!(
            table.contains("   0 yellow-triangle-solid     50.0%"),
            "{table}"
        );
        assert!(
            table.contains("   1 a-name-of-exactly-30-let 100.0%"),
            "{table}"
        );
    }

    #[test]
    fn an_empty_tally_reports_zero() {
        let t = Tally::new(4);
        assert_eq!((t.top1(), t.top5()), (0.0, 0.0));
    }
}
