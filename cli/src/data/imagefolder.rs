//! Image folders laid out like torchvision's `ImageFolder`: `ROOT/train/<class>/**/*.jpg` and
//! `ROOT/val/<class>/...` (or `ROOT/test/...`). Classes are the train sub-folders sorted by
//! name; files are found recursively in sorted order. Images are decoded when asked for.
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};
use super::image::Image;
use super::split::{Source, Split};
use super::Dataset;

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

pub(crate) fn open(root: &Path) -> Result<Dataset> {
    let layout = || {
        format!(
            "expected {r}/train/<class>/*.jpg|png and {r}/val/<class>/... (or {r}/test/<class>/...)",
            r = root.display()
        )
    };
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::Missing(format!(
            "imagefolder: {} is not a folder; {}",
            train_dir.display(),
            layout()
        )));
    }
    let test_dir = ["val", "test"]
        .iter()
        .map(|name| root.join(name))
        .find(|dir| dir.is_dir())
        .ok_or_else(|| {
            DataError::Missing(format!(
                "imagefolder: neither {r}/val nor {r}/test is a folder; {}",
                layout(),
                r = root.display()
            ))
        })?;

    let class_names = sorted_subfolders(&train_dir)?;
    if class_names.is_empty() {
        return Err(DataError::Missing(format!(
            "imagefolder: {} has no class folders; {}",
            train_dir.display(),
            layout()
        )));
    }
    let train = scan(&train_dir, &class_names, true)?;
    for name in sorted_subfolders(&test_dir)? {
        if !class_names.contains(&name) {
            return Err(DataError::Invalid(format!(
                "imagefolder: {} is a class that {} does not have",
                test_dir.join(&name).display(),
                train_dir.display()
            )));
        }
    }
    let test = scan(&test_dir, &class_names, false)?;
    Dataset::new(train, test, class_names, None)
}

/// One folder of class sub-folders (`DIR/<class>/**/*.jpg|png`) as a split of its own, with
/// its class names (sorted). Few-shot benchmarks such as miniImageNet ship their train, val
/// and test classes as disjoint folders of this kind.
pub(crate) fn open_class_folders(dir: &Path) -> Result<(Split, Vec<String>)> {
    if !dir.is_dir() {
        return Err(DataError::Missing(format!(
            "imagefolder: {} is not a folder; expected {}/<class>/*.jpg|png",
            dir.display(),
            dir.display()
        )));
    }
    let class_names = sorted_subfolders(dir)?;
    if class_names.is_empty() {
        return Err(DataError::Missing(format!(
            "imagefolder: {} has no class folders; expected {}/<class>/*.jpg|png",
            dir.display(),
            dir.display()
        )));
    }
    Ok((scan(dir, &class_names, true)?, class_names))
}

/// Decodes one image file to RGB; the error names the file.
pub(crate) fn decode(path: &Path) -> Result<Image> {
    let decoded = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|source| DataError::Image {
            path: path.to_path_buf(),
            source,
        })?
        .into_rgb8();
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    Image::new(width, height, decoded.into_raw())
}

/// The files of every class under `dir`, labelled by the class's position in `classes`.
fn scan(dir: &Path, classes: &[String], every_class_needs_images: bool) -> Result<Split> {
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        let before = paths.len();
        if class_dir.is_dir() {
            collect_images(&class_dir, &mut paths)?;
        }
        if every_class_needs_images && paths.len() == before {
            return Err(DataError::Missing(format!(
                "imagefolder: {} holds no .jpg, .jpeg or .png file",
                class_dir.display()
            )));
        }
        labels.resize(paths.len(), label);
    }
    if paths.is_empty() {
        return Err(DataError::Missing(format!(
            "imagefolder: {} holds no .jpg, .jpeg or .png file",
            dir.display()
        )));
    }
    Ok(Split::new(Source::Files(paths), labels, None))
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            collect_images(&path, out)?;
        } else if has_image_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_subfolders(dir: &Path) -> Result<Vec<String>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .collect())
}

/// Entries of a folder sorted by name, as Python's `sorted` orders them.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| DataError::io(dir, e))?;
    entries.sort();
    Ok(entries)
}
