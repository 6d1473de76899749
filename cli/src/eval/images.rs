//! The images an evaluation embeds: a few-shot split of CIFAR-100 (CIFAR-FS, FC100), the
//! class folders of one split of an image folder, or one split of a data set that `finetune`
//! knows (CIFAR-100, CIFAR-10, the synthetic set).
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::benchmarks::{Benchmark, FewShotSplit};
use super::error::{EvalError, Result};
use crate::data::{DataSpec, Dataset, Image, Split};

/// The `--data` of `fewshot` and `embed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalData {
    FewShot(Benchmark),
    /// `PATH/<split>/<class>/*`: every class folder of the chosen split.
    ClassFolders(PathBuf),
    /// cifar100, cifar10 or synthetic, split train or test.
    Standard(DataSpec),
}

pub const FORMS: &str = "cifar-fs, fc100, imagefolder:PATH (classes of PATH/<split>/), \
     cifar100, cifar10, synthetic[:...]";

impl FromStr for EvalData {
    type Err = EvalError;

    fn from_str(s: &str) -> Result<EvalData> {
        match s.to_ascii_lowercase().as_str() {
            "cifar-fs" | "cifarfs" => return Ok(EvalData::FewShot(Benchmark::CifarFs)),
            "fc100" | "fc-100" => return Ok(EvalData::FewShot(Benchmark::Fc100)),
            _ => {}
        }
        match s.parse::<DataSpec>() {
            Ok(DataSpec::ImageFolder(path)) => Ok(EvalData::ClassFolders(path)),
            Ok(spec) => Ok(EvalData::Standard(spec)),
            Err(_) => Err(EvalError::Invalid(format!(
                "--data {s:?}: expected one of {FORMS}"
            ))),
        }
    }
}

/// A list of images drawn from one or more splits, with a label per image.
pub struct ImageSet {
    sources: Vec<Arc<Split>>,
    /// (source, index in that source) of every image.
    items: Vec<(usize, usize)>,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
    /// A short description for the user ("CIFAR-FS test: 20 classes, 12000 images").
    pub description: String,
}

impl ImageSet {
    /// Opens the images `data` names; CIFAR is looked up under `data_dir`, the synthetic set
    /// is drawn at `input_size`.
    pub fn open(
        data: &EvalData,
        split: FewShotSplit,
        data_dir: &Path,
        input_size: usize,
    ) -> Result<ImageSet> {
        let set = match data {
            EvalData::FewShot(benchmark) => {
                let cifar = Dataset::open(&DataSpec::Cifar100, data_dir, input_size)?;
                few_shot_split(&cifar, *benchmark, split)?
            }
            EvalData::ClassFolders(root) => {
                let (split_images, class_names) =
                    Dataset::open_class_folders(&root.join(split.to_string()))?;
                let labels = split_images.labels().to_vec();
                ImageSet::whole(
                    Arc::new(split_images),
                    labels,
                    class_names,
                    format!("{} {split}", root.display()),
                )
            }
            EvalData::Standard(spec) => {
                let name = match spec {
                    DataSpec::Cifar100 => "CIFAR-100",
                    DataSpec::Cifar10 => "CIFAR-10",
                    _ => "synthetic set",
                };
                let dataset = Dataset::open(spec, data_dir, input_size)?;
                let chosen = match split {
                    FewShotSplit::Train => dataset.train.clone(),
                    FewShotSplit::Test => dataset.test.clone(),
                    FewShotSplit::Val => {
                        return Err(EvalError::Invalid(format!(
                            "{name} has a train and a test split, no val split"
                        )))
                    }
                };
                let labels = chosen.labels().to_vec();
                let what = format!("{name} {split}");
                ImageSet::whole(chosen, labels, dataset.class_names, what)
            }
        };
        if set.is_empty() {
            return Err(EvalError::Invalid(format!(
                "{} has no images",
                set.description
            )));
        }
        Ok(set)
    }

    fn whole(split: Arc<Split>, labels: Vec<usize>, names: Vec<String>, what: String) -> Self {
        ImageSet {
            items: (0..split.len()).map(|i| (0, i)).collect(),
            sources: vec![split],
            description: format!("{what}: {} classes, {} images", names.len(), labels.len()),
            labels,
            class_names: names,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Image `i` of the set, decoded.
    pub fn image(&self, i: usize) -> Result<Image> {
        let (source, index) = self.items[i];
        Ok(self.sources[source].image(index)?)
    }
}

/// The images of `split` of a CIFAR-100 few-shot benchmark, from CIFAR-100's train and test
/// images together. Labels follow the order of the benchmark's class list (CIFAR-FS) or the
/// CIFAR-100 order of the fine classes of the listed superclasses (FC100).
pub fn few_shot_split(
    cifar100: &Dataset,
    benchmark: Benchmark,
    split: FewShotSplit,
) -> Result<ImageSet> {
    let listed = benchmark.classes(split);
    let find = |names: &[String], name: &str, what: &str| {
        names.iter().position(|n| n == name).ok_or_else(|| {
            EvalError::Invalid(format!(
                "{} {split} lists the {what} {name:?}, which this CIFAR-100 copy does not name; \
                 is it CIFAR-100?",
                benchmark.name()
            ))
        })
    };
    // The fine classes of the split, as CIFAR-100 labels, in label order of the benchmark.
    let fine: Vec<usize> = match benchmark {
        Benchmark::CifarFs => listed
            .iter()
            .map(|name| find(&cifar100.class_names, name, "class"))
            .collect::<Result<_>>()?,
        Benchmark::Fc100 => {
            let coarse_names = cifar100.coarse_class_names.as_deref().ok_or_else(|| {
                EvalError::Invalid("FC100 needs CIFAR-100's superclass names".into())
            })?;
            let wanted: Vec<usize> = listed
                .iter()
                .map(|name| find(coarse_names, name, "superclass"))
                .collect::<Result<_>>()?;
            let mut fine = Vec::new();
            for split in [&cifar100.train, &cifar100.test] {
                let coarse = split.coarse_labels().ok_or_else(|| {
                    EvalError::Invalid("FC100 needs CIFAR-100's superclass labels".into())
                })?;
                for (&f, c) in split.labels().iter().zip(coarse) {
                    if wanted.contains(c) && !fine.contains(&f) {
                        fine.push(f);
                    }
                }
            }
            fine.sort_unstable();
            fine
        }
    };
    let mut set = ImageSet {
        sources: vec![cifar100.train.clone(), cifar100.test.clone()],
        items: Vec::new(),
        labels: Vec::new(),
        class_names: fine
            .iter()
            .map(|&f| cifar100.class_names[f].clone())
            .collect(),
        description: String::new(),
    };
    for (source, split_images) in set.sources.iter().enumerate() {
        for (index, f) in split_images.labels().iter().enumerate() {
            if let Some(label) = fine.iter().position(|x| x == f) {
                set.items.push((source, index));
                set.labels.push(label);
            }
        }
    }
    set.description = format!(
        "{} {split}: {} classes, {} images",
        benchmark.name(),
        set.class_names.len(),
        set.len()
    );
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "cifar-fs".parse::<EvalData>().unwrap(),
            EvalData::FewShot(Benchmark::CifarFs)
        );
        assert_eq!(
            "FC100".parse::<EvalData>().unwrap(),
            EvalData::FewShot(Benchmark::Fc100)
        );
        assert_eq!(
            "imagefolder:/data/mini".parse::<EvalData>().unwrap(),
            EvalData::ClassFolders("/data/mini".into())
        );
        assert_eq!(
            "cifar100".parse::<EvalData>().unwrap(),
            EvalData::Standard(DataSpec::Cifar100)
        );
        let err = "mnist".parse::<EvalData>().unwrap_err().to_string();
        assert!(err.contains(FORMS), "{err}");
    }
}
