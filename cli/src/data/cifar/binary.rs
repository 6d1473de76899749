//! The binary distribution: each record is the label byte(s) followed by 3072 pixel bytes
//! (channel-planar 32x32). CIFAR-100 records carry two label bytes, coarse then fine.
//! Class names are plain text, one per line.
use std::path::Path;

use super::{assemble, check_label, require, Layout, Records, IMAGE_BYTES, SIDE};
use crate::data::error::{DataError, Result};
use crate::data::image::Image;
use crate::data::Dataset;

pub(super) fn open(layout: &Layout, dir: &Path) -> Result<Dataset> {
    let train = layout
        .binary_train
        .iter()
        .map(|file| read_records(layout, &require(layout, "binary", dir, file)?))
        .collect::<Result<Vec<_>>>()?;
    let test = read_records(layout, &require(layout, "binary", dir, layout.binary_test)?)?;
    let names_path = require(layout, "binary", dir, layout.binary_names)?;
    let names = (names_path.clone(), read_names(&names_path)?);
    // The coarse names are a nicety: the coarse labels themselves are in every record.
    let coarse_names = match layout.binary_coarse_names.map(|f| dir.join(f)) {
        Some(path) if path.is_file() => Some((path.clone(), read_names(&path)?)),
        _ => None,
    };
    assemble(layout, train, test, names, coarse_names)
}

pub(crate) fn read_records(layout: &Layout, path: &Path) -> Result<Records> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let label_bytes = if layout.coarse_classes.is_some() {
        2
    } else {
        1
    };
    let record = label_bytes + IMAGE_BYTES;
    if bytes.is_empty() {
        return Err(DataError::corrupt(
            path,
            format!(
                "the file is empty (an interrupted download?); delete it and fetch the {} \
                 binary version again",
                layout.title
            ),
        ));
    }
    if bytes.len() % record != 0 {
        return Err(DataError::corrupt(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte {} records \
                 ({} complete, {} bytes left over); the file is truncated or not a {} binary file",
                bytes.len(),
                layout.title,
                bytes.len() / record,
                bytes.len() % record,
                layout.title
            ),
        ));
    }
    let count = bytes.len() / record;
    let mut records = Records {
        pixels: Vec::with_capacity(count * IMAGE_BYTES),
        labels: Vec::with_capacity(count),
        coarse_labels: layout.coarse_classes.map(|_| Vec::with_capacity(count)),
    };
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let (label_part, planar) = rec.split_at(label_bytes);
        let fine = label_part[label_bytes - 1] as i64;
        records
            .labels
            .push(check_label(path, "label", i, fine, layout.classes)?);
        if let (Some(coarse), Some(classes)) = (&mut records.coarse_labels, layout.coarse_classes) {
            coarse.push(check_label(
                path,
                "coarse label",
                i,
                label_part[0] as i64,
                classes,
            )?);
        }
        records
            .pixels
            .extend(Image::from_planar(SIDE, SIDE, planar).pixels);
    }
    Ok(records)
}

/// One class name per line; blank lines (the files end with some) are not classes.
pub(crate) fn read_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}
