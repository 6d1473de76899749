//! Shared by the integration tests: where the reference fixtures are, scratch directories,
//! and checkpoint files made from the fixtures' name lists.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::PathBuf;

use clce_models::checkpoint::{Checkpoint, FileDType, FileTensor, Values};

pub use clce_engine::fixtures::dir as fixtures_dir;

pub fn model_fixture(name: &str) -> PathBuf {
    fixtures_dir().join("models").join(name)
}

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "clce-models-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `*.names.json` list: tensor name -> (dtype, shape), from entries like "F32 [1, 1, 768]".
pub fn names_list(file: &str) -> BTreeMap<String, (FileDType, Vec<usize>)> {
    let text = std::fs::read_to_string(model_fixture(file)).unwrap();
    let raw: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
    raw.into_iter()
        .map(|(name, spec)| {
            let (dtype, shape) = spec.split_once(' ').unwrap();
            let dtype = match dtype {
                "F32" => FileDType::F32,
                "I64" => FileDType::I64,
                other => panic!("unexpected dtype {other} in {file}"),
            };
            let shape: Vec<usize> = serde_json::from_str(shape).unwrap();
            (name, (dtype, shape))
        })
        .collect()
}

/// A checkpoint with a list's names and shapes: floats stored as `float_dtype` with
/// pseudo-random values, integers as the list says (index tables must hold the true
/// relative position index, which loading checks; counters are 0).
pub fn checkpoint_from_list(
    list: &BTreeMap<String, (FileDType, Vec<usize>)>,
    float_dtype: FileDType,
) -> Checkpoint {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let tensors = list
        .iter()
        .map(|(name, (dtype, shape))| {
            let n: usize = shape.iter().product();
            let t = if dtype.is_float() {
                FileTensor {
                    dtype: float_dtype,
                    shape: shape.clone(),
                    values: Values::F32((0..n).map(|_| next()).collect()),
                }
            } else if name.ends_with("relative_position_index") {
                let grid = ((shape[0] - 1) as f64).sqrt() as usize;
                let index = clce_models::beit::relative_position_index(grid);
                FileTensor::i64(shape.clone(), index.iter().map(|&v| v as i64).collect())
            } else {
                FileTensor::i64(shape.clone(), vec![0; n])
            };
            (name.clone(), t)
        })
        .collect();
    Checkpoint {
        tensors,
        metadata: BTreeMap::new(),
    }
}
