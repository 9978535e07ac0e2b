//! The CLI's commands and the options they share.

pub mod eval;
pub mod sample;
pub mod train;

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use gendi::model::{UNet, UNetConfig};
use gendi::native::Backend;
use gendi::native::bench;
use gendi::native::checkpoint::Checkpoint;
use gendi::native::export::{ExportError, export, load_exported, reexport};
use gendi::native::train::{draw_loss, read_loss_csv};
use gendi::pipeline::{
    Autoguide, DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_SIGMA_MAX, Digits, GenerationRequest,
};
use gendi::sampler::{DdpmVariance, SamplerKind, defaults};
use gendi::schedule::{BetaSchedule, Objective, ScheduleConfig};
use gendi::weights;

#[derive(Args)]
pub struct DeviceArg {
    /// Where to compute: cpu (burn-flex, all cores) or wgpu (a GPU through Vulkan/Metal/DX12).
    #[arg(long, value_enum, default_value = "cpu")]
    device: Backend,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    Linear,
    Cosine,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ObjectiveArg {
    /// Predict the noise ε of x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM's L_simple).
    Epsilon,
    /// Flow matching: predict the velocity x_0 − ε along the straight path
    /// x_t = (1 − σ_t) x_0 + σ_t ε (rectified flow); sampled with --sampler euler or heun.
    Flow,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum SamplerArg {
    /// Ancestral sampling over all T steps (Ho et al. Algorithm 2).
    Ddpm,
    /// DDIM over --steps steps (Song et al.); deterministic at --eta 0.
    Ddim,
    /// DPM-Solver++(2M) over --steps steps (Lu et al.): deterministic, good in 10–20 steps.
    DpmSolver,
    /// Annealed Langevin dynamics on the model's score (Song & Ermon) at --steps noise levels,
    /// --langevin-steps at each, step size --epsilon.
    Langevin,
    /// Predictor–corrector (Song et al. 2021): --steps ancestral steps, each after
    /// --langevin-steps Langevin corrector steps at --snr.
    #[value(alias = "pc")]
    PredictorCorrector,
    /// Euler's method on the flow's ODE over --steps steps (flow-matching weights).
    Euler,
    /// Heun's second-order method on the flow's ODE over --steps steps, 2 model evaluations
    /// per step but the last (flow-matching weights).
    Heun,
}

impl From<SamplerKind> for SamplerArg {
    fn from(kind: SamplerKind) -> Self {
        match kind {
            SamplerKind::Ddpm { .. } => Self::Ddpm,
            SamplerKind::Ddim { .. } => Self::Ddim,
            SamplerKind::DpmSolver { .. } => Self::DpmSolver,
            SamplerKind::Langevin { .. } => Self::Langevin,
            SamplerKind::PredictorCorrector { .. } => Self::PredictorCorrector,
            SamplerKind::Euler { .. } => Self::Euler,
            SamplerKind::Heun { .. } => Self::Heun,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum VarianceArg {
    /// σ_t² = β̃_t, the posterior variance.
    Posterior,
    /// σ_t² = β_t.
    Beta,
}

#[derive(Args)]
pub struct SamplerArgs {
    /// Reverse process. The first five run ε-prediction weights, euler and heun flow-matching
    /// weights. [default: dpm-solver for ε-prediction (at 20 steps it scores like DDIM at 50,
    /// `gendi eval --compare`), heun for flow matching]
    #[arg(long, value_enum)]
    sampler: Option<SamplerArg>,
    /// Steps (noise levels for langevin), at most T. [default: ddim 50, dpm-solver 20,
    /// langevin 100, predictor-corrector 250, euler 20, heun 10]
    #[arg(long)]
    steps: Option<usize>,
    /// DDIM's η: 0 deterministic, 1 like DDPM.
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// DDPM's variance σ_t².
    #[arg(long, value_enum, default_value = "posterior")]
    variance: VarianceArg,
    /// Langevin steps per noise level (langevin) or corrector steps per step (predictor-corrector).
    /// [default: langevin 2, predictor-corrector 1]
    #[arg(long)]
    langevin_steps: Option<usize>,
    /// Annealed Langevin's step size ε at the cleanest level (Song & Ermon's ε).
    #[arg(long, default_value_t = defaults::EPSILON)]
    epsilon: f64,
    /// The corrector's signal-to-noise ratio r (predictor-corrector).
    #[arg(long, default_value_t = defaults::SNR)]
    snr: f64,
}
impl SamplerArgs {
    /// The sampler asked for, or the default for weights trained for `objective`
    /// ([`SamplerKind::default_for`]), with this command line's settings.
    fn kind(&self, objective: Objective) -> SamplerKind {
        let sampler = self
            .sampler
            .unwrap_or_else(|| SamplerKind::default_for(objective).into());
        self.kind_of(sampler, self.steps)
    }

    /// `sampler` with `steps` (or its default) and this command line's other settings.
    fn kind_of(&self, sampler: SamplerArg, steps: Option<usize>) -> SamplerKind {
        let steps = |default: usize| steps.unwrap_or(default);
        match sampler {
            SamplerArg::Ddpm => SamplerKind::Ddpm {
                variance: match self.variance {
                    VarianceArg::Posterior => DdpmVariance::PosteriorBeta,
                    VarianceArg::Beta => DdpmVariance::Beta,
                },
            },
            SamplerArg::Ddim => SamplerKind::Ddim {
                steps: steps(defaults::DDIM_STEPS),
                eta: self.eta,
            },
            SamplerArg::DpmSolver => SamplerKind::DpmSolver {
                steps: steps(defaults::DPM_SOLVER_STEPS),
            },
            SamplerArg::Langevin => SamplerKind::Langevin {
                levels: steps(defaults::LANGEVIN_LEVELS),
                steps_per_level: self.langevin_steps.unwrap_or(defaults::STEPS_PER_LEVEL),
                epsilon: self.epsilon,
            },
            SamplerArg::PredictorCorrector => SamplerKind::PredictorCorrector {
                steps: steps(defaults::PC_STEPS),
                corrector_steps: self.langevin_steps.unwrap_or(defaults::CORRECTOR_STEPS),
                snr: self.snr,
            },
            SamplerArg::Euler => SamplerKind::Euler {
                steps: steps(defaults::EULER_STEPS),
            },
            SamplerArg::Heun => SamplerKind::Heun {
                steps: steps(defaults::HEUN_STEPS),
            },
        }
    }
}

/// Classifier-free guidance of the digits drawn with a label.
#[derive(Args, Clone, Copy)]
pub struct GuidanceArgs {
    /// Guidance scale w: ε = (1+w)·ε(x,t,y) − w·ε(x,t,∅). Not used without a label.
    #[arg(long, default_value_t = DEFAULT_GUIDANCE)]
    pub guidance: f32,
    /// Guide only the steps whose noise-to-signal ratio σ_t = b_t/a_t is at most this (a
    /// limited interval, Kynkäänniemi et al. 2024); the noisier steps run the conditional model
    /// alone, at half the cost. `inf` guides every step.
    #[arg(long, value_name = "SIGMA", default_value_t = DEFAULT_GUIDANCE_SIGMA_MAX)]
    pub guidance_sigma_max: f32,
}

impl GuidanceArgs {
    /// What to generate: `count` images of `digits` from `seed`, guided as asked.
    pub fn request(&self, count: usize, seed: u64, digits: Digits) -> GenerationRequest {
        GenerationRequest {
            guidance_sigma_max: self.guidance_sigma_max,
            ..GenerationRequest::new(count, seed, digits, self.guidance)
        }
    }

    /// The settings, for a JSON report.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "scale": self.guidance, "sigma_max": self.guidance_sigma_max })
    }
}

/// The autoguidance scale w that `--autoguide` uses unless told otherwise.
const DEFAULT_AUTOGUIDANCE: f32 = 2.0;

/// Autoguidance of the unconditional digits: a worse model of the same images and noise steers
/// them.
#[derive(Args, Clone)]
pub struct AutoguideArgs {
    /// Exported weights of a worse model of the same noise (an earlier step of its run, or a
    /// smaller network trained for less time) that steers unconditional digits away from its
    /// errors, ε = (1+w)·ε_model − w·ε_guide (Karras et al. 2024); a second model evaluation per
    /// step. Labelled digits ignore it.
    #[arg(long, value_name = "DIR")]
    pub autoguide: Option<PathBuf>,
    /// Autoguidance scale w (with --autoguide); 0 turns it off.
    #[arg(long, value_name = "W", default_value_t = DEFAULT_AUTOGUIDANCE)]
    pub autoguidance: f32,
}

impl AutoguideArgs {
    /// The guide's directory and network, checked against the model's network and schedule;
    /// `None` without --autoguide or at scale 0.
    pub fn load(
        &self,
        model: &UNetConfig,
        schedule: &ScheduleConfig,
        device: &burn::tensor::Device,
    ) -> Result<Option<Guide>, String> {
        if !self.autoguidance.is_finite() || self.autoguidance < 0.0 {
            return Err(format!(
                "--autoguidance is {}: give a scale from 0 (off) up",
                self.autoguidance
            ));
        }
        let Some(dir) = self.autoguide.as_ref().filter(|_| self.autoguidance != 0.0) else {
            return Ok(None);
        };
        let (manifest, guide) =
            load_exported(dir, device).map_err(|e| format!("--autoguide: {e}"))?;
        weights::check_guide(model, schedule, &manifest)
            .map_err(|e| format!("--autoguide {}: {e}", dir.display()))?;
        Ok(Some(Guide {
            dir: dir.clone(),
            model: guide,
            weight: self.autoguidance,
        }))
    }
}

/// A loaded `--autoguide`: its network, where it came from and its scale.
pub struct Guide {
    dir: PathBuf,
    model: UNet,
    weight: f32,
}

impl Guide {
    pub fn autoguide(&self) -> Autoguide<'_> {
        Autoguide {
            model: &self.model,
            weight: self.weight,
        }
    }

    /// What a run prints.
    pub fn describe(&self) -> String {
        format!(
            "autoguided by {} at w = {}",
            self.dir.display(),
            self.weight
        )
    }

    /// The settings, for a JSON report.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "weights": self.dir, "scale": self.weight })
    }
}

/// Which weights, which sampler, which device: what every generating command takes.
#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    source: ModelSource,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
pub struct ModelSource {
    /// Exported weights directory (manifest.json + weights).
    #[arg(long, default_value = "www/weights")]
    weights: PathBuf,
    /// Use the EMA weights of this training checkpoint instead of --weights.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}
impl ModelSource {
    /// The network, its config and its noise schedule.
    fn load(
        &self,
        device: &burn::tensor::Device,
    ) -> Result<(UNet, UNetConfig, ScheduleConfig), String> {
        match &self.checkpoint {
            Some(path) => {
                let checkpoint = Checkpoint::load(path).map_err(|e| e.to_string())?;
                let config = checkpoint.state.config;
                let model = weights::model_from_bytes(&config.model, &checkpoint.ema, device)
                    .map_err(|e| e.to_string())?;
                Ok((model, config.model, config.schedule))
            }
            None => {
                let (manifest, model) =
                    load_exported(&self.weights, device).map_err(|e| match e {
                        ExportError::Io(..) => {
                            format!("{e}\n(train and `gendi export` first, or pass --checkpoint)")
                        }
                        e => e.to_string(),
                    })?;
                Ok((model, manifest.model, manifest.schedule))
            }
        }
    }
}

#[derive(Args)]
pub struct ExportArgs {
    /// Training checkpoint to export. Several (copies of one run's checkpoint at different
    /// steps) export the mean of their weights, a longer average than the EMA alone.
    #[arg(long, num_args = 1.., default_value = "runs/default/checkpoint.gendi")]
    checkpoint: Vec<PathBuf>,
    /// Store already exported weights (a directory like www/weights) again in another precision,
    /// instead of exporting a checkpoint.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["checkpoint", "raw"])]
    weights: Option<PathBuf>,
    /// Output directory (what the page fetches).
    #[arg(long, default_value = "www/weights")]
    out: PathBuf,
    /// Export the raw trained weights instead of their EMA.
    #[arg(long)]
    raw: bool,
    /// Store the weights in f32 instead of f16 (twice the download, no rounding).
    #[arg(long)]
    f32: bool,
    /// Store the weights in 8 bits (one f32 scale per row; vectors, embeddings and the
    /// full-resolution layers in f16): about half the f16 download; check with `gendi eval`.
    #[arg(long, conflicts_with = "f32")]
    int8: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Timed training steps.
    #[arg(long, default_value_t = 10)]
    train_steps: usize,
    /// Images per timed training step (a GPU may need more than the CPU to be busy).
    #[arg(long, default_value_t = 64)]
    train_batch: usize,
    /// Timed sampling steps per batch size.
    #[arg(long, default_value_t = 20)]
    sample_steps: usize,
    /// CPU kernels to time: GENDI's own (src/kernels/), GENDI's with every convolution as
    /// im2col + GEMM (no Winograd), or burn-flex's ops, for comparison.
    #[arg(long, value_enum, default_value_t = Kernels::Gendi)]
    kernels: Kernels,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernels {
    Gendi,
    Im2col,
    Burn,
}

#[derive(Args)]
pub struct LossArgs {
    /// loss.csv files of one run, or of runs that continue each other (a later file's row wins
    /// where two give the same step).
    #[arg(required = true)]
    csv: Vec<PathBuf>,
    /// Leave out steps before this one.
    #[arg(long)]
    from: Option<u64>,
    /// Leave out steps after this one (e.g. rows logged after the last checkpoint).
    #[arg(long)]
    to: Option<u64>,
    /// Where to write the chart.
    #[arg(long, default_value = "loss.png")]
    out: PathBuf,
}

pub fn schedule_config(
    arg: ScheduleArg,
    timesteps: usize,
    objective: ObjectiveArg,
) -> ScheduleConfig {
    let beta_schedule = match arg {
        ScheduleArg::Linear => BetaSchedule::default(),
        ScheduleArg::Cosine => BetaSchedule::Cosine { s: 0.008 },
    };
    ScheduleConfig {
        timesteps,
        beta_schedule,
        objective: objective.into(),
    }
}

impl From<ObjectiveArg> for Objective {
    fn from(arg: ObjectiveArg) -> Self {
        match arg {
            ObjectiveArg::Epsilon => Objective::Epsilon,
            ObjectiveArg::Flow => Objective::Flow,
        }
    }
}

/// A seed for when none is given: the clock's nanoseconds, folded to something short to type.
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos % 1_000_000) as u64
}

pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what:>12} {{bar:30}} {{pos}}/{{len}}  {{msg}} [{{elapsed_precise}} < {{eta_precise}}]"
        ))
        .expect("valid template"),
    );
    bar
}

pub fn run_export(args: ExportArgs) -> Result<(), String> {
    let dtype = if args.f32 {
        weights::StoredDType::F32
    } else if args.int8 {
        weights::StoredDType::Int8
    } else {
        weights::StoredDType::F16
    };
    let manifest = match &args.weights {
        Some(dir) => reexport(dir, &args.out, dtype),
        None => {
            let checkpoints = args
                .checkpoint
                .iter()
                .map(|path| Checkpoint::load(path).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            if checkpoints.len() > 1 {
                let steps: Vec<String> = checkpoints
                    .iter()
                    .map(|c| c.state.step.to_string())
                    .collect();
                println!("averaging the weights of steps {}", steps.join(", "));
            }
            export(&checkpoints, &args.out, !args.raw, dtype)
        }
    }
    .map_err(|e| e.to_string())?;
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

pub fn run_bench(args: BenchArgs) -> Result<(), String> {
    let device = args.device.device.device()?;
    let name = format!("{:?}", args.device.device).to_lowercase();
    gendi::kernels::use_gendi_kernels(args.kernels != Kernels::Burn);
    gendi::kernels::use_winograd(args.kernels == Kernels::Gendi);
    let report = bench::run(
        &device,
        &name,
        args.train_steps.max(1),
        args.train_batch.max(1),
        args.sample_steps.max(1),
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("serialisable")
    );
    Ok(())
}

pub fn run_loss(args: LossArgs) -> Result<(), String> {
    let mut by_step = std::collections::BTreeMap::new();
    for path in &args.csv {
        let rows = read_loss_csv(path).map_err(|e| format!("{}: {e}", path.display()))?;
        by_step.extend(rows);
    }
    let range = args.from.unwrap_or(0)..=args.to.unwrap_or(u64::MAX);
    let rows: Vec<(u64, f64)> = by_step
        .into_iter()
        .filter(|(step, _)| range.contains(step))
        .collect();
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Err("no loss rows in that step range".into());
    };
    draw_loss(&rows, &args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mean = rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64;
    println!(
        "steps {}–{} ({} rows, mean loss {mean:.5}) drawn to {}",
        first.0,
        last.0,
        rows.len(),
        args.out.display()
    );
    Ok(())
}
