//! The training loop: L_simple = E‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t, y)‖² (Ho et al. eq. 14),
//! or flow matching's E‖(x_0 − ε) − v_θ((1 − σ_t) x_0 + σ_t ε, t, y)‖², with AdamW, label dropout for classifier-free guidance, an EMA of the weights, checkpoints
//! that a killed run resumes from, a loss CSV and sample grids to watch.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, CheckpointError, TrainState};
use super::{chart, images};
use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, Mnist, to_pixels};
use crate::kernels;
use crate::model::{UNet, UNetConfig};
use crate::pipeline::{DEFAULT_GUIDANCE, Digits, GenerationRequest};
use crate::rng::NoiseRng;
use crate::sampler::{Sampler, SamplerKind};
use crate::schedule::{NoiseSchedule, Objective, ScheduleConfig};
use crate::weights::{self, Manifest, WeightsError};

/// A training run's settings, stored in its checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: UNetConfig,
    pub schedule: ScheduleConfig,
    pub batch_size: usize,
    /// Total optimiser steps of the run.
    pub steps: u64,
    pub learning_rate: f64,
    /// Linear warm-up of the learning rate over this many steps; then `lr_decay`.
    pub warmup_steps: u64,
    /// What the learning rate does after the warm-up. Checkpoints written before this setting
    /// existed read as `Constant`, which is what they did.
    #[serde(default)]
    pub lr_decay: LrDecay,
    pub weight_decay: f32,
    /// Gradient norm clipping, per parameter tensor.
    pub grad_clip: f32,
    /// Decay of the exponential moving average of the weights (warmed up as (1+n)/(10+n)).
    pub ema_decay: f64,
    /// Probability of replacing a label by "no label", so the model also learns ε(x_t, t, ∅).
    pub label_dropout: f64,
    pub seed: u64,
    /// Exported weights this run started from instead of a random initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitWeights>,
}

/// The learning rate after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LrDecay {
    /// The peak rate to the end.
    #[default]
    Constant,
    /// Half a cosine from the peak rate down to `final_fraction` of it at the run's last step
    /// (Loshchilov & Hutter 2017, without restarts).
    Cosine { final_fraction: f64 },
}

/// Where a run warm-started from: exported weights (`www/weights/`), identified by the SHA-256
/// of the weights file and the training steps their manifest records. The run counts its steps
/// on from there, with a fresh optimiser whose learning rate warms up again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitWeights {
    pub sha256: String,
    pub step: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: UNetConfig::default(),
            schedule: ScheduleConfig::default(),
            batch_size: 64,
            steps: 20_000,
            learning_rate: 5e-4,
            warmup_steps: 500,
            lr_decay: LrDecay::Constant,
            weight_decay: 1e-4,
            grad_clip: 1.0,
            ema_decay: 0.999,
            label_dropout: 0.1,
            seed: 42,
            init: None,
        }
    }
}

/// Where and how often a run writes what it writes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub run_dir: PathBuf,
    /// Steps between checkpoints (and at the end); 0 = only at the end.
    pub checkpoint_every: u64,
    /// Steps between sample grids; 0 = none.
    pub sample_every: u64,
    pub progress: bool,
    /// Stop (after checkpointing) once this step is reached, as if killed there. For tests.
    pub stop_at: Option<u64>,
    /// Set from elsewhere (the CLI's Ctrl-C handler) to end the run after the step in progress,
    /// with a checkpoint of it.
    pub stop_requested: Option<Arc<AtomicBool>>,
}

impl RunOptions {
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        Self {
            run_dir: run_dir.into(),
            checkpoint_every: 500,
            sample_every: 1000,
            progress: true,
            stop_at: None,
            stop_requested: None,
        }
    }

    fn stop_requested(&self) -> bool {
        self.stop_requested
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.run_dir.join("checkpoint.gendi")
    }
}

#[derive(Debug)]
pub enum TrainError {
    Checkpoint(CheckpointError),
    Weights(WeightsError),
    Io(PathBuf, std::io::Error),
    Config(String),
    NonFinite {
        step: u64,
        loss: f32,
        kept: Option<u64>,
    },
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Checkpoint(e) => write!(f, "{e}"),
            Self::Weights(e) => write!(f, "{e}"),
            Self::Io(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            Self::Config(m) => write!(f, "invalid training settings: {m}"),
            Self::NonFinite { step, loss, kept } => {
                if loss.is_nan() && *kept != Some(*step) {
                    write!(
                        f,
                        "the loss or the weights became NaN at step {step}; training stopped. "
                    )?;
                } else {
                    write!(
                        f,
                        "the loss became {loss} at step {step}; training stopped. "
                    )?;
                }
                match kept {
                    Some(k) => write!(
                        f,
                        "The last good checkpoint (step {k}) is kept: resume with a lower --lr."
                    ),
                    None => write!(
                        f,
                        "No checkpoint was written yet: restart with a lower --lr."
                    ),
                }
            }
        }
    }
}

impl std::error::Error for TrainError {}

impl From<CheckpointError> for TrainError {
    fn from(e: CheckpointError) -> Self {
        Self::Checkpoint(e)
    }
}

impl From<WeightsError> for TrainError {
    fn from(e: WeightsError) -> Self {
        Self::Weights(e)
    }
}

/// What a call to [`Trainer::run`] did.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub first_step: u64,
    pub last_step: u64,
    /// Loss of each step run, in order.
    pub losses: Vec<f32>,
    pub images_per_s: f64,
}

pub struct Trainer {
    pub state: TrainState,
    /// On the autodiff device.
    pub model: UNet,
    /// On the plain device.
    pub ema: UNet,
    pub optimizer: ModuleOptimizer,
    schedule: NoiseSchedule,
    device: Device,
    /// The step of the newest checkpoint on disk, if any.
    last_checkpoint: Option<u64>,
}

/// Images a training step's shard holds at least: low enough that the tests' batches of 8 run
/// sharded too (the kill-and-resume test included).
const MIN_SHARD_IMAGES: usize = 4;

/// How many shards a training step cuts its batch into: two on the CPU with several threads,
/// else one. Two whatever the thread count: more threads share each shard's loops.
///
/// With the whole batch in one graph, every kernel loop is split over the threads and they meet
/// at its end, and burn-flex's element-wise ops, the concatenations and AdamW run on one thread
/// while the others wait: on a 2-core machine the second thread idled 11% of a step (`perf`),
/// and two threads trained only 1.45–1.7× as fast as one. The two shards keep both busy: batch
/// 64, nine rounds alternated with the unsharded binary, 89–115 against 84–103 images/s, 0.97–1.28×
/// and 1.14× in the median round.
fn shards_for(device: &Device, batch: usize) -> usize {
    if *device == Device::flex() && kernels::threads() > 1 && batch >= 2 * MIN_SHARD_IMAGES {
        2
    } else {
        1
    }
}

impl Trainer {
    /// A fresh run on `device` (a plain device; autodiff is added here).
    pub fn new(config: TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let config = settled(config)?;
        let model = {
            // burn's device RNG is global: seed and initialise under one lock, so that runs
            // started on other threads cannot draw in between and change the initial weights.
            static SEEDED_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _guard = SEEDED_INIT
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            device.seed(config.seed);
            let model = config.model.init(&device.clone().autodiff());
            // Parameters initialise lazily, on first use: draw them all now, inside the lock.
            model.visit(&mut FiniteCheck(true));
            model
        };
        Ok(Self::starting_at(config, model, 0, device))
    }

    /// A fresh optimiser on exported weights, loaded on the autodiff device (e.g. with
    /// `load_exported(dir, &device.clone().autodiff())`): both the trained model and its EMA
    /// start as `weights`, and steps count on from `manifest.training_steps`. The model and
    /// schedule come from the manifest, except for `objective` where given (fine-tuning the
    /// network to the other objective); the rest of `config` (learning rate, batch, dropout...)
    /// from the caller.
    pub fn from_exported(
        mut config: TrainConfig,
        manifest: &Manifest,
        weights: UNet,
        objective: Option<Objective>,
        device: &Device,
    ) -> Result<Self, TrainError> {
        if config.steps <= manifest.training_steps {
            return Err(TrainError::Config(format!(
                "the weights were trained for {} steps already: ask for more (--steps)",
                manifest.training_steps
            )));
        }
        config.model = manifest.model.clone();
        config.schedule = manifest.schedule;
        if let Some(objective) = objective {
            config.schedule.objective = objective;
        }
        config.init = Some(InitWeights {
            sha256: manifest.weights.sha256.clone(),
            step: manifest.training_steps,
        });
        let config = settled(config)?;
        Ok(Self::starting_at(
            config,
            weights,
            manifest.training_steps,
            device,
        ))
    }

    /// A run at `step` with a fresh optimiser, whose EMA starts as `model` (on the autodiff
    /// device).
    fn starting_at(config: TrainConfig, model: UNet, step: u64, device: &Device) -> Self {
        Self {
            schedule: NoiseSchedule::new(config.schedule),
            optimizer: optimizer(&config),
            state: TrainState {
                rng: NoiseRng::new(config.seed),
                config,
                step,
                elapsed_s: 0.0,
            },
            ema: model.valid(),
            model,
            device: device.clone(),
            last_checkpoint: None,
        }
    }

    /// Continues the run saved at `path`.
    pub fn resume(path: &Path, device: &Device) -> Result<Self, TrainError> {
        let checkpoint = Checkpoint::load(path)?;
        let config = checkpoint.state.config.clone();
        config.model.validate().map_err(TrainError::Config)?;
        config.schedule.validate().map_err(TrainError::Config)?;
        let model = weights::model_from_bytes(
            &config.model,
            &checkpoint.model,
            &device.clone().autodiff(),
        )?;
        let ema = weights::model_from_bytes(&config.model, &checkpoint.ema, device)?;
        let optimizer = optimizer(&config)
            .from_bytes(Bytes::from_bytes_vec(checkpoint.optimizer))
            .map_err(|e| {
                TrainError::Checkpoint(CheckpointError::Corrupt(path.to_path_buf(), e.to_string()))
            })?;
        Ok(Self {
            schedule: NoiseSchedule::new(config.schedule),
            last_checkpoint: Some(checkpoint.state.step),
            state: checkpoint.state,
            model,
            ema,
            optimizer,
            device: device.clone(),
        })
    }

    pub fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        Ok(Checkpoint {
            state: self.state.clone(),
            model: weights::model_to_bytes(&self.model.valid())?,
            ema: weights::model_to_bytes(&self.ema)?,
            optimizer: self
                .optimizer
                .into_bytes()
                .map_err(|e| TrainError::Config(e.to_string()))?
                .to_vec(),
        })
    }

    /// Writes a checkpoint, unless the weights are no longer finite: an update can turn them to
    /// NaN before any loss shows it, and such a checkpoint must not replace the last good one.
    fn save_checkpoint(&mut self, options: &RunOptions) -> Result<(), TrainError> {
        let mut check = FiniteCheck(true);
        self.model.valid().visit(&mut check);
        if !check.0 {
            return Err(TrainError::NonFinite {
                step: self.state.step,
                loss: f32::NAN,
                kept: self.last_checkpoint,
            });
        }
        self.checkpoint()?.save(&options.checkpoint_path())?;
        self.last_checkpoint = Some(self.state.step);
        Ok(())
    }

    /// One optimiser step on the images at `indices`. Returns the loss.
    pub fn train_step(&mut self, data: &Mnist, indices: &[usize]) -> f32 {
        let device = self.device.clone();
        kernels::on_cpu_pool(&device, || self.train_step_here(data, indices))
    }

    fn train_step_here(&mut self, data: &Mnist, indices: &[usize]) -> f32 {
        let config = &self.state.config;
        let autodiff = self.device.clone().autodiff();
        let batch = indices.len();
        // The batch's randomness, drawn in one order whatever the shards.
        let rng = &mut self.state.rng;
        let timesteps: Vec<usize> = (0..batch).map(|_| rng.below(self.schedule.len())).collect();
        let keep_label: Vec<bool> = (0..batch)
            .map(|_| rng.uniform() >= config.label_dropout)
            .collect();
        let noise = rng.normals(batch * IMAGE_PIXELS);

        // Each shard runs on its own fork of the model (the same weights, new autodiff leaves),
        // so the shards' graphs are independent and can run at once; their gradients add up to
        // the whole batch's, since each shard's loss is its part of the batch mean.
        let shards = shards_for(&self.device, batch);
        let per_shard = batch.div_ceil(shards);
        let shard_step = |shard: usize| {
            let range = shard * per_shard..((shard + 1) * per_shard).min(batch);
            let images = range.len();
            let (x0, labels) = data.batch(&indices[range.clone()], &autodiff);
            let labels: Vec<Option<usize>> = labels
                .into_iter()
                .zip(&keep_label[range.clone()])
                .map(|(label, &keep)| keep.then_some(label))
                .collect();
            let noise = Tensor::<4>::from_data(
                TensorData::new(
                    noise[range.start * IMAGE_PIXELS..range.end * IMAGE_PIXELS].to_vec(),
                    [images, 1, IMAGE_SIDE, IMAGE_SIDE],
                ),
                &autodiff,
            );
            let replica = self.model.clone().fork(&autodiff);
            let target = self.schedule.target(x0.clone(), noise.clone());
            let timesteps = &timesteps[range];
            let noisy = self.schedule.add_noise(x0, noise, timesteps);
            let predicted = replica.forward(noisy, timesteps, &labels);
            let loss = (predicted - target).square().sum() / (batch * IMAGE_PIXELS) as f32;
            let loss_value: f32 = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &replica);
            (loss_value, grads)
        };
        let mut loss_value = 0.0;
        let mut summed = GradientsAccumulator::<UNet>::new();
        for (loss, grads) in kernels::concurrently(shards, shard_step) {
            loss_value += loss;
            summed.accumulate(&self.model, grads);
        }

        let lr = learning_rate(config, self.state.step);
        self.model = self.optimizer.step(lr, self.model.clone(), summed.grads());
        self.state.step += 1;
        self.update_ema();
        loss_value
    }

    fn update_ema(&mut self) {
        let n = self.state.step as f64;
        let decay = self.state.config.ema_decay.min((1.0 + n) / (10.0 + n)) as f32;
        self.ema = super::params::blend(self.ema.clone(), &self.model.valid(), decay);
    }

    /// The images of step `step`: epoch-wise permutations of the training set, each drawn from
    /// the seed and the epoch number, so a resumed run sees the same batches.
    fn batch_indices(
        &self,
        data_len: usize,
        step: u64,
        cache: &mut Option<(u64, Vec<usize>)>,
    ) -> Vec<usize> {
        let batch = self.state.config.batch_size.min(data_len);
        let per_epoch = (data_len / batch) as u64;
        let (epoch, within) = (step / per_epoch, (step % per_epoch) as usize);
        if cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let seed =
                self.state.config.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
            *cache = Some((epoch, NoiseRng::new(seed).permutation(data_len)));
        }
        let order = &cache.as_ref().expect("just filled").1;
        order[within * batch..(within + 1) * batch].to_vec()
    }

    /// Trains until the config's step count (or `options.stop_at`), checkpointing, logging the
    /// loss to `loss.csv` and writing sample grids under `run_dir`.
    pub fn run(&mut self, data: &Mnist, options: &RunOptions) -> Result<TrainReport, TrainError> {
        if data.is_empty() {
            return Err(TrainError::Config("the training set is empty".into()));
        }
        let dir = &options.run_dir;
        let io = |p: &Path, e| TrainError::Io(p.to_path_buf(), e);
        std::fs::create_dir_all(dir.join("samples")).map_err(|e| io(dir, e))?;
        let csv_path = dir.join("loss.csv");
        let mut csv = open_loss_csv(&csv_path, self.state.step).map_err(|e| io(&csv_path, e))?;

        let end = options
            .stop_at
            .unwrap_or(u64::MAX)
            .min(self.state.config.steps);
        let first_step = self.state.step;
        let bar = progress_bar(options.progress, first_step, self.state.config.steps);
        let started = Instant::now();
        let elapsed_before = self.state.elapsed_s;
        let mut losses = Vec::new();
        let mut order_cache = None;
        let mut images = 0usize;
        let mut smoothed: Option<f64> = None;
        let mut stopped_early = false;

        while self.state.step < end && !stopped_early {
            let indices = self.batch_indices(data.len(), self.state.step, &mut order_cache);
            let loss = self.train_step(data, &indices);
            let step = self.state.step;
            if !loss.is_finite() {
                bar.abandon();
                return Err(TrainError::NonFinite {
                    step,
                    loss,
                    kept: self.last_checkpoint,
                });
            }
            losses.push(loss);
            images += indices.len();
            let seconds = started.elapsed().as_secs_f64();
            self.state.elapsed_s = elapsed_before + seconds;
            let speed = images as f64 / seconds.max(1e-9);
            let lr = learning_rate(&self.state.config, step - 1);
            writeln!(csv, "{step},{loss},{lr},{:.1}", self.state.elapsed_s)
                .map_err(|e| io(&csv_path, e))?;
            let s = smoothed.map_or(loss as f64, |s| 0.98 * s + 0.02 * loss as f64);
            smoothed = Some(s);
            bar.set_position(step);
            bar.set_message(format!("loss {s:.4}  {speed:.0} img/s"));

            let due = |every: u64| every > 0 && step.is_multiple_of(every);
            stopped_early = step < end && options.stop_requested();
            if due(options.checkpoint_every) || step == end || stopped_early {
                csv.flush().map_err(|e| io(&csv_path, e))?;
                self.save_checkpoint(options)?;
                // The curve so far, so a person can watch a long run.
                let path = dir.join("loss.png");
                plot_loss_csv(&csv_path, &path).map_err(|e| io(&path, e))?;
            }
            if due(options.sample_every) {
                let path = dir.join("samples").join(format!("step_{step:07}.png"));
                self.sample_grid(&path).map_err(|e| io(&path, e))?;
            }
        }
        csv.flush().map_err(|e| io(&csv_path, e))?;
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        Ok(TrainReport {
            first_step,
            last_step: self.state.step,
            losses,
            images_per_s: images as f64 / seconds.max(1e-9),
        })
    }

    /// Two of each digit from the EMA weights (the objective's default sampler, fixed seed) as
    /// one grid.
    pub fn sample_grid(&self, path: &Path) -> std::io::Result<()> {
        let kind = SamplerKind::default_for(self.schedule.objective());
        let sampler = Sampler::new(self.schedule.clone(), kind).map_err(std::io::Error::other)?;
        let classes = self.state.config.model.num_classes;
        let mut pixels = Vec::new();
        for digit in 0..classes.max(1) {
            let digits = if classes > 0 {
                Digits::Only(digit)
            } else {
                Digits::Unconditional
            };
            let seed = 1000 + digit as u64;
            let request = GenerationRequest::new(2, seed, digits, DEFAULT_GUIDANCE);
            let values =
                super::generate_images(&self.ema, None, &sampler, &request, 2, &self.device, || {})
                    .map_err(std::io::Error::other)?;
            pixels.extend(to_pixels(&values));
        }
        images::grid(&pixels, 10, 2).save(path)
    }
}

/// A new run's config, checked before any tensor is made; an unconditional model (no classes)
/// has no labels to drop, so its label dropout is recorded as 0 whatever was asked.
fn settled(mut config: TrainConfig) -> Result<TrainConfig, TrainError> {
    config.model.validate().map_err(TrainError::Config)?;
    config.schedule.validate().map_err(TrainError::Config)?;
    if config.batch_size == 0 {
        return Err(TrainError::Config("batch size must be at least 1".into()));
    }
    if let LrDecay::Cosine { final_fraction } = config.lr_decay
        && !(0.0..=1.0).contains(&final_fraction)
    {
        return Err(TrainError::Config(format!(
            "the final learning-rate fraction is {final_fraction}, allowed 0 to 1"
        )));
    }
    if config.model.num_classes == 0 {
        config.label_dropout = 0.0;
    }
    Ok(config)
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.grad_clip)))
        .init()
}

/// Linear warm-up to the base rate (from the run's first step), then `config.lr_decay`.
pub fn learning_rate(config: &TrainConfig, step: u64) -> f64 {
    let first = config.init.as_ref().map_or(0, |init| init.step);
    let done = step.saturating_sub(first);
    let warm = ((done + 1) as f64 / config.warmup_steps.max(1) as f64).min(1.0);
    let decay = match config.lr_decay {
        LrDecay::Constant => 1.0,
        LrDecay::Cosine { final_fraction } => {
            let span = config
                .steps
                .saturating_sub(first)
                .saturating_sub(config.warmup_steps)
                .max(1);
            let progress = (done.saturating_sub(config.warmup_steps) as f64 / span as f64).min(1.0);
            final_fraction
                + (1.0 - final_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    };
    config.learning_rate * warm * decay
}

/// Opens `loss.csv` for appending, first dropping rows past `step` (written after the checkpoint
/// a resumed run starts from).
fn open_loss_csv(path: &Path, step: u64) -> std::io::Result<std::fs::File> {
    let header = "step,loss,learning_rate,elapsed_s";
    // Complete rows only, in increasing steps: a run killed mid-write can leave a cut last line.
    let mut kept = Vec::new();
    let mut last = 0;
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let row_step = fields[0].parse::<u64>().ok();
            let complete =
                fields.len() == 4 && fields[1..].iter().all(|f| f.parse::<f64>().is_ok());
            if let Some(row_step) = row_step
                && complete
                && row_step <= step
                && row_step > last
            {
                kept.push(line.to_string());
                last = row_step;
            }
        }
    }
    // Rewritten beside the old file and renamed over it, so a kill here loses no rows.
    let tmp = path.with_extension("csv.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{header}")?;
        for line in kept {
            writeln!(file, "{line}")?;
        }
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::OpenOptions::new().append(true).open(path)
}

/// The (step, loss) rows of a `loss.csv`; a malformed row is an error naming its line.
pub fn read_loss_csv(path: &Path) -> std::io::Result<Vec<(u64, f64)>> {
    let text = std::fs::read_to_string(path)?;
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate().skip(1) {
        let mut fields = line.split(',');
        let step = fields.next().and_then(|f| f.parse::<u64>().ok());
        let loss = fields.next().and_then(|f| f.parse::<f64>().ok());
        match (step, loss) {
            (Some(step), Some(loss)) => rows.push((step, loss)),
            _ if line.trim().is_empty() => {}
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "line {}: expected step,loss,… but found {line:?}",
                        index + 1
                    ),
                ));
            }
        }
    }
    Ok(rows)
}

/// Draws the loss column of a `loss.csv` against its step column.
pub fn plot_loss_csv(csv: &Path, png: &Path) -> std::io::Result<()> {
    draw_loss(&read_loss_csv(csv)?, png)
}

/// Draws (step, loss) rows as the 800×400 chart of `loss.png`.
pub fn draw_loss(rows: &[(u64, f64)], png: &Path) -> std::io::Result<()> {
    let (steps, losses): (Vec<u64>, Vec<f64>) = rows.iter().copied().unzip();
    chart::loss_chart(&steps, &losses, 800, 400).save(png)
}

fn progress_bar(visible: bool, position: u64, total: u64) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total).with_position(position);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar
}

/// Whether every float parameter is finite.
struct FiniteCheck(bool);

impl ModuleVisitor for FiniteCheck {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.0 {
            let total: f32 = param.val().abs().sum().into_scalar();
            self.0 = total.is_finite();
        }
    }
}
