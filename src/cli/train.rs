//! `gendi train`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use super::{DeviceArg, ObjectiveArg, ScheduleArg, schedule_config};
use gendi::data::{self, Mnist, Split};
use gendi::native::export::load_exported;
use gendi::native::train::{LrDecay, RunOptions, TrainConfig, Trainer};
use gendi::schedule::Objective;

#[derive(Args)]
pub struct TrainArgs {
    /// Directory for the checkpoint, loss.csv, loss.png and samples/.
    #[arg(long, default_value = "runs/default")]
    run_dir: PathBuf,
    /// Continue the run in --run-dir from its checkpoint (its saved settings apply; --steps may extend it).
    #[arg(long)]
    resume: bool,
    /// Start over even if --run-dir already holds a checkpoint (it is overwritten).
    #[arg(long, conflicts_with = "resume")]
    fresh: bool,
    /// Start from exported weights (a directory like www/weights) instead of a random
    /// initialisation: their model and schedule apply, steps count on from theirs, and the
    /// optimiser starts fresh (with its warm-up). With --objective, the network is fine-tuned
    /// to the other objective (e.g. ε-prediction weights into a flow-matching model).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "schedule", "timesteps", "base_channels", "unconditional"])]
    init_from: Option<PathBuf>,
    /// Total optimiser steps of the run.
    #[arg(long)]
    steps: Option<u64>,
    /// Train for this many epochs instead (passes over the training images); sets --steps.
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<f64>,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate of AdamW (after a linear warm-up).
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    /// Warm-up steps of the learning rate.
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// After the warm-up: cosine decay to --final-lr-fraction of the peak at the last step, or
    /// constant. Recorded in the checkpoint, so --resume keeps it.
    #[arg(long, value_enum, default_value = "cosine")]
    lr_decay: LrDecayArg,
    /// Where the cosine decay ends, as a fraction of --lr.
    #[arg(long, default_value_t = 0.05, value_parser = parse_fraction)]
    final_lr_fraction: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f32,
    /// Decay of the exponential moving average of the weights that `export` ships.
    #[arg(long, default_value_t = 0.999)]
    ema_decay: f64,
    /// Fraction of labels replaced by "no label", so one model also samples unconditionally
    /// [default: 0.1]. With --resume it changes the run's fraction from the checkpoint on.
    #[arg(long, value_parser = parse_fraction)]
    label_dropout: Option<f64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Noise schedule: linear β 1e-4 → 0.02 (Ho et al.) or cosine (Nichol & Dhariwal).
    #[arg(long, value_enum, default_value = "linear")]
    schedule: ScheduleArg,
    /// Diffusion steps T.
    #[arg(long, default_value_t = 1000)]
    timesteps: usize,
    /// What the network learns: epsilon, the noise of DDPM's x_t (L_simple), or flow, the
    /// velocity x_0 − ε of the straight path x_t = (1 − σ_t) x_0 + σ_t ε (flow matching;
    /// sampled with euler or heun). Recorded in the checkpoint and the exported manifest
    /// [default: epsilon, or the objective of --init-from's weights].
    #[arg(long, value_enum, conflicts_with = "resume")]
    objective: Option<ObjectiveArg>,
    /// Channels at full resolution (level l has base × mult_l).
    #[arg(long, default_value_t = 32)]
    base_channels: usize,
    /// Train an unconditional model (no labels, no guidance).
    #[arg(long)]
    unconditional: bool,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Steps between sample grids in <run-dir>/samples (0: none).
    #[arg(long, default_value_t = 1000)]
    sample_every: u64,
    /// Train on the first N training images only (quick experiments).
    #[arg(long)]
    limit: Option<usize>,
    /// MNIST directory [default: $GENDI_DATA or data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// A fraction in [0, 1].
fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("expected a fraction between 0 and 1, got {text}")),
    }
}

fn load_train_data(dir: Option<PathBuf>, limit: Option<usize>) -> Result<Mnist, String> {
    let dir = dir.unwrap_or_else(data::default_data_dir);
    let mut mnist = Mnist::load(&dir, Split::Train).map_err(|e| e.to_string())?;
    if let Some(limit) = limit {
        mnist.truncate(limit);
    }
    Ok(mnist)
}

/// Trains; exits 130 (the shell's code for a run ended by a signal) when Ctrl-C stopped the run
/// early, so that `train && export` stops there.
pub fn run(args: TrainArgs) -> Result<ExitCode, String> {
    let stop_requested = stop_on_ctrl_c()?;
    let device = args.device.device.device()?;
    let data = load_train_data(args.data.clone(), args.limit)?;
    let options = RunOptions {
        run_dir: args.run_dir.clone(),
        checkpoint_every: args.checkpoint_every,
        sample_every: args.sample_every,
        progress: !args.quiet,
        stop_at: None,
        stop_requested: Some(stop_requested),
    };
    let checkpoint_path = options.checkpoint_path();
    let steps_for = |batch: usize| match args.epochs {
        Some(epochs) => (epochs * (data.len() / batch.min(data.len()).max(1)) as f64).ceil() as u64,
        None => args.steps.unwrap_or(TrainConfig::default().steps),
    };
    let mut trainer = if args.resume {
        let mut trainer = Trainer::resume(&checkpoint_path, &device).map_err(|e| e.to_string())?;
        if args.steps.is_some() || args.epochs.is_some() {
            trainer.state.config.steps = steps_for(trainer.state.config.batch_size);
        }
        if let Some(fraction) = args.label_dropout {
            let config = &mut trainer.state.config;
            if config.model.num_classes == 0 {
                return Err(
                    "--label-dropout: this run trains an unconditional model (no labels)".into(),
                );
            }
            eprintln!(
                "label dropout {} → {fraction} from step {}",
                config.label_dropout, trainer.state.step
            );
            config.label_dropout = fraction;
        }
        eprintln!(
            "resuming {} at step {} of {}",
            checkpoint_path.display(),
            trainer.state.step,
            trainer.state.config.steps
        );
        trainer
    } else {
        if checkpoint_path.exists() && !args.fresh {
            return Err(format!(
                "{} already holds a checkpoint: pass --resume to continue it or --fresh to start over",
                args.run_dir.display()
            ));
        }
        let mut config = TrainConfig {
            schedule: schedule_config(
                args.schedule,
                args.timesteps,
                args.objective.unwrap_or(ObjectiveArg::Epsilon),
            ),
            batch_size: args.batch_size,
            steps: 0,
            learning_rate: args.lr,
            warmup_steps: args.warmup,
            lr_decay: match args.lr_decay {
                LrDecayArg::Cosine => LrDecay::Cosine {
                    final_fraction: args.final_lr_fraction,
                },
                LrDecayArg::Constant => LrDecay::Constant,
            },
            weight_decay: args.weight_decay,
            ema_decay: args.ema_decay,
            label_dropout: args
                .label_dropout
                .unwrap_or(TrainConfig::default().label_dropout),
            seed: args.seed,
            ..TrainConfig::default()
        };
        config.model.base_channels = args.base_channels;
        if args.unconditional {
            config.model.num_classes = 0;
        }
        config.steps = steps_for(config.batch_size);
        match &args.init_from {
            None => Trainer::new(config, &device).map_err(|e| e.to_string())?,
            Some(dir) => {
                let (manifest, weights) =
                    load_exported(dir, &device.clone().autodiff()).map_err(|e| e.to_string())?;
                eprintln!(
                    "starting from {} ({} steps, sha256 {}…)",
                    dir.display(),
                    manifest.training_steps,
                    &manifest.weights.sha256[..12]
                );
                let objective = args.objective.map(Objective::from);
                Trainer::from_exported(config, &manifest, weights, objective, &device)
                    .map_err(|e| e.to_string())?
            }
        }
    };
    let parameters = burn::module::Module::num_params(&trainer.model);
    eprintln!(
        "training {parameters} parameters on {} images, batch {}, {} steps, {:?}; writing to {}",
        data.len(),
        trainer.state.config.batch_size,
        trainer.state.config.steps,
        args.device.device,
        args.run_dir.display()
    );
    let report = trainer.run(&data, &options).map_err(|e| e.to_string())?;
    let stopped_early = report.last_step < trainer.state.config.steps;
    let mean = |xs: &[f32]| xs.iter().map(|&x| x as f64).sum::<f64>() / xs.len().max(1) as f64;
    let tail = &report.losses[report.losses.len().saturating_sub(100)..];
    eprintln!(
        "{}: steps {}→{}, mean loss of the last {} steps {:.4}, {:.1} images/s; checkpoint {}",
        if stopped_early { "stopped" } else { "done" },
        report.first_step,
        report.last_step,
        tail.len(),
        mean(tail),
        report.images_per_s,
        checkpoint_path.display()
    );
    if !stopped_early {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "continue with: gendi train --run-dir {} --resume",
        args.run_dir.display()
    );
    Ok(ExitCode::from(130))
}

/// A second signal this soon after the first is the same request: timeout(1) signals the run and
/// then the run's whole process group, so `timeout 500 gendi train …` delivers SIGTERM twice.
const SAME_REQUEST: Duration = Duration::from_secs(1);

/// A flag that the first Ctrl-C (or SIGTERM) sets: the run then stops after its current step and
/// writes a checkpoint of it. A second one, later than [`SAME_REQUEST`], exits at once, keeping
/// the last checkpoint.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let mut first: Option<Instant> = None;
    ctrlc::set_handler(move || match first {
        None => {
            first = Some(Instant::now());
            set.store(true, Ordering::Relaxed);
            eprintln!(
                "\nstopping after this step, with a checkpoint (Ctrl-C again to quit at once)"
            );
        }
        Some(at) if at.elapsed() < SAME_REQUEST => {}
        Some(_) => {
            eprintln!("\ninterrupted again: exiting; the last checkpoint is kept");
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    Ok(flag)
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LrDecayArg {
    Cosine,
    Constant,
}
