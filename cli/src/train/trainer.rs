//! The fine-tuning loop (METHOD.md, "Pipeline of one training step" and "Training recipe").
//!
//! One step: a batch of B images as 2B augmented views -> forward in train mode -> the
//! objective -> backward -> gradient norm (clipped with `--clip-grad`) -> AdamW at the
//! scheduled lr (warm-up, then cosine). A step reads nothing back from a GPU: the step guard
//! (`clce_engine::optim::StepGuard`) computes the norm and the clip factor on the device and
//! makes AdamW skip every update from the first step whose loss or gradient norm is not
//! finite. With `--precision f16` the guard also keeps the dynamic loss scale on the device
//! (the loss is multiplied by it before backward; an overflowing step is skipped and halves
//! it), and the checkpoint keeps where it stands. Every `log_every` steps (and before anything is saved) the losses, logits and the
//! guard of the steps since are read back in one piece: a bad step then stops the run,
//! naming it, with the weights from before it. Every `log_every` steps a metrics line; after every epoch an evaluation on the test split (with `--fewshot-eval`
//! also few-shot episodes on a few-shot split), `best.safetensors` when the test top-1
//! improved, and a checkpoint. Ctrl-C (or `--stop-after-steps`) ends the step in progress,
//! saves and returns; `--resume` continues exactly where it left off.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clce_engine::autograd::half_saved::save_in_f16;
use clce_engine::optim::{
    AdamW, AdamWConfig, GuardReport, LossScaleState, Optimizer, StepGuard, WarmupCosine,
};
use clce_engine::{DType, Device, Tensor};
use serde_json::json;

use super::checkpoint::{self, TrainState};
use super::config::{Precision, TrainConfig};
use super::distributed::Distributed;
use super::error::{Result, TrainError};
use super::eval::{evaluate, per_class_json, per_class_rows, EvalViews, Tally};
use super::fewshot::{FewShotProbe, FewShotScores};
use super::gradcheck::{self, GradcheckOptions, Side};
use super::metrics::{EpochRecord, MetricsLog, Record, StepRecord};
use super::micro_batch;
use super::network::{GroupOptions, Mode, Network, Output};
use super::progress::Reporter;
use super::run_dir::{write_atomic, RunDir};
use crate::data::{AugmentConfig, Batch, Dataset, Loader};

/// The training objective: a scalar from the model's outputs and the views' labels. It may
/// read the projections and logits only: a `--distributed` step exchanges just those, and
/// hands it an empty `pooled`.
pub type Objective<'a> = &'a dyn Fn(&Output, &[usize]) -> Result<Tensor>;

/// Everything a run trains with.
pub struct Session<'a> {
    pub net: &'a dyn Network,
    pub cfg: &'a TrainConfig,
    pub data: &'a Dataset,
    /// The training views' augmentation (its size and normalisation are the model's).
    pub augment: AugmentConfig,
    pub device: Device,
    pub objective: Objective<'a>,
    pub run: &'a RunDir,
    /// Set by Ctrl-C: finish the step, save, return.
    pub stop: &'a AtomicBool,
    /// Behave as if Ctrl-C came right after this step (deterministic interruptions for tests).
    pub stop_after_steps: Option<usize>,
    /// `--fewshot-eval`: few-shot episodes after every epoch's test evaluation.
    pub fewshot: Option<&'a FewShotProbe>,
    /// `--distributed`: this process is one rank of several. Rank 0 alone evaluates and
    /// writes the run directory; every rank trains on its share of each batch.
    pub distributed: Option<Distributed<'a>>,
}

impl Session<'_> {
    /// Whether this process writes the run directory (and evaluates): rank 0, or the only one.
    fn writes(&self) -> bool {
        self.distributed.is_none_or(|d| d.is_writer())
    }
}

/// How a run ended (errors aside).
#[derive(Debug)]
pub enum Outcome {
    /// Every epoch is done; the final evaluation of the last model.
    Finished {
        tally: Tally,
        best: Option<(f64, usize)>,
    },
    /// Stopped on request after `step` steps, with a checkpoint to resume from.
    Stopped { step: usize },
}

/// Trains from scratch (`resume` None) or from a saved state and optimiser tensors.
pub fn train(
    s: &Session,
    reporter: &mut Reporter,
    resume: Option<(TrainState, Vec<(String, Tensor)>)>,
) -> Result<Outcome> {
    let cfg = s.cfg;
    let groups = s.net.param_groups(&GroupOptions {
        weight_decay: cfg.weight_decay,
        layer_decay: cfg.layer_decay,
        heads_only: cfg.freeze_backbone,
    });
    if groups.iter().all(|g| g.params.is_empty()) {
        return Err(TrainError::Invalid("the model has nothing to train".into()));
    }
    let mut opt = AdamW::new(groups, AdamWConfig::default())?;
    let resumed = resume.is_some();
    let (mut state, mut metrics) = match resume {
        Some((state, tensors)) => {
            opt.load_state_dict(&tensors)?;
            let log = match s.writes() {
                true => Some(MetricsLog::resume(
                    &s.run.metrics_path(),
                    state.epoch + 1,
                    state.step,
                )?),
                false => None,
            };
            (state, log)
        }
        None => (
            TrainState::default(),
            match s.writes() {
                true => Some(MetricsLog::create(&s.run.metrics_path())?),
                false => None,
            },
        ),
    };
    if let Some(d) = &s.distributed {
        // Whatever each rank loaded, all start from rank 0's weights.
        d.broadcast_parameters(&opt.params())?;
    }
    let schedule = WarmupCosine {
        base_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps(),
        total_steps: cfg.total_steps(),
        min_lr: cfg.min_lr,
    };
    let trained: Vec<Tensor> = opt.params();
    let resumed_at = state.loss_scale.map(|scale| LossScaleState {
        scale,
        good_steps: state.loss_scale_good_steps,
        skipped_steps: state.skipped_steps,
    });
    let mut guard = step_guard(cfg, &s.device, resumed_at)?;
    let scaling = guard.scales_loss();

    let mut last_tally = None;
    while state.epoch < cfg.epochs {
        let epoch = state.epoch;
        let loader = Loader::train_share(
            s.data.train.clone(),
            cfg.batch_size,
            cfg.seed,
            epoch as u64,
            &s.augment,
            state.batch,
            s.distributed.map_or(0..cfg.batch_size, |d| d.images()),
        )?;
        reporter.start_bar(
            format!("epoch {}/{}", epoch + 1, cfg.epochs),
            cfg.steps_per_epoch,
        );
        reporter.advance_bar(state.batch, String::new());
        s.device.reset_peak_memory();
        let mut unread = Unread::default();
        let mut window_started = Instant::now();
        let mut bar_msg = String::new();
        for batch in loader {
            let batch = batch?;
            if state.step == 0 && !resumed && cfg.gradcheck.enabled {
                // On one rank: it checks the arithmetic, which every rank shares.
                if s.writes() {
                    check_gradients(s, reporter, &opt, &batch)?;
                }
                if stop_requested(s, 0)? {
                    return stop(s, reporter, &opt, &state);
                }
                reporter.start_bar(
                    format!("epoch {}/{}", epoch + 1, cfg.epochs),
                    cfg.steps_per_epoch,
                );
                window_started = Instant::now();
            }
            let started = Instant::now();
            let lr = schedule.lr_at(state.step);
            let done = step(s, &mut opt, &trained, &mut guard, &batch, &state, lr)
                .map_err(|e| with_batch_size(e, s, state.step + 1))?;
            unread.push(done);
            s.device
                .end_step()
                .map_err(|e| with_batch_size(e.into(), s, state.step + 1))?;
            state.step += 1;
            state.batch += 1;
            let stopping = stop_requested(s, state.step)?;
            if state.step % cfg.log_every == 0 || stopping {
                let window = unread.len();
                let report = settle(s, &mut unread, &guard, &mut state, epoch)?;
                state.epoch_seconds += started.elapsed().as_secs_f64();
                let images_per_s =
                    (window * cfg.batch_size) as f64 / window_started.elapsed().as_secs_f64();
                window_started = Instant::now();
                if state.step % cfg.log_every == 0 {
                    let record = Record::Step(StepRecord {
                        epoch: epoch + 1,
                        step: state.step,
                        loss: report.last_loss,
                        lr,
                        grad_norm: report.guard.grad_norm,
                        images_per_s,
                        loss_scale: scaling.then_some(report.guard.loss_scale.scale),
                        skipped_steps: scaling.then_some(report.guard.loss_scale.skipped_steps),
                    });
                    if let Some(m) = &mut metrics {
                        m.write(&record)?;
                    }
                    reporter.record(&record);
                }
                bar_msg = format!(
                    "loss {:.4} lr {lr:.2e} {images_per_s:.0} img/s",
                    report.last_loss
                );
            } else {
                state.epoch_seconds += started.elapsed().as_secs_f64();
            }
            reporter.advance_bar(state.batch, bar_msg.clone());
            if stopping {
                return stop(s, reporter, &opt, &state);
            }
        }
        // Everything is read (and checked) before the evaluation and the checkpoint.
        let started = Instant::now();
        settle(s, &mut unread, &guard, &mut state, epoch)?;
        state.epoch_seconds += started.elapsed().as_secs_f64();
        reporter.finish_bar();
        let peak_mem_bytes = s.device.memory_stats().peak_live_bytes;

        let tally = test_accuracy(s, reporter)?;
        let fewshot = match s.fewshot {
            Some(probe) if s.writes() => Some(fewshot_accuracy(s, probe, reporter)?),
            _ => None,
        };
        let top1 = tally.top1();
        let is_best = state.best.is_none_or(|(b, _)| top1 > b);
        if is_best {
            state.best = Some((top1, epoch + 1));
            if s.writes() {
                checkpoint::save_best(s.run, s.net)?;
            }
        }
        let record = Record::Epoch(EpochRecord {
            epoch: epoch + 1,
            step: state.step,
            loss: state.epoch_loss_sum / state.batch.max(1) as f64,
            lr: schedule.lr_at(state.step.saturating_sub(1)),
            train_top1: state.epoch_correct as f64 / state.epoch_views.max(1) as f64,
            test_top1: top1,
            test_top5: tally.top5(),
            best: is_best,
            seconds: state.epoch_seconds,
            images_per_s: (state.batch * cfg.batch_size) as f64 / state.epoch_seconds.max(1e-9),
            peak_mem_bytes,
            fewshot_val_1shot: fewshot.map(|f| f.one_shot.mean),
            fewshot_val_1shot_ci95: fewshot.map(|f| f.one_shot.ci95),
            fewshot_val_5shot: fewshot.map(|f| f.five_shot.mean),
            fewshot_val_5shot_ci95: fewshot.map(|f| f.five_shot.ci95),
        });
        if let Some(m) = &mut metrics {
            m.write(&record)?;
        }
        reporter.record(&record);
        state = TrainState {
            epoch: epoch + 1,
            step: state.step,
            best: state.best,
            loss_scale: state.loss_scale,
            loss_scale_good_steps: state.loss_scale_good_steps,
            skipped_steps: state.skipped_steps,
            ..TrainState::default()
        };
        if s.writes() {
            checkpoint::save(s.run, s.net, &opt, &state)?;
        }
        last_tally = Some(tally);
        if s.stop.load(Ordering::Relaxed) {
            return Ok(Outcome::Stopped { step: state.step });
        }
    }
    let tally = match last_tally {
        Some(t) => t,
        // Resumed after the last epoch had ended: evaluate the saved model once more.
        None => test_accuracy(s, reporter)?,
    };
    if s.writes() {
        write_per_class(s, &tally)?;
    }
    Ok(Outcome::Finished {
        tally,
        best: state.best,
    })
}

/// The step guard of a run of `cfg`: with the loss scaling of `--precision f16`, from where
/// a resumed run stood.
pub fn step_guard(
    cfg: &TrainConfig,
    device: &Device,
    resumed_at: Option<LossScaleState>,
) -> Result<StepGuard> {
    Ok(match cfg.loss_scaling {
        Some(scaling) if cfg.precision == Precision::F16 => {
            StepGuard::with_loss_scaling(device, scaling.engine(), resumed_at)?
        }
        _ => StepGuard::new(device)?,
    })
}

/// A GPU failure in a training step, out of memory above all, depends on the batch: say which
/// batch size was tried, so the user knows what to lower.
fn with_batch_size(e: TrainError, s: &Session, step: usize) -> TrainError {
    match e {
        TrainError::Engine(clce_engine::Error::Gpu(msg)) => TrainError::GpuStep {
            step,
            device: s.device.to_string(),
            batch_size: s.cfg.batch_size,
            msg,
        },
        e => e,
    }
}

/// One optimiser step, nothing read back.
fn step(
    s: &Session,
    opt: &mut AdamW,
    trained: &[Tensor],
    guard: &mut StepGuard,
    batch: &Batch,
    state: &TrainState,
    lr: f64,
) -> Result<StepDone> {
    let x = batch.to_tensor(&s.device)?;
    let mut mode = step_mode(s.cfg, state.step);
    if let (Mode::Train { seed, .. }, Some(d)) = (mode, &s.distributed) {
        mode = Mode::train_at(seed, d.place());
    }
    let core = StepCore {
        net: s.net,
        objective: s.objective,
        mode,
        micro_batch: s.cfg.micro_batch,
        precision: s.cfg.precision,
        clip_grad: s.cfg.clip_grad,
        lr,
        distributed: s.distributed,
    };
    core.run(opt, trained, guard, state.step + 1, &x, &batch.labels)
}

/// The steps of the current epoch whose results are still on the device.
#[derive(Default)]
struct Unread {
    steps: Vec<StepDone>,
}

impl Unread {
    fn push(&mut self, done: StepDone) {
        self.steps.push(done);
    }
    fn len(&self) -> usize {
        self.steps.len()
    }
}

/// What reading the unread steps found.
struct Settled {
    guard: GuardReport,
    /// The loss of the last step read (NaN when there was none).
    last_loss: f64,
}

/// Reads the guard and every unread step's loss and logits back in one readback, stops the
/// run if a step went bad, and adds the steps' losses and correct views to the epoch's sums.
fn settle(
    s: &Session,
    unread: &mut Unread,
    guard: &StepGuard,
    state: &mut TrainState,
    epoch: usize,
) -> Result<Settled> {
    let steps = std::mem::take(&mut unread.steps);
    let flat = |t: &Tensor| t.to_dtype(DType::F32)?.reshape([t.numel()]);
    let mut parts = vec![guard.state().clone()];
    for done in &steps {
        parts.push(flat(&done.loss)?);
        parts.push(flat(&done.logits)?);
    }
    let values = Tensor::concat(&parts, 0)?
        .to_vec_f32()
        .map_err(|e| with_batch_size(e.into(), s, state.step))?;
    let report = GuardReport::from_values(&values);
    if guard.scales_loss() {
        // Where scaling stands goes into every checkpoint, which is saved after a settle.
        state.loss_scale = Some(report.loss_scale.scale);
        state.loss_scale_good_steps = report.loss_scale.good_steps;
        state.skipped_steps = report.loss_scale.skipped_steps;
    }
    if let Some(bad) = report.first_bad {
        return Err(TrainError::NonFinite {
            what: bad.what,
            value: bad.value,
            step: bad.step,
            // Unread steps never span two epochs.
            epoch: epoch + 1,
        });
    }
    let mut at = clce_engine::optim::GUARD_STATE_LEN;
    let mut last_loss = f64::NAN;
    for StepDone { logits, labels, .. } in &steps {
        last_loss = values[at] as f64;
        let n = logits.numel();
        let values = &values[at + 1..at + 1 + n];
        at += 1 + n;
        state.epoch_loss_sum += last_loss;
        state.epoch_correct += top1_correct(values, logits.dims()[1], labels);
        state.epoch_views += labels.len();
    }
    Ok(Settled {
        guard: report,
        last_loss,
    })
}

/// The forward mode of step `step` (counted from 0).
pub fn step_mode(cfg: &TrainConfig, step: usize) -> Mode {
    // A linear probe keeps the encoder as it is: BatchNorm on its running statistics and no
    // drop path (the heads behave the same in both modes).
    if cfg.freeze_backbone {
        Mode::Eval
    } else {
        Mode::train(step_seed(cfg.seed, step))
    }
}

/// The arithmetic of one optimiser step, shared by training and by `clce-cli plan` (which runs
/// it on the meta device to count its memory), so that the plan cannot drift from the step.
pub struct StepCore<'a> {
    pub net: &'a dyn Network,
    pub objective: Objective<'a>,
    pub mode: Mode,
    /// `--micro-batch`: the views run at most this many at a time (`micro_batch.rs`).
    pub micro_batch: Option<usize>,
    /// `--precision`: how the activations kept for backward are stored.
    pub precision: Precision,
    pub clip_grad: Option<f64>,
    pub lr: f64,
    /// `--distributed`: the step's views are this rank's share (`distributed/`), `mode`
    /// places them in the whole batch.
    pub distributed: Option<Distributed<'a>>,
}

/// What a step leaves behind, on the device, unread (the gradient norm and whether the step
/// was finite are in the step guard).
pub struct StepDone {
    /// The objective's value, a one-element tensor.
    pub loss: Tensor,
    /// The logits of the whole batch's views (every rank's, when distributed) ...
    pub logits: Tensor,
    /// ... and their labels.
    pub labels: Vec<usize>,
}

impl StepCore<'_> {
    /// Step `step` (counted from 1): forward of the 2B views `x`, the objective, backward,
    /// the guard's check (gradient norm, clip factor for `clip_grad`, finiteness), AdamW under
    /// the guard. Reads nothing back from a GPU: a non-finite step shows in the guard, and
    /// from it on AdamW changes nothing.
    pub fn run(
        &self,
        opt: &mut AdamW,
        trained: &[Tensor],
        guard: &mut StepGuard,
        step: usize,
        x: &Tensor,
        labels: &[usize],
    ) -> Result<StepDone> {
        opt.zero_grad();
        let loss_scale = guard.loss_scale()?;
        let loss_scale = loss_scale.as_ref();
        let (loss, logits, labels) = match (&self.distributed, self.micro_batch) {
            (Some(d), _) => {
                let done = d.forward_backward(self, x, labels, loss_scale)?;
                d.all_reduce_gradients(trained)?;
                done
            }
            (None, Some(k)) => {
                let (loss, logits) = micro_batch::forward_backward(self, k, x, labels, loss_scale)?;
                (loss, logits, labels.to_vec())
            }
            (None, None) => {
                let (loss, logits) = self.forward_backward(x, labels, loss_scale)?;
                (loss, logits, labels.to_vec())
            }
        };
        guard.check(step, &loss, trained, self.clip_grad)?;
        opt.step_guarded(self.lr, guard)?;
        Ok(StepDone {
            loss,
            logits,
            labels,
        })
    }

    /// The forward pass whose tape the backward pass will use: with `--precision f16` the
    /// activations it keeps are stored in f16.
    pub fn recorded_forward(&self, x: &Tensor, mode: Mode) -> Result<Output> {
        let _f16 = (self.precision == Precision::F16).then(save_in_f16);
        self.net.forward(x, mode)
    }

    /// The loss of the views `x` (its gradient, times `loss_scale` if given, accumulated
    /// into the parameters' gradients) and their logits, in one piece.
    fn forward_backward(
        &self,
        x: &Tensor,
        labels: &[usize],
        loss_scale: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let out = self.recorded_forward(x, self.mode)?;
        let loss = (self.objective)(&out, labels)?;
        scaled(&loss, loss_scale)?.backward()?;
        Ok((loss.detach(), out.logits))
    }
}

/// `loss` times the loss scale (a one-element tensor on the loss's device, read by no one on
/// the host), or `loss` itself without loss scaling.
pub fn scaled(loss: &Tensor, loss_scale: Option<&Tensor>) -> Result<Tensor> {
    Ok(match loss_scale {
        Some(scale) => loss.mul(&scale.reshape(loss.dims().to_vec())?)?,
        None => loss.clone(),
    })
}

/// How many of the views whose `classes`-wide logits are `logits` have their label on top.
fn top1_correct(logits: &[f32], classes: usize, labels: &[usize]) -> usize {
    let mut tally = Tally::new(classes);
    tally.add(logits, labels);
    tally.correct.iter().sum()
}

/// The drop-path seed of step `step`: a function of the run's seed and the step only, so a
/// resumed run draws the masks the uninterrupted run drew.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    splitmix64(seed ^ splitmix64(step as u64 ^ 0x5354_4550))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether to stop after step `step`: on several ranks, when any rank was asked to (Ctrl-C
/// reaches the ranks at different steps; they must stop after the same one).
fn stop_requested(s: &Session, step: usize) -> Result<bool> {
    let here = s.stop.load(Ordering::Relaxed) || s.stop_after_steps == Some(step);
    match &s.distributed {
        None => Ok(here),
        Some(d) => {
            let mut any = [here as u8 as f32];
            d.collective.all_reduce_sum(&mut any)?;
            Ok(any[0] > 0.0)
        }
    }
}

fn stop(s: &Session, reporter: &mut Reporter, opt: &AdamW, state: &TrainState) -> Result<Outcome> {
    reporter.finish_bar();
    if s.writes() {
        checkpoint::save(s.run, s.net, opt, state)?;
    }
    Ok(Outcome::Stopped { step: state.step })
}

/// Checks the gradient of the whole objective on a slice of the first batch, before the
/// first step, and refuses to go on if it is wrong.
fn check_gradients(s: &Session, reporter: &mut Reporter, opt: &AdamW, batch: &Batch) -> Result<()> {
    let b = batch.labels.len() / 2;
    let images = gradcheck::pick_images(&batch.labels[..b], s.cfg.gradcheck.images);
    // Both views of each picked image, first views first, as in a full batch.
    let rows: Vec<usize> = images
        .iter()
        .copied()
        .chain(images.iter().map(|&i| i + b))
        .collect();
    let labels: Vec<usize> = rows.iter().map(|&r| batch.labels[r]).collect();
    let x = batch.to_tensor(&s.device)?.index_select(0, &rows)?;
    let x64 = batch
        .to_tensor(&Device::Cpu)?
        .index_select(0, &rows)?
        .to_dtype(DType::F64)?;
    // Only what the optimiser updates, in the model's order; the reference's tensors of the
    // same names.
    let trained: std::collections::HashSet<_> = opt.params().iter().map(Tensor::id).collect();
    let all = s.net.parameters();
    let names: std::collections::HashSet<&str> = all
        .iter()
        .filter(|(_, t)| trained.contains(&t.id()))
        .map(|(n, _)| n.as_str())
        .collect();
    let params: Vec<(String, Tensor)> = all
        .iter()
        .filter(|(n, _)| names.contains(n.as_str()))
        .cloned()
        .collect();
    let reference = s.net.f64_reference()?;
    let reference_params: Vec<(String, Tensor)> = reference
        .parameters()
        .into_iter()
        .filter(|(n, _)| names.contains(n.as_str()))
        .collect();
    let loss = || -> Result<Tensor> {
        let out = s.net.forward(&x, Mode::Eval)?;
        (s.objective)(&out, &labels)
    };
    let reference_loss = || -> Result<Tensor> {
        let out = reference.forward(&x64, Mode::Eval)?;
        (s.objective)(&out, &labels)
    };
    let opts = GradcheckOptions {
        coords_per_tensor: s.cfg.gradcheck.coords_per_tensor,
        tolerance: s.cfg.gradcheck.tolerance,
        seed: s.cfg.seed,
        ..GradcheckOptions::default()
    };
    reporter.info(&format!(
        "checking gradients on {} views of the first batch against an f64 CPU copy of the \
         model (--no-gradcheck skips this)",
        rows.len()
    ));
    reporter.start_bar("gradcheck".into(), 0);
    let device_side = Side {
        params: &params,
        loss: &loss,
    };
    let reference_side = Side {
        params: &reference_params,
        loss: &reference_loss,
    };
    let report = gradcheck::check(device_side, reference_side, &opts, &mut |done, total| {
        reporter.set_bar_length(total);
        reporter.advance_bar(done, "coordinates".into())
    });
    reporter.finish_bar();
    let report = report?;
    reporter.gradcheck(&report);
    report.into_result().map(drop)
}

/// The test split's accuracy; an empty tally on ranks other than 0, which do not evaluate.
fn test_accuracy(s: &Session, reporter: &mut Reporter) -> Result<Tally> {
    if !s.writes() {
        return Ok(Tally::new(s.data.num_classes()));
    }
    let batches = s.data.test.len().div_ceil(s.cfg.eval_batch_size);
    reporter.start_bar("test".into(), batches);
    let tally = evaluate(
        s.net,
        &s.data.test,
        s.data.num_classes(),
        &eval_views(s),
        &s.device,
        &mut |done, _| reporter.advance_bar(done, String::new()),
    );
    reporter.finish_bar();
    tally
}

fn fewshot_accuracy(
    s: &Session,
    probe: &FewShotProbe,
    reporter: &mut Reporter,
) -> Result<FewShotScores> {
    reporter.start_bar("few-shot".into(), probe.images());
    let scores = probe.run(s.net, &eval_views(s), &s.device, |done, _| {
        reporter.advance_bar(done, "images".into())
    });
    reporter.finish_bar();
    scores
}

/// Evaluation views at the training size and normalisation.
fn eval_views(s: &Session) -> EvalViews {
    EvalViews {
        batch_size: s.cfg.eval_batch_size,
        image_size: s.cfg.image_size,
        norm: s.augment.norm,
    }
}

/// `per_class_accuracy.json`: the final test accuracy of every class, by name.
fn write_per_class(s: &Session, tally: &Tally) -> Result<()> {
    let text = serde_json::to_string_pretty(&json!({
        "test_top1": tally.top1(),
        "test_top5": tally.top5(),
        "classes": per_class_json(&per_class_rows(&s.data.class_names, tally)),
    }))
    .expect("JSON serialises");
    write_atomic(&s.run.per_class_path(), text.as_bytes())
}
