//! `clce-cli finetune`: fine-tune a model with CLCE (or a baseline objective), evaluating on
//! the test split every epoch; see `train/` for the pieces.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::CmdResult;
use crate::device_arg::DeviceArg;
use clce_cli::data::{AugmentConfig, DataSpec, Dataset};
use clce_cli::train::distributed::{
    broadcast_text, local_adapter, local_rank, Collective, Distributed,
};
use clce_cli::train::eval::{per_class_json, per_class_rows, per_class_table};
use clce_cli::train::fewshot::{self, FewShotProbe};
use clce_cli::train::model::{self, Finetuned};
use clce_cli::train::plan::{allocator_of, fit_budget, plan, BudgetChoice, MemorySettings, Plan};
use clce_cli::train::progress::format_bytes;
use clce_cli::train::progress::{OutputMode, Reporter};
use clce_cli::train::trainer::{self, Outcome, Session};
use clce_cli::train::{checkpoint, Precision, RunDir, TrainConfig, TrainError, TrainFlags};
use clce_engine::Device;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    flags: TrainFlags,
    #[command(flatten)]
    device: DeviceArg,
    /// Run directory for config.json, metrics.jsonl and the checkpoints [runs/<UTC time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in DIR where it stopped, with the settings in DIR/config.json.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Before reading any data, plan the step's memory (as `clce-cli plan` does) and pick the
    /// cheapest settings that fit SIZE on the device (e.g. 12GB, 11.5GiB): as given, else
    /// with --checkpoint-activations. Refuses, naming the largest batch that fits, if none do.
    #[arg(long, value_name = "SIZE", conflicts_with = "resume")]
    memory_budget: Option<String>,
    /// Print only the final result line (warnings and errors still go to stderr).
    #[arg(long, conflicts_with = "json")]
    quiet: bool,
    /// Print JSON lines only on stdout: the metrics records, the gradient check and the result.
    #[arg(long)]
    json: bool,
    /// Stop as Ctrl-C would, right after this step (for tests of --resume; 0: right after
    /// the gradient check, for scripts/gradcheck-sweep.sh).
    #[arg(long, hide = true)]
    stop_after_steps: Option<usize>,
    /// Plant a wrong backward rule (relu's gradient scaled by 1.5), for tests that the
    /// gradient check catches it.
    #[arg(long, hide = true)]
    inject_wrong_relu_backward: bool,
    /// Data-parallel training: run as one of R ranks started by `mpirun -np R clce-cli
    /// finetune --distributed ...` (or Slurm's srun). Each rank takes --batch-size / R images
    /// of every batch on its own device (--device gpu: the rank's local adapter in turn); the
    /// objective sees every rank's views as negatives, so the step is the single-process
    /// step. BatchNorm normalises with each rank's own batch statistics (as PyTorch DDP).
    /// Rank 0 writes the run directory. Needs a clce-cli built with `--features
    /// distributed` (Open MPI or MPICH).
    #[arg(long, conflicts_with = "memory_budget")]
    distributed: bool,
}

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;

pub fn run(args: Args) -> CmdResult {
    if args.distributed {
        return run_distributed(args);
    }
    run_rank(args, None)
}

/// One rank of `mpirun ... clce-cli finetune --distributed`. An error on any rank ends them
/// all (MPI_Abort), naming the rank, so none waits for a rank that is gone.
#[cfg(feature = "distributed")]
fn run_distributed(args: Args) -> CmdResult {
    use clce_cli::train::distributed::{mpi::MpiWorld, Collective};
    let world = MpiWorld::join()?;
    match run_rank(args, Some(&world)) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error on rank {} of {}: {e}", world.rank(), world.ranks());
            world.abort(1)
        }
    }
}

#[cfg(not(feature = "distributed"))]
fn run_distributed(_: Args) -> CmdResult {
    Err(TrainError::Invalid(
        "--distributed needs a clce-cli built with MPI: install Open MPI (Debian/Ubuntu: \
         apt-get install -y libopenmpi-dev openmpi-bin libclang-dev), then cargo build \
         --release -p clce-cli --features distributed, and start it with mpirun -np R"
            .into(),
    )
    .into())
}

fn run_rank(args: Args, world: Option<&dyn Collective>) -> CmdResult {
    let writer = world.is_none_or(|w| w.rank() == 0);
    let mode = match (args.quiet || !writer, args.json) {
        (true, _) => OutputMode::Quiet,
        (_, true) => OutputMode::Json,
        _ => OutputMode::Normal,
    };
    let mut reporter = Reporter::new(mode);
    clce_engine::fault::set_wrong_relu_backward(args.inject_wrong_relu_backward);

    let (run, cfg, data, net, resume, probe, device) = match &args.resume {
        Some(dir) => {
            let given = args.flags.given_settings();
            if !given.is_empty() {
                return Err(TrainError::Invalid(format!(
                    "--resume continues {} with the settings in its config.json; drop {}",
                    dir.display(),
                    given.join(", ")
                ))
                .into());
            }
            let (run, mut cfg) = RunDir::open(dir)?;
            if let Some(d) = &args.flags.data_dir {
                cfg.data_dir = d.clone();
            }
            // The run's own device unless --device says otherwise: resuming a CPU run must
            // not probe for a GPU.
            let device = if args.device.given() {
                rank_device(&args.device, world)?
            } else {
                let run_device = DeviceArg {
                    device: Some(cfg.device.clone()),
                };
                rank_device(&run_device, world)?
            };
            let data = open_data(&cfg.data, &cfg.data_dir, cfg.image_size)?;
            let probe = open_probe(&cfg, &data)?;
            let state = checkpoint::load(&run)?;
            let model = model::for_resumed_run(&cfg, &run.last_path(), &device)?;
            reporter.info(&format!(
                "resuming {} at epoch {}, step {} of {}",
                run.root().display(),
                state.0.epoch + 1,
                state.0.step,
                cfg.total_steps()
            ));
            (run, cfg, data, model, Some(state), probe, device)
        }
        None => {
            let device = rank_device(&args.device, world)?;
            let target = allocator_of(&device);
            let mut flags = args.flags.with_device_defaults(target);
            let described = model::describe(flags.model_name(), flags.weights.as_deref())?;
            let facts = model::facts(&described);
            let image_size = flags.image_size(&facts)?;
            let planned = || super::plan::planned_config(&flags, args.device.name(), target);
            if let Some(budget) = &args.memory_budget {
                // A fitting choice also fits the binding limit (`Plan::fits`).
                let budget = parse_budget(budget)?;
                let vary_precision = args.flags.precision.is_none();
                let choice = fit_budget(&planned()?, budget, target, vary_precision)?;
                reporter.info(&describe_choice(budget, &choice));
                flags.checkpoint_activations = choice.settings.checkpoint_activations;
                flags.micro_batch = choice.settings.micro_batch;
                flags.precision = Some(choice.settings.precision);
            } else if device.is_gpu() {
                // A buffer above the binding limit would fail the first step; say so now.
                let planned = planned()?;
                refuse_unbindable(&plan(&planned, target)?, &planned, &device)?;
            }
            if args.flags.precision.is_none()
                && args.memory_budget.is_none()
                && flags.precision == Some(Precision::F16)
            {
                reporter.info(
                    "f16 activations, the default on a GPU with shader-f16: what the backward \
                     pass reads is stored in f16, the arithmetic, weights and optimiser state \
                     stay f32 (--precision f32 keeps it all in f32)",
                );
            }
            let flags = &flags;
            if flags.fewshot_eval.is_some() {
                // Refuse a data set without few-shot classes before reading it.
                fewshot::source(&flags.data_spec().parse()?)?;
            }
            let data = open_data(flags.data_spec(), &flags.data_dir(), image_size)?;
            if data.num_classes() < 2 {
                return Err(TrainError::Invalid(format!(
                    "the training data has {} class{}: a classifier and the contrastive \
                     losses need at least two classes (an image folder needs one subfolder \
                     per class)",
                    data.num_classes(),
                    if data.num_classes() == 1 { "" } else { "es" }
                ))
                .into());
            }
            let num_classes = match flags.num_classes {
                Some(n) if n < data.num_classes() => {
                    return Err(TrainError::Invalid(format!(
                        "--num-classes {n}: the data has {} classes",
                        data.num_classes()
                    ))
                    .into())
                }
                Some(n) => n,
                None => data.num_classes(),
            };
            let cfg = flags.resolve(&facts, num_classes, data.train.len(), args.device.name())?;
            let probe = open_probe(&cfg, &data)?;
            if cfg.weights.is_none() {
                reporter.warn(
                    "no --weights: the model starts from random weights. CLCE fine-tunes a \
                     pre-trained encoder; see the README for where to get one",
                );
            }
            let (mut model, report) = model::for_new_run(&cfg, &device)?;
            if let Some(report) = report {
                reporter.info(report.to_string().trim_end());
            }
            if num_classes == data.num_classes() {
                model.set_class_names(data.class_names.clone())?;
            }
            // Everything that can be checked is, before the run folder exists.
            let _ = model::objective_for(&cfg)?;
            for w in cfg.warnings() {
                reporter.warn(&w);
            }
            let run = match world {
                None => RunDir::create(args.out.as_deref(), &cfg)?,
                Some(world) => {
                    // Rank 0 creates it (its default name is its clock's) and says where.
                    let created = if writer {
                        Some(RunDir::create(args.out.as_deref(), &cfg)?)
                    } else {
                        None
                    };
                    let root = created
                        .as_ref()
                        .map(|r| r.root().to_string_lossy().into_owned());
                    let root = broadcast_text(world, &root.unwrap_or_default())?;
                    created.unwrap_or_else(|| RunDir::written_elsewhere(root.into()))
                }
            };
            if run.reused() {
                reporter.warn(&format!(
                    "{} held a run that stopped before its first checkpoint: starting over in it",
                    run.root().display()
                ));
            }
            (run, cfg, data, model, None, probe, device)
        }
    };
    let objective_fn = model::objective_for(&cfg)?;
    let augment = AugmentConfig::clce(cfg.image_size, model::normalization(net.config()));
    let net = Finetuned {
        model: net,
        frozen_backbone: cfg.freeze_backbone,
    };
    describe_run(&reporter, &cfg, &data, &net, &run, &device);
    if let Some(probe) = &probe {
        reporter.info(&probe.describe());
    }

    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(stop.clone(), mode)?;
    let distributed = match world {
        Some(w) => Some(Distributed::new(w, cfg.batch_size)?),
        None => None,
    };
    let session = Session {
        distributed,
        net: &net,
        cfg: &cfg,
        data: &data,
        augment,
        device,
        objective: &objective_fn,
        run: &run,
        stop: &stop,
        stop_after_steps: args.stop_after_steps,
        fewshot: probe.as_ref(),
    };
    match trainer::train(&session, &mut reporter, resume)? {
        // The other ranks have nothing to report: rank 0 evaluated and wrote.
        _ if !writer => Ok(ExitCode::SUCCESS),
        Outcome::Finished { tally, best } => {
            let rows = per_class_rows(&data.class_names, &tally);
            reporter.info(&per_class_table(&rows));
            let (best_top1, best_epoch) = best.unwrap_or((tally.top1(), cfg.epochs));
            reporter.result(&format!(
                "done: test top-1 {:.2}%, top-5 {:.2}% (best top-1 {:.2}% at epoch {best_epoch}); \
                 run directory {}",
                100.0 * tally.top1(),
                100.0 * tally.top5(),
                100.0 * best_top1,
                run.root().display()
            ));
            reporter.event(&json!({
                "kind": "done",
                "test_top1": tally.top1(),
                "test_top5": tally.top5(),
                "best_top1": best_top1,
                "best_epoch": best_epoch,
                "run_dir": run.root(),
                "per_class": per_class_json(&rows),
            }));
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Stopped { step } => {
            let line = format!(
                "stopped after step {step}; saved {}; continue with: clce-cli finetune --resume {}",
                run.last_path().display(),
                run.root().display()
            );
            reporter.result(&line);
            reporter.event(&json!({"kind": "stopped", "step": step, "run_dir": run.root()}));
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

/// `--device` for this rank: with several ranks, `gpu` is the rank's local adapter in turn,
/// so the ranks of one machine share its GPUs out.
fn rank_device(arg: &DeviceArg, world: Option<&dyn Collective>) -> Result<Device, String> {
    if world.is_none() || arg.name() != "gpu" {
        return arg.resolve();
    }
    let Some(index) = local_adapter(&clce_engine::gpu::adapters(), local_rank()) else {
        return arg.resolve(); // no adapter: its error says so
    };
    DeviceArg {
        device: Some(format!("gpu:{index}")),
    }
    .resolve()
}

fn open_data(
    spec: &str,
    data_dir: &std::path::Path,
    image_size: usize,
) -> Result<Dataset, TrainError> {
    let spec: DataSpec = spec.parse()?;
    Ok(Dataset::open(&spec, data_dir, image_size)?)
}

/// The images and episodes of `--fewshot-eval`, checked before anything is trained or written.
fn open_probe(cfg: &TrainConfig, data: &Dataset) -> Result<Option<FewShotProbe>, TrainError> {
    let Some(episodes) = cfg.fewshot_eval else {
        return Ok(None);
    };
    let spec: DataSpec = cfg.data.parse()?;
    let probe = FewShotProbe::open(&spec, data, &cfg.data_dir, cfg.image_size, episodes)?;
    Ok(Some(probe))
}

/// The first Ctrl-C asks the trainer to finish its step, save and stop; a second one quits
/// at once (the last checkpoint stays as it was).
fn install_ctrl_c(stop: Arc<AtomicBool>, mode: OutputMode) -> Result<(), TrainError> {
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting without saving");
            std::process::exit(i32::from(INTERRUPTED));
        }
        if mode != OutputMode::Json {
            eprintln!("\nCtrl-C: finishing this step, then saving (Ctrl-C again to quit now)");
        }
    })
    .map_err(|e| TrainError::Invalid(format!("cannot install the Ctrl-C handler: {e}")))
}

/// The run's header: what trains on what, how, and where it writes.
fn describe_run(
    reporter: &Reporter,
    cfg: &TrainConfig,
    data: &Dataset,
    net: &Finetuned,
    run: &RunDir,
    device: &clce_engine::Device,
) {
    let params: usize = net.model.num_params() + net.model.num_proj_params();
    reporter.info(&format!(
        "model {} ({:.2}M parameters{}) on {device}, {}x{} px",
        cfg.model,
        params as f64 / 1e6,
        if cfg.freeze_backbone {
            ", linear probe: encoder frozen"
        } else {
            ""
        },
        cfg.image_size,
        cfg.image_size
    ));
    reporter.info(&format!(
        "data {}: {} training / {} test images, {} classes",
        cfg.data,
        data.train.len(),
        data.test.len(),
        data.num_classes()
    ));
    reporter.info(&format!(
        "loss {} (lambda {}, tau {}, beta {}), batch {} images = {} views, {} steps per epoch",
        cfg.loss,
        cfg.lambda,
        cfg.tau,
        cfg.beta,
        cfg.batch_size,
        2 * cfg.batch_size,
        cfg.steps_per_epoch
    ));
    reporter.info(&format!("memory: {}", MemorySettings::of(cfg)));
    reporter.info(&format!(
        "AdamW lr {:.2e} (warm-up {} epochs, cosine to {:.0e}), weight decay {}{}{}, {} epochs",
        cfg.lr,
        cfg.warmup_epochs,
        cfg.min_lr,
        cfg.weight_decay,
        cfg.layer_decay
            .map_or(String::new(), |d| format!(", layer decay {d}")),
        cfg.clip_grad
            .map_or(String::new(), |c| format!(", gradient clipped to {c}")),
        cfg.epochs
    ));
    reporter.info(&format!("run directory {}", run.root().display()));
}

/// The error for a step that needs a buffer the adapter cannot bind, before anything runs.
fn refuse_unbindable(
    plan: &Plan,
    cfg: &TrainConfig,
    device: &clce_engine::Device,
) -> Result<(), TrainError> {
    match plan.binding_limit {
        Some(limit) if plan.exceeds_binding_limit() => Err(TrainError::Invalid(format!(
            "{} would need a buffer of {} at --batch-size {}, above the largest storage binding of \
             {device} ({}); lower --batch-size (`clce-cli plan` shows the largest buffer)",
            plan.largest_buffer.op,
            format_bytes(plan.largest_buffer.bytes),
            cfg.batch_size,
            format_bytes(limit)
        ))),
        _ => Ok(()),
    }
}

/// `--memory-budget SIZE`: a size with a unit (kB, MB, GB: powers of 1000; KiB, MiB, GiB:
/// powers of 1024).
fn parse_budget(text: &str) -> Result<u64, TrainError> {
    let bad = |why: &str| {
        TrainError::Invalid(format!(
            "--memory-budget {text}: {why}; give a size with a unit, e.g. 12GB or 11.5GiB"
        ))
    };
    if text.trim().ends_with(|c: char| c.is_ascii_digit()) {
        return Err(bad("no unit"));
    }
    let size: bytesize::ByteSize = text.trim().parse().map_err(|e: String| bad(&e))?;
    match size.as_u64() {
        0 => Err(bad("the budget must be above zero")),
        bytes => Ok(bytes),
    }
}

/// The line that says what `--memory-budget` chose and why.
fn describe_choice(budget: u64, choice: &BudgetChoice) -> String {
    let tried: Vec<String> = choice
        .rejected
        .iter()
        .map(|(settings, p)| format!("{settings} needs {}", format_bytes(p.peak_bytes)))
        .collect();
    let flags = match choice.settings.flags() {
        f if f.is_empty() => "as given".to_string(),
        f => format!("with {f}"),
    };
    format!(
        "memory budget {}: planned peak {} {flags}{}",
        format_bytes(budget),
        format_bytes(choice.plan.peak_bytes),
        if tried.is_empty() {
            String::new()
        } else {
            format!(" ({})", tried.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::parse_budget;

    #[test]
    fn budgets_take_decimal_and_binary_units_and_refuse_bare_numbers() {
        assert_eq!(parse_budget("12GB").unwrap(), 12_000_000_000);
        assert_eq!(parse_budget("12 GiB").unwrap(), 12 << 30);
        assert_eq!(parse_budget("800MB").unwrap(), 800_000_000);
        for bad in ["12", "twelve GB", "0GB", ""] {
            let e = parse_budget(bad).unwrap_err().to_string();
            assert!(e.contains("--memory-budget"), "{bad}: {e}");
        }
    }
}
