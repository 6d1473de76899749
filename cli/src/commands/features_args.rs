//! The arguments that say where features come from, shared by `fewshot` and `embed`: a model
//! and its weights run over the images of a data split, or (few-shot only) a file of
//! embeddings written earlier by `clce-cli embed`.
use std::path::{Path, PathBuf};

use clce_cli::eval::benchmarks::FewShotSplit;
use clce_cli::eval::features::{self, FeatureExtractor};
use clce_cli::eval::images::{EvalData, ImageSet};
use clce_cli::eval::Embeddings;
use clce_engine::Device;

use super::model_features;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Architecture the weights must be: a preset (beit-base, resnet-101, ...), beit or resnet;
    /// default: whatever the file holds.
    #[arg(long)]
    pub model: Option<String>,
    /// Checkpoint file (safetensors; timm, torchvision or transformers naming, or our own).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Images: cifar-fs, fc100, imagefolder:PATH (the class folders of PATH/<split>/),
    /// cifar100, cifar10 or synthetic[:...].
    #[arg(long)]
    pub data: Option<EvalData>,
    /// Which split of --data: the few-shot class splits train/val/test (CIFAR-FS, FC100,
    /// image folders), or train/test of cifar100, cifar10 and synthetic.
    #[arg(long, value_enum, default_value_t = FewShotSplit::Test)]
    pub split: FewShotSplit,
    /// Where CIFAR-100 / CIFAR-10 are looked up.
    #[arg(long, env = "CLCE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
}

impl ModelArgs {
    /// Runs the model over every image of the chosen split, once, and returns the pooled
    /// features with their labels. Progress goes to stderr.
    pub fn compute(
        &self,
        device: &Device,
    ) -> Result<(Embeddings, String), Box<dyn std::error::Error>> {
        let weights = self
            .weights
            .as_deref()
            .ok_or("--weights FILE is required (the model whose features to use)")?;
        let data = self.data.as_ref().ok_or(
            "--data is required: cifar-fs, fc100, imagefolder:PATH, cifar100, cifar10 or synthetic",
        )?;
        let mut extractor = model_features::load(self.model.as_deref(), weights, device)?;
        let set = ImageSet::open(data, self.split, &self.data_dir, extractor.input_size())?;
        eprintln!("{}", set.description);
        let embeddings = extract(&set, extractor.as_mut(), self.batch_size)?;
        Ok((embeddings, set.description))
    }
}

fn extract(
    set: &ImageSet,
    extractor: &mut dyn FeatureExtractor,
    batch_size: usize,
) -> clce_cli::eval::Result<Embeddings> {
    let start = std::time::Instant::now();
    let mut last_report = start;
    features::compute(set, extractor, batch_size, |done, total| {
        if last_report.elapsed().as_secs() >= 10 || done == total {
            eprintln!(
                "features: {done}/{total} images ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
            last_report = std::time::Instant::now();
        }
    })
}

/// `path`, with a readable error when its folder does not exist.
pub fn output_path(path: &Path) -> Result<&Path, String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(format!(
            "cannot write {}: the folder {} does not exist",
            path.display(),
            dir.display()
        )),
        _ => Ok(path),
    }
}
