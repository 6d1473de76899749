//! The python distribution (what torchvision downloads): each file is a pickled dict.
//! The originals are Python 2 pickles, so their keys and strings come out as bytes
//! (b"data", b"fine_labels"); files re-pickled under Python 3 have str keys. Both are accepted.
//! `data` is a numpy uint8 array of N x 3072 channel-planar rows; the labels are lists of ints.
use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;

use serde_pickle::{DeOptions, HashableValue, Value};

use super::{assemble, check_label, require, Layout, Records, IMAGE_BYTES, SIDE};
use crate::data::error::{DataError, Result};
use crate::data::image::Image;
use crate::data::Dataset;

type Dict = BTreeMap<HashableValue, Value>;

pub(super) fn open(layout: &Layout, dir: &Path) -> Result<Dataset> {
    let train = layout
        .python_train
        .iter()
        .map(|file| read_records(layout, &require(layout, "python", dir, file)?))
        .collect::<Result<Vec<_>>>()?;
    let test = read_records(layout, &require(layout, "python", dir, layout.python_test)?)?;
    let meta_path = require(layout, "python", dir, layout.python_meta)?;
    let meta = load(&meta_path)?;
    let names = (
        meta_path.clone(),
        strings(&meta_path, &meta, layout.python_names)?,
    );
    let coarse_names = match layout.python_coarse_names {
        Some(key) => Some((meta_path.clone(), strings(&meta_path, &meta, key)?)),
        None => None,
    };
    assemble(layout, train, test, names, coarse_names)
}

pub(crate) fn read_records(layout: &Layout, path: &Path) -> Result<Records> {
    let dict = load(path)?;
    let (rows, data) = uint8_rows(path, entry(path, &dict, "data")?)?;
    let labels = ints(path, &dict, layout.python_labels)?;
    if labels.len() != rows {
        return Err(DataError::corrupt(
            path,
            format!("{} images but {} labels", rows, labels.len()),
        ));
    }
    let labels = labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| check_label(path, "label", i, l, layout.classes))
        .collect::<Result<Vec<_>>>()?;
    let coarse_labels = match (layout.python_coarse_labels, layout.coarse_classes) {
        (Some(key), Some(classes)) => {
            let coarse = ints(path, &dict, key)?;
            if coarse.len() != rows {
                return Err(DataError::corrupt(
                    path,
                    format!("{rows} images but {} coarse labels", coarse.len()),
                ));
            }
            let checked = coarse.into_iter().enumerate();
            Some(
                checked
                    .map(|(i, l)| check_label(path, "coarse label", i, l, classes))
                    .collect::<Result<Vec<_>>>()?,
            )
        }
        _ => None,
    };
    let pixels = data
        .chunks_exact(IMAGE_BYTES)
        .flat_map(|planar| Image::from_planar(SIDE, SIDE, planar).pixels)
        .collect();
    Ok(Records {
        pixels,
        labels,
        coarse_labels,
    })
}

fn load(path: &Path) -> Result<Dict> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    // numpy arrays are pickled as calls to numpy functions; serde-pickle cannot call them but
    // keeps their arguments and state, from which `uint8_rows` recovers the bytes.
    let options = DeOptions::new()
        .keep_restore_state()
        .replace_unresolved_globals();
    let value = serde_pickle::value_from_reader(BufReader::new(file), options).map_err(|e| {
        DataError::corrupt(
            path,
            format!("not a readable pickle ({e}); the file is truncated or corrupt"),
        )
    })?;
    match value {
        Value::Dict(dict) => Ok(dict),
        _ => Err(DataError::corrupt(
            path,
            "the pickle holds no dict; not a CIFAR python file",
        )),
    }
}

/// Looks a key up as str and as bytes (Python 3 and Python 2 pickles).
fn entry<'a>(path: &Path, dict: &'a Dict, key: &str) -> Result<&'a Value> {
    dict.get(&HashableValue::String(key.into()))
        .or_else(|| dict.get(&HashableValue::Bytes(key.as_bytes().to_vec())))
        .ok_or_else(|| {
            DataError::corrupt(
                path,
                format!("no {key:?} entry; not the CIFAR file this name should hold"),
            )
        })
}

fn ints(path: &Path, dict: &Dict, key: &str) -> Result<Vec<i64>> {
    let bad = || DataError::corrupt(path, format!("{key:?} is not a list of integers"));
    match entry(path, dict, key)? {
        Value::List(items) | Value::Tuple(items) => items
            .iter()
            .map(|v| match v {
                Value::I64(i) => Ok(*i),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

fn strings(path: &Path, dict: &Dict, key: &str) -> Result<Vec<String>> {
    let bad = || DataError::corrupt(path, format!("{key:?} is not a list of strings"));
    match entry(path, dict, key)? {
        Value::List(items) => items
            .iter()
            .map(|v| text_bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A Python 2 `str` arrives as bytes; read with `encoding='latin1'` and re-pickled it is a
/// `str` whose code points are the bytes.
fn text_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(b) => Some(b.clone()),
        Value::String(s) => s.chars().map(|c| u8::try_from(c as u32).ok()).collect(),
        _ => None,
    }
}

/// Recovers an N x 3072 uint8 array. numpy pickles an array in one of two ways:
/// - `_reconstruct(ndarray, (0,), b'b')` then BUILD with the state
///   `(version, shape, dtype, is_fortran, raw bytes)` (protocols 0-4; the CIFAR originals);
/// - `_frombuffer(raw bytes, dtype, shape, order)` (protocol 5).
///
/// A plain bytes value of N x 3072 bytes is accepted too.
fn uint8_rows(path: &Path, value: &Value) -> Result<(usize, Vec<u8>)> {
    let (shape, raw) = match value {
        Value::Tuple(state) if state.len() == 5 => (dims(&state[1]), text_bytes(&state[4])),
        Value::Tuple(args) if args.len() == 4 => (dims(&args[2]), text_bytes(&args[0])),
        other => (None, text_bytes(other)),
    };
    let raw = raw
        .ok_or_else(|| DataError::corrupt(path, "\"data\" is not a numpy uint8 array or bytes"))?;
    let rows = raw.len() / IMAGE_BYTES;
    let expected = shape.unwrap_or(vec![rows, IMAGE_BYTES]);
    let elements: usize = expected.iter().product();
    if raw.is_empty() || raw.len() % IMAGE_BYTES != 0 || elements != raw.len() {
        return Err(DataError::corrupt(
            path,
            format!(
                "\"data\" has shape {expected:?} and {} bytes; expected N x {IMAGE_BYTES} bytes of uint8",
                raw.len()
            ),
        ));
    }
    Ok((rows, raw))
}

fn dims(value: &Value) -> Option<Vec<usize>> {
    match value {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|v| match v {
                Value::I64(i) if *i >= 0 => Some(*i as usize),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}
