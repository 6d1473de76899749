//! CIFAR-10 and CIFAR-100 in the two distributions people have on disk: the binary version
//! (fixed-size records) and the python version (pickled dicts, what torchvision downloads).
//! The binary version is preferred when both are present; they hold the same images.
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};
use super::split::{Source, Split};
use super::Dataset;

mod binary;
mod pickle;

/// Every CIFAR image is 32x32 RGB, stored channel-planar (1024 R, 1024 G, 1024 B bytes).
pub(crate) const SIDE: usize = 32;
pub(crate) const IMAGE_BYTES: usize = SIDE * SIDE * 3;

/// Where one CIFAR variant keeps what, in both distributions.
pub(crate) struct Layout {
    title: &'static str,
    classes: usize,
    /// CIFAR-100's superclasses; its binary records start with the coarse label.
    coarse_classes: Option<usize>,
    binary_dir: &'static str,
    binary_train: &'static [&'static str],
    binary_test: &'static str,
    binary_names: &'static str,
    binary_coarse_names: Option<&'static str>,
    python_dir: &'static str,
    python_train: &'static [&'static str],
    python_test: &'static str,
    python_meta: &'static str,
    python_labels: &'static str,
    python_names: &'static str,
    python_coarse_labels: Option<&'static str>,
    python_coarse_names: Option<&'static str>,
    torchvision_class: &'static str,
    archive_stem: &'static str,
}

pub(crate) const CIFAR100: Layout = Layout {
    title: "CIFAR-100",
    classes: 100,
    coarse_classes: Some(20),
    binary_dir: "cifar-100-binary",
    binary_train: &["train.bin"],
    binary_test: "test.bin",
    binary_names: "fine_label_names.txt",
    binary_coarse_names: Some("coarse_label_names.txt"),
    python_dir: "cifar-100-python",
    python_train: &["train"],
    python_test: "test",
    python_meta: "meta",
    python_labels: "fine_labels",
    python_names: "fine_label_names",
    python_coarse_labels: Some("coarse_labels"),
    python_coarse_names: Some("coarse_label_names"),
    torchvision_class: "CIFAR100",
    archive_stem: "cifar-100",
};

pub(crate) const CIFAR10: Layout = Layout {
    title: "CIFAR-10",
    classes: 10,
    coarse_classes: None,
    binary_dir: "cifar-10-batches-bin",
    binary_train: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    binary_test: "test_batch.bin",
    binary_names: "batches.meta.txt",
    binary_coarse_names: None,
    python_dir: "cifar-10-batches-py",
    python_train: &[
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
    ],
    python_test: "test_batch",
    python_meta: "batches.meta",
    python_labels: "labels",
    python_names: "label_names",
    python_coarse_labels: None,
    python_coarse_names: None,
    torchvision_class: "CIFAR10",
    archive_stem: "cifar-10",
};

/// Opens the variant from `data_dir`, binary version first, else the python version.
pub(crate) fn open(layout: &Layout, data_dir: &Path) -> Result<Dataset> {
    if let Some(dir) = find_dir(data_dir, layout.binary_dir) {
        return binary::open(layout, &dir);
    }
    if let Some(dir) = find_dir(data_dir, layout.python_dir) {
        return pickle::open(layout, &dir);
    }
    Err(DataError::Missing(not_found(layout, data_dir)))
}

/// `data_dir/name`, or `data_dir` itself when the user pointed straight at the folder.
fn find_dir(data_dir: &Path, name: &str) -> Option<PathBuf> {
    let inside = data_dir.join(name);
    if inside.is_dir() {
        Some(inside)
    } else if data_dir.is_dir() && data_dir.file_name().is_some_and(|n| n == name) {
        Some(data_dir.to_path_buf())
    } else {
        None
    }
}

/// The path of a file the `distribution` ("binary" or "python") must contain, or an error
/// saying it is missing.
fn require(layout: &Layout, distribution: &str, dir: &Path, file: &str) -> Result<PathBuf> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::Missing(format!(
            "{}: {} is missing; the folder {} looks incomplete (re-extract {}-{}.tar.gz from {URL})",
            layout.title,
            path.display(),
            dir.display(),
            layout.archive_stem,
            distribution,
        )))
    }
}

const URL: &str = "https://www.cs.toronto.edu/~kriz/cifar.html";

fn not_found(layout: &Layout, data_dir: &Path) -> String {
    let d = data_dir.display();
    let list = |files: &[&str]| files.join(", ");
    format!(
        "{title} not found under {d}. Put one of its two distributions there:\n  \
         binary: {d}/{bin}/ holding {bin_train}, {bin_test}, {bin_names}\n  \
         python: {d}/{py}/ holding {py_train}, {py_test}, {py_meta}\n\
         Download {stem}-binary.tar.gz or {stem}-python.tar.gz from {URL} and extract it into {d}, \
         or let torchvision fetch the python version: \
         torchvision.datasets.{tv}(root=\"{d}\", download=True). \
         Use --data-dir to look elsewhere.",
        title = layout.title,
        bin = layout.binary_dir,
        bin_train = list(layout.binary_train),
        bin_test = layout.binary_test,
        bin_names = layout.binary_names,
        py = layout.python_dir,
        py_train = list(layout.python_train),
        py_test = layout.python_test,
        py_meta = layout.python_meta,
        stem = layout.archive_stem,
        tv = layout.torchvision_class,
    )
}

/// Images and labels read from one file of a split.
pub(crate) struct Records {
    /// HWC RGB, `IMAGE_BYTES` per image.
    pub pixels: Vec<u8>,
    pub labels: Vec<usize>,
    pub coarse_labels: Option<Vec<usize>>,
}

/// Joins the files of one split (CIFAR-10's five training batches) into a split.
fn into_split(parts: Vec<Records>) -> Split {
    let has_coarse = parts.iter().all(|p| p.coarse_labels.is_some());
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut coarse = Vec::new();
    for part in parts {
        pixels.extend(part.pixels);
        labels.extend(part.labels);
        coarse.extend(part.coarse_labels.unwrap_or_default());
    }
    let source = Source::Packed {
        width: SIDE,
        height: SIDE,
        pixels,
    };
    Split::new(source, labels, has_coarse.then_some(coarse))
}

/// Checks that the class-name lists match the variant, then assembles the data set.
fn assemble(
    layout: &Layout,
    train: Vec<Records>,
    test: Records,
    names: (PathBuf, Vec<String>),
    coarse_names: Option<(PathBuf, Vec<String>)>,
) -> Result<Dataset> {
    let check = |(path, names): (PathBuf, Vec<String>), expected: usize| {
        if names.len() == expected {
            Ok(names)
        } else {
            Err(DataError::corrupt(
                path,
                format!(
                    "{} class names, {} has {expected}",
                    names.len(),
                    layout.title
                ),
            ))
        }
    };
    let class_names = check(names, layout.classes)?;
    let coarse_class_names = match (coarse_names, layout.coarse_classes) {
        (Some(names), Some(expected)) => Some(check(names, expected)?),
        _ => None,
    };
    Dataset::new(
        into_split(train),
        into_split(vec![test]),
        class_names,
        coarse_class_names,
    )
}

/// Labels must index the class list; a byte out of range means a damaged file.
fn check_label(
    path: &Path,
    what: &str,
    example: usize,
    label: i64,
    classes: usize,
) -> Result<usize> {
    if (0..classes as i64).contains(&label) {
        Ok(label as usize)
    } else {
        Err(DataError::corrupt(
            path,
            format!(
                "{what} of example {example} is {label}, outside 0..{classes}; the file is corrupt"
            ),
        ))
    }
}
