//! Saving and resuming a run: `last.safetensors` (the model, timm naming, written by the
//! model itself, which timm loads strictly) with our projection head beside it in
//! `last.proj_head.safetensors`, `best.safetensors` (and `best.proj_head.safetensors`), and
//! `train_state.safetensors` (AdamW's moments and step counts as tensors, plus where the run
//! stands as JSON in the file's metadata).
//!
//! Nothing random needs saving: the data order and augmentation are keyed by (seed, epoch,
//! image) and drop path by (seed, step), so a resumed run draws exactly what the uninterrupted
//! run would have drawn.
//!
//! The two files of a save are written under temporary names and renamed, model first. The
//! state records a fingerprint of the model file it belongs to, so the (tiny) window between
//! the two renames cannot silently pair a model with another step's optimiser state.
use std::collections::HashMap;
use std::fs;
use std::path::Path;

use clce_engine::optim::Optimizer;
use clce_engine::{CpuStorage, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::error::{Result, TrainError};
use super::network::Network;
use super::run_dir::{replace_with, temporary_name, RunDir};
use clce_models::model::proj_head_path;

/// Metadata key of the JSON-encoded [`TrainState`].
const STATE_KEY: &str = "clce_train_state";

/// Where a run stands: enough, with the model and the optimiser state, to continue it as if
/// it had never stopped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch in progress, from 0, and how many of its batches are done.
    pub epoch: usize,
    pub batch: usize,
    /// Optimiser steps done in the whole run.
    pub step: usize,
    /// The best test top-1 so far and its epoch (from 1).
    pub best: Option<(f64, usize)>,
    /// Running sums of the epoch in progress, so that its summary covers all its steps.
    pub epoch_loss_sum: f64,
    pub epoch_correct: usize,
    pub epoch_views: usize,
    pub epoch_seconds: f64,
    /// Fingerprint of the `last.safetensors` (and its projection head) saved with this state.
    pub model_fingerprint: u64,
    /// `--precision f16`'s loss scale for the next step, the good steps since it last changed
    /// and the steps skipped so far (None and 0 without loss scaling, and in older runs).
    #[serde(default)]
    pub loss_scale: Option<f64>,
    #[serde(default)]
    pub loss_scale_good_steps: usize,
    #[serde(default)]
    pub skipped_steps: usize,
}

/// Saves model and optimiser so that `--resume` continues from `state`.
pub fn save(
    run: &RunDir,
    net: &dyn Network,
    optimizer: &dyn Optimizer,
    state: &TrainState,
) -> Result<()> {
    let fingerprint = save_model(net, &run.last_path())?;
    let state = TrainState {
        model_fingerprint: fingerprint,
        ..state.clone()
    };
    let bytes = encode(&optimizer.state_dict()?, &state)?;
    replace_with(&run.state_path(), |tmp| {
        fs::write(tmp, &bytes).map_err(|e| TrainError::io(tmp, e))
    })
}

/// Saves the model as the run's best so far.
pub fn save_best(run: &RunDir, net: &dyn Network) -> Result<()> {
    save_model(net, &run.best_path()).map(drop)
}

/// Writes the model to `path` and its projection head to `proj_head_path(path)`, each
/// replaced atomically, the head first; removes a head left from an earlier save when the
/// network has none. Returns the pair's fingerprint.
fn save_model(net: &dyn Network, path: &Path) -> Result<u64> {
    let head = proj_head_path(path);
    let head_tmp = temporary_name(&head);
    let mut fingerprint = 0;
    replace_with(path, |tmp| {
        let _ = fs::remove_file(&head_tmp);
        let written = net.save(tmp, &head_tmp).and_then(|()| {
            fingerprint = fingerprint_of(tmp)?;
            if head_tmp.exists() {
                fingerprint ^= fingerprint_of(&head_tmp)?.rotate_left(1);
                // The head is already written under replace_with's temporary name for it.
                replace_with(&head, |_| Ok(()))
            } else if head.exists() {
                fs::remove_file(&head).map_err(|e| TrainError::io(&head, e))
            } else {
                Ok(())
            }
        });
        if written.is_err() {
            let _ = fs::remove_file(&head_tmp);
        }
        written
    })?;
    Ok(fingerprint)
}

/// The fingerprint `save_model` returned for the model at `path` and its head.
fn model_fingerprint(path: &Path) -> Result<u64> {
    let head = proj_head_path(path);
    let mut fingerprint = fingerprint_of(path)?;
    if head.exists() {
        fingerprint ^= fingerprint_of(&head)?.rotate_left(1);
    }
    Ok(fingerprint)
}

/// Reads the state saved with the run's `last.safetensors`: where the run stands and the
/// optimiser's tensors (for `Optimizer::load_state_dict`).
pub fn load(run: &RunDir) -> Result<(TrainState, Vec<(String, Tensor)>)> {
    let path = run.state_path();
    if !path.exists() || !run.last_path().exists() {
        return Err(TrainError::Invalid(format!(
            "{} has no checkpoint to resume from: the run stopped before its first \
             (last.safetensors and train_state.safetensors are written at the end of every \
             epoch and on Ctrl-C). Start it again with --out {0}: a folder without a \
             checkpoint is reused",
            run.root().display()
        )));
    }
    let bytes = fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    let (state, tensors) = decode(&bytes).map_err(|msg| TrainError::corrupt(&path, msg))?;
    if model_fingerprint(&run.last_path())? != state.model_fingerprint {
        return Err(TrainError::corrupt(
            run.last_path(),
            "does not belong to train_state.safetensors (the run stopped while saving); \
             the run cannot be resumed exactly",
        ));
    }
    Ok((state, tensors))
}

fn encode(tensors: &[(String, Tensor)], state: &TrainState) -> Result<Vec<u8>> {
    let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, bytes) = match t.to_cpu_storage()? {
                CpuStorage::F32(v) => {
                    (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                CpuStorage::F64(v) => {
                    (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                CpuStorage::F16(v) => {
                    (Dtype::F16, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
            };
            Ok((name.clone(), dtype, t.dims().to_vec(), bytes))
        })
        .collect::<Result<_>>()?;
    let views = raw
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Invalid(format!("optimiser state: {e}")))?;
    let metadata = HashMap::from([(
        STATE_KEY.to_string(),
        serde_json::to_string(state).expect("the train state serialises"),
    )]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| TrainError::Invalid(format!("optimiser state: {e}")))
}

fn decode(bytes: &[u8]) -> std::result::Result<(TrainState, Vec<(String, Tensor)>), String> {
    let not_ours = |e: &dyn std::fmt::Display| format!("not a clce training state: {e}");
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| not_ours(&e))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| not_ours(&format!("no {STATE_KEY} entry")))?;
    let state: TrainState = serde_json::from_str(json).map_err(|e| not_ours(&e))?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| not_ours(&e))?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let shape = view.shape().to_vec();
        let t = match view.dtype() {
            Dtype::F32 => Tensor::from_vec(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>(),
                shape,
                &Device::Cpu,
            ),
            Dtype::F64 => Tensor::from_vec(
                data.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>(),
                shape,
                &Device::Cpu,
            ),
            other => return Err(format!("tensor {name} has dtype {other:?}")),
        }
        .map_err(|e| not_ours(&e))?;
        tensors.push((name, t));
    }
    Ok((state, tensors))
}

/// A 64-bit fingerprint of a file's bytes (not cryptographic: it tells files apart).
fn fingerprint_of(path: &Path) -> Result<u64> {
    let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w.try_into().unwrap()))
            .wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    for &b in words.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clce_engine::DType;

    /// A resumed run must carry on from the exact sums it stopped at (its epoch loss is then
    /// the uninterrupted run's to the bit): many f64 values through the state's JSON.
    #[test]
    fn the_states_floats_come_back_to_the_bit() {
        let mut bits = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            // xorshift over the finite f64s, spread across exponents.
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let value = f64::from_bits(bits & !(0x7ffu64 << 52) | ((bits >> 52) % 2046 + 1) << 52);
            let state = TrainState {
                epoch_loss_sum: value,
                epoch_seconds: value.abs(),
                ..TrainState::default()
            };
            let back: TrainState =
                serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
            assert_eq!(back.epoch_loss_sum.to_bits(), value.to_bits(), "{value:e}");
        }
    }

    #[test]
    fn state_and_tensors_round_trip() {
        let state = TrainState {
            epoch: 2,
            batch: 7,
            step: 47,
            best: Some((0.8125, 2)),
            epoch_loss_sum: 0.1 + 0.2,
            epoch_correct: 11,
            epoch_views: 28,
            epoch_seconds: 1.25,
            model_fingerprint: u64::MAX - 3,
            loss_scale: Some(32768.0),
            loss_scale_good_steps: 17,
            skipped_steps: 3,
        };
        let moments = Tensor::from_vec(vec![1.5f32, -2.25, 3e-9], vec![3], &Device::Cpu).unwrap();
        let steps = Tensor::from_vec(vec![47.0f64], vec![], &Device::Cpu).unwrap();
        let tensors = vec![
            ("adamw.0.exp_avg".into(), moments),
            ("adamw.0.step".into(), steps),
        ];
        let (back, loaded) = decode(&encode(&tensors, &state).unwrap()).unwrap();
        assert_eq!(back, state);
        let mut loaded: Vec<(String, Vec<f64>, Vec<usize>, DType)> = loaded
            .into_iter()
            .map(|(n, t)| (n, t.to_vec_f64().unwrap(), t.dims().to_vec(), t.dtype()))
            .collect();
        loaded.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(loaded[0].0, "adamw.0.exp_avg");
        assert_eq!(loaded[0].1, [1.5, -2.25, 3e-9f32 as f64]);
        assert_eq!(loaded[0].3, DType::F32);
        assert_eq!(
            (loaded[1].1.as_slice(), loaded[1].2.len()),
            ([47.0].as_slice(), 0)
        );
        assert_eq!(loaded[1].3, DType::F64);
    }

    #[test]
    fn other_files_are_not_mistaken_for_a_state() {
        assert!(decode(b"not a safetensors file").is_err());
        let plain = safetensors::serialize(Vec::<(&str, TensorView)>::new(), None).unwrap();
        assert!(decode(&plain).unwrap_err().contains(STATE_KEY));
    }

    #[test]
    fn fingerprints_tell_files_apart() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"0123456789abcdef-x").unwrap();
        fs::write(&b, b"0123456789abcdef-y").unwrap();
        assert_ne!(fingerprint_of(&a).unwrap(), fingerprint_of(&b).unwrap());
        fs::write(&b, b"0123456789abcdef-x").unwrap();
        assert_eq!(fingerprint_of(&a).unwrap(), fingerprint_of(&b).unwrap());
    }
}
