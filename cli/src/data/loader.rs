//! Batches for one pass over a split, prepared on a background thread while the caller trains
//! on the previous one. Within a batch the views are computed in parallel on rayon's workers.
//!
//! A training batch of B images holds M = 2B views: rows 0..B-1 are the first views of the B
//! images, rows B..2B-1 their second views, so rows i and i + B show the same image
//! (METHOD.md, step 1). Labels are repeated accordingly. Images are shuffled per epoch and a
//! last incomplete batch is dropped. Evaluation batches hold one view per image, in order,
//! the last one possibly smaller.
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use clce_engine::{Device, Tensor};
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::augment::{self, AugmentConfig, Normalization, ViewKey};
use super::error::{DataError, Result};
use super::image::Image;
use super::rng::{stream, Purpose};
use super::split::Split;

/// How many finished batches may wait for the consumer; one more is being prepared meanwhile.
const PREFETCH: usize = 1;

/// One batch of views, ready for the model.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `shape[0] * 3 * H * W` floats, NCHW.
    pub images: Vec<f32>,
    /// `[M, 3, H, W]`.
    pub shape: [usize; 4],
    /// Class of every view.
    pub labels: Vec<usize>,
    /// Index in the split of the image every view was made from.
    pub indices: Vec<usize>,
}

impl Batch {
    /// A copy of the images as an `[M, 3, H, W]` f32 tensor on `device` (to move them instead:
    /// `Tensor::from_vec(batch.images, batch.shape.to_vec(), device)`).
    pub fn to_tensor(&self, device: &Device) -> clce_engine::Result<Tensor> {
        Tensor::from_vec(self.images.clone(), self.shape.to_vec(), device)
    }
}

/// What kind of views a loader makes.
#[derive(Clone, Copy)]
enum Views {
    /// Two augmented views per image.
    Train {
        cfg: AugmentConfig,
        seed: u64,
        epoch: u64,
    },
    /// One plain view per image.
    Eval { size: usize, norm: Normalization },
}

/// An iterator over the batches of one pass. Dropping it early stops the background thread.
pub struct Loader {
    receiver: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Loader {
    /// Epoch `epoch` of training on `split`: shuffled by (seed, epoch), `batch_size` images per
    /// batch (2 * batch_size views), incomplete last batch dropped.
    pub fn train(
        split: Arc<Split>,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        cfg: &AugmentConfig,
    ) -> Result<Loader> {
        Self::train_from(split, batch_size, seed, epoch, cfg, 0)
    }

    /// The batches of [`Loader::train`] from batch `first_batch` on: a resumed run continues an
    /// epoch with exactly the batches the uninterrupted run would have seen, without
    /// preparing the ones already done.
    pub fn train_from(
        split: Arc<Split>,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        cfg: &AugmentConfig,
        first_batch: usize,
    ) -> Result<Loader> {
        Self::train_share(
            split,
            batch_size,
            seed,
            epoch,
            cfg,
            first_batch,
            0..batch_size,
        )
    }

    /// The batches of [`Loader::train_from`], each cut down to its images `share` (a
    /// data-parallel rank's): the same images, with the same views, that the whole batch
    /// holds there, so R ranks together see what one process sees.
    pub fn train_share(
        split: Arc<Split>,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        cfg: &AugmentConfig,
        first_batch: usize,
        share: std::ops::Range<usize>,
    ) -> Result<Loader> {
        cfg.validate()?;
        if batch_size == 0 || batch_size > split.len() {
            return Err(DataError::Invalid(format!(
                "batch size {batch_size} does not fit a training split of {} images \
                 (incomplete batches are dropped, so at least one full batch is needed)",
                split.len()
            )));
        }
        if share.is_empty() || share.end > batch_size {
            return Err(DataError::Invalid(format!(
                "images {share:?} are not a share of a batch of {batch_size}"
            )));
        }
        let mut order: Vec<usize> = (0..split.len()).collect();
        order.shuffle(&mut stream(seed, Purpose::Shuffle, &[epoch]));
        let batches = order
            .chunks_exact(batch_size)
            .skip(first_batch)
            .map(|batch| batch[share.clone()].to_vec())
            .collect();
        let views = Views::Train {
            cfg: *cfg,
            seed,
            epoch,
        };
        Ok(Loader::spawn(split, batches, views))
    }

    /// The whole of `split` in order, `batch_size` images per batch, resized to `size` and
    /// normalised with `norm`.
    pub fn eval(
        split: Arc<Split>,
        batch_size: usize,
        size: usize,
        norm: &Normalization,
    ) -> Result<Loader> {
        if batch_size == 0 || size == 0 {
            return Err(DataError::Invalid(
                "evaluation needs a batch size and an input size above 0".into(),
            ));
        }
        let order: Vec<usize> = (0..split.len()).collect();
        let batches = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
        Ok(Loader::spawn(
            split,
            batches,
            Views::Eval { size, norm: *norm },
        ))
    }

    fn spawn(split: Arc<Split>, batches: Vec<Vec<usize>>, views: Views) -> Loader {
        let remaining = batches.len();
        let (sender, receiver) = sync_channel(PREFETCH);
        let worker = std::thread::spawn(move || {
            for images in batches {
                let batch = make_batch(&split, &images, views);
                let failed = batch.is_err();
                // A closed channel means the consumer stopped early: nothing left to do.
                if sender.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        Loader {
            receiver: Some(receiver),
            worker: Some(worker),
            remaining,
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        let received = self.receiver.as_ref()?.recv();
        match received {
            Ok(Ok(batch)) => {
                self.remaining -= 1;
                Some(Ok(batch))
            }
            // After an error the worker has stopped: report it once, then end.
            Ok(Err(e)) => {
                self.remaining = 0;
                Some(Err(e))
            }
            Err(_) => {
                self.remaining = 0;
                Some(Err(DataError::Invalid(
                    "the batch-preparing thread stopped unexpectedly".into(),
                )))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Loader {}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel first lets a worker blocked on `send` finish.
        self.receiver.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Decodes the batch's images, then computes all its views in parallel.
fn make_batch(split: &Split, images: &[usize], views: Views) -> Result<Batch> {
    let decoded: Vec<Image> = images
        .par_iter()
        .map(|&i| split.image(i))
        .collect::<Result<_>>()?;
    let (size, copies) = match views {
        Views::Train { cfg, .. } => (cfg.size, 2),
        Views::Eval { size, .. } => (size, 1),
    };
    let b = images.len();
    let m = copies * b;
    let view_len = 3 * size * size;
    let mut data = vec![0.0f32; m * view_len];
    data.par_chunks_mut(view_len)
        .enumerate()
        .for_each(|(row, out)| {
            let slot = row % b;
            let image = &decoded[slot];
            match views {
                Views::Train { cfg, seed, epoch } => {
                    let key = ViewKey {
                        seed,
                        epoch,
                        index: images[slot],
                        view: row / b,
                    };
                    augment::train_view_into(image, &cfg, key, out);
                }
                Views::Eval { size, norm } => augment::eval_view_into(image, size, &norm, out),
            }
        });
    let indices: Vec<usize> = (0..m).map(|row| images[row % b]).collect();
    Ok(Batch {
        images: data,
        shape: [m, 3, size, size],
        labels: indices.iter().map(|&i| split.labels()[i]).collect(),
        indices,
    })
}
