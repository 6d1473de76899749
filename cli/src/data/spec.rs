//! The `--data` argument: which data set to use, as a short string.
use std::path::PathBuf;
use std::str::FromStr;

use super::error::DataError;

/// The valid forms, shown in every parse error.
pub const FORMS: &str = "cifar100, cifar10, imagefolder:PATH, \
     synthetic[:classes=N,train=N,test=N,seed=N] (train/test = images per class)";

/// A data set named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSpec {
    /// CIFAR-100 (100 fine classes, 20 coarse superclasses), found under the data directory.
    Cifar100,
    /// CIFAR-10, found under the data directory.
    Cifar10,
    /// `PATH/train/<class>/*` and `PATH/val/<class>/*` (or `PATH/test/...`).
    ImageFolder(PathBuf),
    /// The built-in procedurally drawn set; needs no files.
    Synthetic(SyntheticSpec),
}

/// Size and seed of the synthetic set; the image size follows the model's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticSpec {
    pub classes: usize,
    pub train_per_class: usize,
    pub test_per_class: usize,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            classes: 10,
            train_per_class: 100,
            test_per_class: 20,
            seed: 0,
        }
    }
}

impl FromStr for DataSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |msg: &str| DataError::Spec {
            given: s.to_string(),
            msg: format!("{msg}; expected one of: {FORMS}"),
        };
        let (name, arg) = match s.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (s, None),
        };
        match (name.to_ascii_lowercase().as_str(), arg) {
            ("cifar100" | "cifar-100", None) => Ok(DataSpec::Cifar100),
            ("cifar10" | "cifar-10", None) => Ok(DataSpec::Cifar10),
            ("imagefolder", Some(path)) if !path.is_empty() => {
                Ok(DataSpec::ImageFolder(PathBuf::from(path)))
            }
            ("imagefolder", _) => Err(error("imagefolder needs a folder: imagefolder:PATH")),
            ("synthetic", None) => Ok(DataSpec::Synthetic(SyntheticSpec::default())),
            ("synthetic", Some(options)) => parse_synthetic(options)
                .map(DataSpec::Synthetic)
                .map_err(|msg| error(&msg)),
            ("cifar-fs" | "cifarfs" | "fc100", _) => Err(error(
                "the few-shot splits of CIFAR-100 are used by the few-shot evaluation, \
                 not by finetune (fine-tune on cifar100 or an image folder)",
            )),
            (_, Some(_)) if name.len() == 1 => Err(error(
                "looks like a Windows path; an image folder is given as imagefolder:PATH",
            )),
            _ => Err(error("unknown data set")),
        }
    }
}

fn parse_synthetic(options: &str) -> Result<SyntheticSpec, String> {
    let mut spec = SyntheticSpec::default();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| format!("synthetic option {option:?} is not KEY=VALUE"))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("synthetic option {key}={value:?} is not a whole number"))?;
        match key {
            "classes" => spec.classes = number as usize,
            "train" => spec.train_per_class = number as usize,
            "test" => spec.test_per_class = number as usize,
            "seed" => spec.seed = number,
            _ => return Err(format!("unknown synthetic option {key:?}")),
        }
    }
    if spec.classes < 2 || spec.train_per_class == 0 || spec.test_per_class == 0 {
        return Err("synthetic needs classes >= 2 and train, test >= 1".into());
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("cifar100".parse::<DataSpec>().unwrap(), DataSpec::Cifar100);
        assert_eq!("CIFAR-10".parse::<DataSpec>().unwrap(), DataSpec::Cifar10);
        assert_eq!(
            "imagefolder:/data/imnet:v2".parse::<DataSpec>().unwrap(),
            DataSpec::ImageFolder("/data/imnet:v2".into())
        );
        assert_eq!(
            "synthetic".parse::<DataSpec>().unwrap(),
            DataSpec::Synthetic(SyntheticSpec::default())
        );
        assert_eq!(
            "synthetic:classes=4,test=3,seed=9"
                .parse::<DataSpec>()
                .unwrap(),
            DataSpec::Synthetic(SyntheticSpec {
                classes: 4,
                train_per_class: 100,
                test_per_class: 3,
                seed: 9
            })
        );
    }

    #[test]
    fn errors_list_the_valid_forms() {
        for bad in [
            "cifar",
            "imagefolder",
            "imagefolder:",
            "synthetic:classes=x",
            "synthetic:colour=3",
            "synthetic:classes=1",
            "cifar-fs",
            "C:\\data",
        ] {
            let msg = bad.parse::<DataSpec>().unwrap_err().to_string();
            assert!(msg.contains(FORMS), "{bad}: {msg}");
        }
    }
}
