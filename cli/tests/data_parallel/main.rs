//! `--distributed` (train/distributed/): R ranks, each with its share of the batch, give the
//! single process's step. The ranks here are threads of this process (`ThreadGroup`), which
//! make the collective calls MPI makes; `cli/tests/mpi` runs the real thing under mpirun.
//!
//! BEiT (no BatchNorm, drop path on): every rank's gradient after the all-reduce is the
//! single-process gradient, for R in {1, 2, 3, 6}, with and without --micro-batch inside the
//! ranks, for every loss. ResNet: BatchNorm normalises each rank's views by their own
//! statistics, so the reference records each rank's share on one tape (in the single
//! process's row order) and differentiates the whole objective once.
#[path = "../common/compare.rs"]
mod compare;
use clce_cli::train::distributed::{Collective, Distributed, ThreadGroup};
use clce_cli::train::model::{objective_for, random_model, Finetuned};
use clce_cli::train::network::{Mode, Network, Output};
use clce_cli::train::trainer::StepCore;
use clce_cli::train::{ModelFacts, TrainConfig, TrainFlags};
use clce_engine::loss::LossKind;
use clce_engine::{DType, Device, Tensor};
use compare::relative;

const IMAGES: usize = 6;

fn config(model: &str, loss: &str, micro_batch: Option<usize>) -> TrainConfig {
    let is_beit = model.starts_with("beit");
    let flags = TrainFlags {
        model: Some(model.into()),
        batch_size: Some(IMAGES),
        image_size: Some(32),
        loss: Some(loss.into()),
        drop_path: is_beit.then_some(0.3),
        micro_batch,
        seed: Some(3),
        ..TrainFlags::default()
    };
    let facts = ModelFacts {
        is_beit,
        fixed_image_size: None,
    };
    flags.resolve(&facts, 4, 1000, "test").unwrap()
}

/// View i and view i + B are one image.
fn labels() -> Vec<usize> {
    (0..2 * IMAGES).map(|i| (i % IMAGES) % 4).collect()
}

fn views(device: &Device) -> Tensor {
    Tensor::randn([2 * IMAGES, 3, 32, 32], 1.0, 11, DType::F32, device).unwrap()
}

const SEED: u64 = 42;

/// What a step leaves: the loss, the logits of all views, every parameter's gradient.
#[derive(Debug)]
struct Step {
    loss: f64,
    logits: Vec<f32>,
    labels: Vec<usize>,
    grads: Vec<(String, Option<Vec<f32>>)>,
}

fn model(cfg: &TrainConfig, device: &Device) -> Finetuned {
    Finetuned {
        model: random_model(cfg, device).unwrap(),
        frozen_backbone: false,
    }
}

fn grads(net: &Finetuned) -> Vec<(String, Option<Vec<f32>>)> {
    net.parameters()
        .into_iter()
        .map(|(name, t)| (name, t.grad().map(|g| g.to_vec_f32().unwrap())))
        .collect()
}

fn core<'a>(
    cfg: &TrainConfig,
    net: &'a Finetuned,
    objective: clce_cli::train::trainer::Objective<'a>,
    mode: Mode,
    distributed: Option<Distributed<'a>>,
) -> StepCore<'a> {
    StepCore {
        net,
        objective,
        mode,
        micro_batch: cfg.micro_batch,
        precision: cfg.precision,
        clip_grad: None,
        lr: 0.0,
        distributed,
    }
}

/// One process, the whole batch in one forward.
fn single_process(cfg: &TrainConfig, device: &Device) -> Step {
    let net = model(cfg, device);
    let objective = objective_for(cfg).unwrap();
    let step = core(cfg, &net, &objective, Mode::train(SEED), None);
    let out = step
        .recorded_forward(&views(device), Mode::train(SEED))
        .unwrap();
    let loss = (step.objective)(&out, &labels()).unwrap();
    loss.backward().unwrap();
    Step {
        loss: loss.to_scalar().unwrap(),
        logits: out.logits.to_vec_f32().unwrap(),
        labels: labels(),
        grads: grads(&net),
    }
}

/// The rows of the single process's batch that rank `rank` of `ranks` holds.
fn share(ranks: usize, rank: usize) -> Vec<usize> {
    let b = IMAGES / ranks;
    (rank * b..(rank + 1) * b)
        .chain(IMAGES + rank * b..IMAGES + (rank + 1) * b)
        .collect()
}

/// R ranks as R threads; every rank's step (they must agree).
fn ranks(cfg: &TrainConfig, r: usize, device: &Device) -> Vec<Step> {
    let group = ThreadGroup::new(r);
    std::thread::scope(|scope| {
        let handles: Vec<_> = group
            .iter()
            .map(|rank| {
                scope.spawn(move || {
                    let net = model(cfg, device);
                    let objective = objective_for(cfg).unwrap();
                    let d = Distributed::new(rank, IMAGES).unwrap();
                    let mode = Mode::train_at(SEED, d.place());
                    let step = core(cfg, &net, &objective, mode, Some(d));
                    let mine = share(r, rank.rank());
                    let x = views(device).index_select(0, &mine).unwrap();
                    let labels: Vec<usize> = mine.iter().map(|&i| labels()[i]).collect();
                    let (loss, logits, labels) =
                        d.forward_backward(&step, &x, &labels, None).unwrap();
                    let params: Vec<Tensor> =
                        net.parameters().into_iter().map(|(_, t)| t).collect();
                    d.all_reduce_gradients(&params).unwrap();
                    Step {
                        loss: loss.to_scalar().unwrap(),
                        logits: logits.to_vec_f32().unwrap(),
                        labels,
                        grads: grads(&net),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// ResNet's reference: each rank's share forwarded on one tape (its own BatchNorm
/// statistics), the outputs put back in the single process's order, one backward.
fn per_rank_reference(cfg: &TrainConfig, r: usize) -> Step {
    let net = model(cfg, &Device::Cpu);
    let objective = objective_for(cfg).unwrap();
    let x = views(&Device::Cpu);
    let mut rows = Vec::new();
    let mut outs = Vec::new();
    for rank in 0..r {
        let mine = share(r, rank);
        let d_place = clce_engine::SamplePlace {
            first: rank * IMAGES / r,
            split: IMAGES / r,
            second: IMAGES + rank * IMAGES / r,
        };
        outs.push(
            net.forward(
                &x.index_select(0, &mine).unwrap(),
                Mode::train_at(SEED, d_place),
            )
            .unwrap(),
        );
        rows.extend(mine);
    }
    // Row j of the concatenation is view rows[j]; the single process's order inverts that.
    let mut order = vec![0; rows.len()];
    for (j, &view) in rows.iter().enumerate() {
        order[view] = j;
    }
    let cat = |part: fn(&Output) -> &Tensor| {
        let parts: Vec<Tensor> = outs.iter().map(|o| part(o).clone()).collect();
        Tensor::concat(&parts, 0)
            .unwrap()
            .index_select(0, &order)
            .unwrap()
    };
    let whole = Output {
        pooled: cat(|o| &o.pooled),
        logits: cat(|o| &o.logits),
        projection: cat(|o| &o.projection),
    };
    let loss = objective(&whole, &labels()).unwrap();
    loss.backward().unwrap();
    Step {
        loss: loss.to_scalar().unwrap(),
        logits: whole.logits.to_vec_f32().unwrap(),
        labels: labels(),
        grads: grads(&net),
    }
}

fn assert_close(what: &str, got: &Step, want: &Step, tol: f64) {
    assert_eq!(got.labels, want.labels, "{what}: labels");
    compare::assert_close(what, got.outcome(), want.outcome(), tol);
}

impl Step {
    fn outcome(&self) -> compare::Outcome<'_> {
        compare::Outcome {
            loss: self.loss,
            logits: &self.logits,
            grads: &self.grads,
        }
    }
}

/// Every rank ends the step with the same bits (they run AdamW in lockstep on them).
fn assert_ranks_agree(steps: &[Step]) {
    for s in &steps[1..] {
        assert_eq!(s.loss, steps[0].loss);
        assert_eq!(s.logits, steps[0].logits);
        assert_eq!(s.grads, steps[0].grads);
    }
}

#[test]
fn beit_ranks_give_the_single_process_gradient() {
    let want = single_process(&config("beit-tiny", "clce", None), &Device::Cpu);
    for micro_batch in [None, Some(1), Some(4)] {
        let cfg = config("beit-tiny", "clce", micro_batch);
        for r in [1, 2, 3, 6] {
            let steps = ranks(&cfg, r, &Device::Cpu);
            assert_ranks_agree(&steps);
            assert_close(
                &format!("R = {r}, K = {micro_batch:?}"),
                &steps[0],
                &want,
                1e-5,
            );
        }
    }
}

#[test]
fn every_loss_sees_the_negatives_of_every_rank() {
    for kind in LossKind::ALL {
        let cfg = config("beit-tiny", kind.name(), None);
        assert_close(
            kind.name(),
            &ranks(&cfg, 2, &Device::Cpu)[0],
            &single_process(&cfg, &Device::Cpu),
            1e-5,
        );
    }
}

#[test]
fn resnet_ranks_normalise_with_their_own_statistics() {
    let cfg = config("resnet-tiny", "clce", None);
    let whole = single_process(&cfg, &Device::Cpu);
    for r in [2, 3] {
        let steps = ranks(&cfg, r, &Device::Cpu);
        assert_ranks_agree(&steps);
        assert_close(
            &format!("R = {r}"),
            &steps[0],
            &per_rank_reference(&cfg, r),
            1e-5,
        );
        // Not the single process's step: each rank had its own batch statistics.
        assert!(relative(&steps[0].logits, &whole.logits) > 1e-3, "R = {r}");
    }
    // With one rank the statistics are the whole batch's.
    assert_close("R = 1", &ranks(&cfg, 1, &Device::Cpu)[0], &whole, 1e-6);
}

#[test]
fn a_batch_that_does_not_split_evenly_is_refused() {
    let group = ThreadGroup::new(4);
    let err = Distributed::new(&group[0], 6).err().unwrap().to_string();
    assert!(
        err.contains("--batch-size 6") && err.contains("multiple of 4"),
        "{err}"
    );
    assert!(Distributed::new(&group[0], 8).is_ok());
    assert_eq!(group[3].ranks(), 4);
}

/// On a GPU (lavapipe in CI) the exchange reads the outputs and gradients back and uploads
/// the sums: the same step as one process on that GPU.
#[test]
fn gpu_ranks_give_the_single_process_gradient() {
    let Some(gpu) = clce_engine::gpu::testing::test_device() else {
        return;
    };
    for micro_batch in [None, Some(5)] {
        let cfg = config("beit-tiny", "clce", micro_batch);
        let steps = ranks(&cfg, 2, &gpu);
        assert_ranks_agree(&steps);
        let want = single_process(&config("beit-tiny", "clce", None), &gpu);
        assert_close(&format!("gpu, K = {micro_batch:?}"), &steps[0], &want, 1e-5);
    }
}
