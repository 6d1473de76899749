//! `--distributed`: data-parallel training on R ranks (processes, each on its own device)
//! with every rank's views as negatives of every other's.
//!
//! The usual recipe (PyTorch DDP) contrasts each rank's views only with its own, which
//! leaves a contrastive objective 1/R of its negatives. Here a step is the step of one
//! process on the whole batch, computed by R ranks, with the structure of `--micro-batch`
//! (`micro_batch.rs`): the objective reads the network only through each view's projection
//! and logits, so
//!
//! 1. each rank forwards its share of the batch (B/R images, their 2B/R views);
//! 2. the projections, logits and labels are all-gathered, and every rank computes the
//!    whole-batch objective on them and its gradient with respect to them (all ranks the
//!    same, since they have the same inputs);
//! 3. each rank runs backward from its own views' outputs, seeded with its rows of that
//!    gradient: its part of dL/dθ;
//! 4. the parts are summed over the ranks (all-reduce), which gives every rank dL/dθ of the
//!    single-process step, and AdamW runs on every rank in lockstep.
//!
//! The batch: every rank draws the global batch's images as one process would (same
//! shuffle), and loads only its share: rank r takes images r·B/R.. of the batch. Its views
//! are their first views, then their second views, which sit at rows r·B/R.. and B + r·B/R..
//! of the single process's batch; drop path draws each view's mask by that place
//! ([`clce_engine::SamplePlace`]), so the masks are the single process's too.
//!
//! BatchNorm normalises each rank's views with the rank's own statistics (as DDP does
//! without SyncBatchNorm), and rank 0's running statistics are the ones saved.
//!
//! Transport: [`Collective`], with MPI behind the `distributed` feature (`mpi.rs`) and threads
//! in one process (`threads.rs`, which the tests use).
mod threads;
pub use threads::ThreadGroup;

#[cfg(feature = "distributed")]
pub mod mpi;

use clce_engine::gpu::AdapterSummary;
use clce_engine::{DType, SamplePlace, Tensor};

use super::error::{Result, TrainError};
use super::micro_batch::{self, OutputGradients};
use super::network::Output;
use super::trainer::StepCore;

/// What the ranks exchange. Every call is collective: all ranks make the same calls in the
/// same order.
pub trait Collective {
    fn rank(&self) -> usize;
    fn ranks(&self) -> usize;
    /// Every rank's `local` (the same length on all ranks), concatenated in rank order.
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>>;
    /// The element-wise sum over the ranks, in place on every rank.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()>;
    /// Rank 0's `data`, in place on every rank.
    fn broadcast(&self, data: &mut [f32]) -> Result<()>;
}

/// The adapter (`gpu:N`) of the rank with local rank `local_rank` on its machine: the
/// machine's adapters of the best kind and API (the list is best first, so its GPUs under
/// Vulkan, not the same GPUs again under GL, nor a software adapter), taken in turn.
pub fn local_adapter(adapters: &[AdapterSummary], local_rank: usize) -> Option<usize> {
    let best = adapters.first()?;
    let peers: Vec<usize> = adapters
        .iter()
        .filter(|a| a.device_type == best.device_type && a.backend == best.backend)
        .map(|a| a.index)
        .collect();
    Some(peers[local_rank % peers.len()])
}

/// This process's rank among the ranks of its machine, as the launcher says (Open MPI,
/// MPICH, Slurm), or 0.
pub fn local_rank() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
    .unwrap_or(0)
}

/// Rank 0's `text` on every rank (the run directory that rank 0 named after its clock).
pub fn broadcast_text(collective: &dyn Collective, text: &str) -> Result<String> {
    let mut len = [text.len() as f32];
    collective.broadcast(&mut len)?;
    // Bytes as floats: exact, and the one broadcast the transport needs.
    let mut bytes: Vec<f32> = text.bytes().map(f32::from).collect();
    bytes.resize(len[0] as usize, 0.0);
    collective.broadcast(&mut bytes)?;
    String::from_utf8(bytes.iter().map(|&b| b as u8).collect()).map_err(|e| {
        TrainError::Invalid(format!(
            "rank 0 sent a run directory that is not UTF-8: {e}"
        ))
    })
}

/// This process's part in a data-parallel run.
#[derive(Clone, Copy)]
pub struct Distributed<'a> {
    pub collective: &'a dyn Collective,
    /// The global batch, in images (`--batch-size`).
    pub batch_images: usize,
}

impl<'a> Distributed<'a> {
    /// Checks that the batch splits evenly over the ranks.
    pub fn new(collective: &'a dyn Collective, batch_images: usize) -> Result<Distributed<'a>> {
        let ranks = collective.ranks();
        if batch_images % ranks != 0 || batch_images < ranks {
            return Err(TrainError::Invalid(format!(
                "--batch-size {batch_images} does not split evenly over {ranks} ranks: use a \
                 multiple of {ranks} (each rank takes --batch-size / ranks images)"
            )));
        }
        Ok(Distributed {
            collective,
            batch_images,
        })
    }

    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    /// Whether this rank writes the run directory and shows progress (rank 0).
    pub fn is_writer(&self) -> bool {
        self.rank() == 0
    }

    /// Images of the global batch on each rank.
    pub fn share(&self) -> usize {
        self.batch_images / self.collective.ranks()
    }

    /// This rank's images within each global batch.
    pub fn images(&self) -> std::ops::Range<usize> {
        let b = self.share();
        self.rank() * b..(self.rank() + 1) * b
    }

    /// Where this rank's views sit in the single process's batch of 2B views.
    pub fn place(&self) -> SamplePlace {
        let b = self.share();
        SamplePlace {
            first: self.rank() * b,
            split: b,
            second: self.batch_images + self.rank() * b,
        }
    }

    /// For every row of the single process's batch, its row in the all-gathered rows (rank
    /// by rank, each rank's views in its order).
    fn gathered_row_of_view(&self) -> Vec<usize> {
        let (b, images) = (self.share(), self.batch_images);
        (0..2 * images)
            .map(|view| {
                let (copy, image) = (view / images, view % images);
                let (rank, i) = (image / b, image % b);
                rank * 2 * b + copy * b + i
            })
            .collect()
    }

    /// This rank's views as rows of the single process's batch.
    fn my_views(&self) -> Vec<usize> {
        let mine = self.images();
        mine.clone()
            .chain(mine.map(|i| i + self.batch_images))
            .collect()
    }

    /// Every rank's projections and logits, and the labels of all views, in the single
    /// process's row order. The outputs are detached; `pooled` is not exchanged (objectives
    /// read only the projections and logits) and comes back empty.
    fn gather_outputs(&self, local: &Output, labels: &[usize]) -> Result<(Output, Vec<usize>)> {
        let (p, c) = (local.projection.dims()[1], local.logits.dims()[1]);
        let views = labels.len();
        let mut payload = local.projection.to_dtype(DType::F32)?.to_vec_f32()?;
        payload.extend(local.logits.to_dtype(DType::F32)?.to_vec_f32()?);
        payload.extend(labels.iter().map(|&l| l as f32));
        let per_rank = payload.len();
        let all = self.collective.all_gather(&payload)?;
        let ranks = self.collective.ranks();
        let order = self.gathered_row_of_view();
        let field = |offset: usize, width: usize| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&g| {
                    let (rank, row) = (g / views, g % views);
                    let at = rank * per_rank + offset + row * width;
                    all[at..at + width].iter().copied()
                })
                .collect()
        };
        let device = local.projection.device();
        let rows = ranks * views;
        let dtype = local.projection.dtype();
        let tensor = |data: Vec<f32>, width: usize| -> Result<Tensor> {
            Ok(Tensor::from_vec(data, vec![rows, width], device)?.to_dtype(dtype)?)
        };
        let output = Output {
            projection: tensor(field(0, p), p)?,
            logits: tensor(field(views * p, c), c)?,
            // Never read: kept off the device, where an empty buffer is an error.
            pooled: Tensor::from_vec(Vec::<f32>::new(), vec![rows, 0], &clce_engine::Device::Cpu)?,
        };
        let labels = field(views * (p + c), 1)
            .into_iter()
            .map(|l| l as usize)
            .collect();
        Ok((output, labels))
    }

    /// Sums every parameter's gradient over the ranks (a parameter without a gradient has
    /// none on any rank: the ranks run the same graph).
    pub fn all_reduce_gradients(&self, params: &[Tensor]) -> Result<()> {
        let grads: Vec<Tensor> = params.iter().filter_map(Tensor::grad).collect();
        // Bounded pieces: the whole model's gradients (350 MB for BEiT-base) are never
        // copied at once.
        const PIECE: usize = 1 << 24;
        let mut start = 0;
        while start < grads.len() {
            let mut end = start;
            let mut len = 0;
            while end < grads.len() && (end == start || len + grads[end].numel() <= PIECE) {
                len += grads[end].numel();
                end += 1;
            }
            // One readback and one upload per piece, not one per tensor (on a GPU).
            let piece = &grads[start..end];
            let flat: Vec<Tensor> = piece
                .iter()
                .map(|g| g.to_dtype(DType::F32)?.reshape([g.numel()]))
                .collect::<clce_engine::Result<_>>()?;
            let mut values = Tensor::concat(&flat, 0)?.to_vec_f32()?;
            self.collective.all_reduce_sum(&mut values)?;
            let summed = Tensor::from_vec(values, vec![len], piece[0].device())?;
            let mut at = 0;
            for g in piece {
                let n = g.numel();
                let part = summed.narrow(0, at, n)?.reshape(g.dims().to_vec())?;
                g.assign(&part.to_dtype(g.dtype())?)?;
                at += n;
            }
            start = end;
        }
        Ok(())
    }

    /// Makes every rank's `params` rank 0's, so that the ranks start from the same weights
    /// whatever each loaded.
    pub fn broadcast_parameters(&self, params: &[Tensor]) -> Result<()> {
        for p in params {
            let mut values = p.to_dtype(DType::F32)?.to_vec_f32()?;
            self.collective.broadcast(&mut values)?;
            let from_0 = Tensor::from_vec(values, p.dims().to_vec(), p.device())?;
            p.assign(&from_0.to_dtype(p.dtype())?)?;
        }
        Ok(())
    }

    /// This rank's part of the whole batch's step: the loss (the same on every rank), the
    /// logits of all views and their labels (single-process order); this rank's part of
    /// dL/dθ accumulated into the parameters' gradients ([`Self::all_reduce_gradients`]
    /// completes it), times `loss_scale` if given. `x` and `labels` are this rank's views;
    /// `step.mode` places them.
    pub fn forward_backward(
        &self,
        step: &StepCore,
        x: &Tensor,
        labels: &[usize],
        loss_scale: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor, Vec<usize>)> {
        // 1. This rank's outputs: recorded in one piece, or with --micro-batch unrecorded
        //    chunks now and recorded ones in pass 3.
        let (local, pass) = match step.micro_batch {
            Some(k) => {
                let (cached, moved) = micro_batch::unrecorded_outputs(step, k, x)?;
                (cached, Pass3::Chunks(k, moved))
            }
            None => {
                let out = step.recorded_forward(x, step.mode)?;
                let detached = Output {
                    pooled: out.pooled.detach(),
                    logits: out.logits.detach(),
                    projection: out.projection.detach(),
                };
                (detached, Pass3::Recorded(out))
            }
        };
        // 2. Every rank's, and the whole batch's objective on them.
        let (all, all_labels) = self.gather_outputs(&local, labels)?;
        let grads = micro_batch::objective_gradients(step, &all, &all_labels, loss_scale)?;
        // 3. Backward from this rank's views, seeded with their rows.
        let mine = self.my_views();
        let rows = |g: &Option<Tensor>| g.as_ref().map(|g| g.index_select(0, &mine)).transpose();
        let my_grads = OutputGradients {
            loss: grads.loss.clone(),
            projection: rows(&grads.projection)?,
            logits: rows(&grads.logits)?,
        };
        match pass {
            Pass3::Recorded(out) => micro_batch::seed_backward(&out, &my_grads, 0, labels.len())?,
            Pass3::Chunks(k, moved) => {
                micro_batch::recorded_backward(step, k, x, &my_grads)?;
                moved.restore()?;
            }
        }
        Ok((grads.loss, all.logits, all_labels))
    }
}

/// How this rank's backward runs once the seeds are known.
enum Pass3 {
    /// From the outputs of the one recorded forward.
    Recorded(Output),
    /// `--micro-batch K`: chunk by chunk, forward again with a tape; then the running
    /// statistics go back to the step's update.
    Chunks(usize, micro_batch::Moved),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(index: usize, device_type: &str, backend: &str) -> AdapterSummary {
        AdapterSummary {
            index,
            name: format!("adapter {index}"),
            backend: backend.into(),
            device_type: device_type.into(),
            driver: String::new(),
            is_software: device_type == "Cpu",
            max_buffer_size: 0,
            max_storage_binding_size: 0,
            max_workgroup_storage: 0,
            shader_f16: true,
            subgroups: false,
            timestamp_query: false,
        }
    }

    #[test]
    fn ranks_of_a_machine_take_its_best_gpus_in_turn() {
        let two_gpus = [
            adapter(0, "DiscreteGpu", "vulkan"),
            adapter(1, "DiscreteGpu", "vulkan"),
            adapter(2, "DiscreteGpu", "gl"),
            adapter(3, "Cpu", "vulkan"),
        ];
        let picked: Vec<_> = (0..5).map(|r| local_adapter(&two_gpus, r)).collect();
        assert_eq!(picked, [Some(0), Some(1), Some(0), Some(1), Some(0)]);
        let software_only = [adapter(0, "Cpu", "vulkan"), adapter(1, "Cpu", "gl")];
        assert_eq!(local_adapter(&software_only, 1), Some(0));
        assert_eq!(local_adapter(&[], 0), None);
    }

    #[test]
    fn gathered_rows_follow_the_single_process_order() {
        let group = ThreadGroup::new(3);
        let d = Distributed::new(&group[1], 6).unwrap();
        // Rank r holds images 2r, 2r + 1: gathered rows 4r.. are their first views, then
        // their second views.
        assert_eq!(
            d.gathered_row_of_view(),
            [0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]
        );
        assert_eq!(d.my_views(), [2, 3, 8, 9]);
        assert_eq!(
            d.place(),
            SamplePlace {
                first: 2,
                split: 2,
                second: 8
            }
        );
    }
}
