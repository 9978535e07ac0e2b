//! The reverse process: samplers that turn x_T ~ N(0, I) into digits with the trained network
//! (ε_θ, or the velocity v_θ of flow-matching weights), behind one API in the shape of diffusers'
//! schedulers. A pipeline reads [`Sampler::next_timestep`],
//! runs the model there and hands its output to [`Sampler::step`], until the sampler is done.
//! Each sampler's update lives in its own file; this one plans the model evaluations and
//! dispatches.
//!
//! Notation map: `model_output` → ε_θ(x_t, t) (v_θ for the flow samplers), `sample` → x_t, `pred_x0` → x̂_0,
//! `prev_sample` → the next x (x_{t_prev}, or x_t again after a Langevin step), `sigma` → σ_t.

mod ddim;
mod ddpm;
mod dpm_solver;
mod flow;
mod langevin;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

pub use ddpm::DdpmVariance;

use crate::rng::NoiseRng;
use crate::schedule::{NoiseSchedule, Objective};

/// Which reverse process to run, with its settings. Named as on the command line and in the
/// page's links: `{ "kind": "dpm-solver", "steps": 20 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SamplerKind {
    /// Ancestral sampling over all T steps (Ho et al. Algorithm 2).
    Ddpm {
        #[serde(default)]
        variance: DdpmVariance,
    },
    /// DDIM (Song et al. 2021, eq. 12) over `steps` ≤ T timesteps; η = 0 is deterministic,
    /// η = 1 is DDPM's posterior.
    Ddim {
        steps: usize,
        #[serde(default)]
        eta: f64,
    },
    /// DPM-Solver++(2M) (Lu et al. 2022) over `steps` timesteps: deterministic, second order.
    DpmSolver { steps: usize },
    /// Annealed Langevin dynamics (Song & Ermon 2019) on the model's score: `steps_per_level`
    /// Langevin steps at each of `levels` noise levels, step size ε σ_t²/σ_min², then x̂_0.
    Langevin {
        levels: usize,
        #[serde(default = "defaults::steps_per_level")]
        steps_per_level: usize,
        #[serde(default = "defaults::epsilon")]
        epsilon: f64,
    },
    /// Predictor–corrector (Song et al. 2021): at each of `steps` timesteps, `corrector_steps`
    /// Langevin steps at signal-to-noise ratio `snr`, then an ancestral step to the next.
    PredictorCorrector {
        steps: usize,
        #[serde(default = "defaults::corrector_steps")]
        corrector_steps: usize,
        #[serde(default = "defaults::snr")]
        snr: f64,
    },
    /// Euler's method on the flow's ODE over `steps` evenly spaced σ (flow-matching weights).
    Euler { steps: usize },
    /// Heun's second-order method on the flow's ODE over `steps` steps: two model evaluations
    /// each, one for the last (flow-matching weights).
    Heun { steps: usize },
}

impl SamplerKind {
    /// The objective of the weights this sampler runs.
    pub fn objective(&self) -> Objective {
        match self {
            Self::Euler { .. } | Self::Heun { .. } => Objective::Flow,
            _ => Objective::Epsilon,
        }
    }

    /// The sampler used where none is asked for: DPM-Solver++ 20 for ε-prediction, Heun 10 for
    /// flow matching (both 19–20 model evaluations).
    pub fn default_for(objective: Objective) -> Self {
        match objective {
            Objective::Epsilon => Self::DpmSolver {
                steps: defaults::DPM_SOLVER_STEPS,
            },
            Objective::Flow => Self::Heun {
                steps: defaults::HEUN_STEPS,
            },
        }
    }
}

/// The settings a sampler starts with where none is given (CLI flags, the page's options).
pub mod defaults {
    pub const DDIM_STEPS: usize = 50;
    pub const DPM_SOLVER_STEPS: usize = 20;
    pub const LANGEVIN_LEVELS: usize = 100;
    pub const PC_STEPS: usize = 250;
    pub const EULER_STEPS: usize = 20;
    pub const HEUN_STEPS: usize = 10;
    /// Song & Ermon's ε (2e-5 with σ_min = 0.01, as here).
    pub const EPSILON: f64 = 2e-5;
    pub const STEPS_PER_LEVEL: usize = 2;
    /// Song et al.'s r for the Langevin corrector.
    pub const SNR: f64 = 0.16;
    pub const CORRECTOR_STEPS: usize = 1;

    pub(super) fn steps_per_level() -> usize {
        STEPS_PER_LEVEL
    }
    pub(super) fn epsilon() -> f64 {
        EPSILON
    }
    pub(super) fn corrector_steps() -> usize {
        CORRECTOR_STEPS
    }
    pub(super) fn snr() -> f64 {
        SNR
    }
}

/// The most Langevin steps per noise level (annealed Langevin, the corrector).
pub const MAX_LANGEVIN_STEPS: usize = 100;

impl std::fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Ddpm { variance } => write!(f, "DDPM ({variance:?} variance)"),
            Self::Ddim { steps, eta } => write!(f, "DDIM {steps} (η {eta})"),
            Self::DpmSolver { steps } => write!(f, "DPM-Solver++(2M) {steps}"),
            Self::Langevin {
                levels,
                steps_per_level,
                epsilon,
            } => write!(
                f,
                "annealed Langevin {levels}×{steps_per_level} (ε {epsilon})"
            ),
            Self::PredictorCorrector {
                steps,
                corrector_steps,
                snr,
            } => write!(
                f,
                "predictor–corrector {steps}×(1+{corrector_steps}) (snr {snr})"
            ),
            Self::Euler { steps } => write!(f, "Euler {steps}"),
            Self::Heun { steps } => write!(f, "Heun {steps}"),
        }
    }
}

/// What one step produced.
pub struct StepOutput {
    /// The input of the next step (the final image after the last one).
    pub prev_sample: Tensor<4>,
    /// x̂_0: the clean image the model predicts from the step's input.
    pub pred_x0: Tensor<4>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SamplerError {
    TooManySteps {
        steps: usize,
        timesteps: usize,
    },
    NoSteps,
    /// A setting outside what the sampler accepts.
    OutOfRange {
        setting: &'static str,
        value: f64,
        allowed: &'static str,
    },
    /// [`Sampler::step`] after the last step.
    Finished,
    /// A sampler for the other objective than the weights were trained on.
    WrongObjective {
        sampler: SamplerKind,
        weights: Objective,
    },
}

impl std::fmt::Display for SamplerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManySteps { steps, timesteps } => write!(
                f,
                "{steps} steps asked, but a sampler takes at most T = {timesteps}"
            ),
            Self::NoSteps => write!(f, "a sampler needs at least one step"),
            Self::OutOfRange {
                setting,
                value,
                allowed,
            } => write!(f, "{setting} is {value}, allowed {allowed}"),
            Self::Finished => write!(f, "the sampler has already taken its last step"),
            Self::WrongObjective { sampler, weights } => {
                let fits = match weights {
                    Objective::Epsilon => "ddpm, ddim, dpm-solver, langevin or predictor-corrector",
                    Objective::Flow => "euler or heun",
                };
                write!(
                    f,
                    "{sampler} runs {} weights, but these weights were trained for {weights}: \
                     use {fits}",
                    sampler.objective()
                )
            }
        }
    }
}

impl std::error::Error for SamplerError {}

/// One model evaluation of a sampler's plan and what is done with it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Move {
    /// A reverse step from x_t to x_to (`None`: to x_0).
    Predict { t: usize, to: Option<usize> },
    /// A Langevin step that stays at noise level t.
    Correct { t: usize },
    /// Heun's second evaluation, at t, the end of the step begun at `from`.
    HeunCorrect { from: usize, t: usize },
}

impl Move {
    fn t(self) -> usize {
        match self {
            Move::Predict { t, .. } | Move::Correct { t } | Move::HeunCorrect { t, .. } => t,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sampler {
    schedule: NoiseSchedule,
    kind: SamplerKind,
    /// The model evaluations in order, noisiest first.
    moves: Vec<Move>,
    /// `moves[i].t()`: where the model is evaluated (repeated for Langevin steps).
    timesteps: Vec<usize>,
    /// Index into `moves` of the next step.
    next: usize,
    /// DPM-Solver++'s history: λ and x̂_0 of the previous step.
    previous: Option<(f64, Tensor<4>)>,
    /// Heun's step in progress: x and v where it began.
    heun_start: Option<(Tensor<4>, Tensor<4>)>,
    /// Clip x̂_0 to [−1, 1], the data range, before using it (diffusers' `clip_sample`).
    clip_sample: bool,
}

impl Sampler {
    pub fn new(schedule: NoiseSchedule, kind: SamplerKind) -> Result<Self, SamplerError> {
        if kind.objective() != schedule.objective() {
            return Err(SamplerError::WrongObjective {
                sampler: kind,
                weights: schedule.objective(),
            });
        }
        let t_max = schedule.len();
        let count = |steps: usize| {
            if steps == 0 {
                Err(SamplerError::NoSteps)
            } else if steps > t_max {
                Err(SamplerError::TooManySteps {
                    steps,
                    timesteps: t_max,
                })
            } else {
                Ok(steps)
            }
        };
        let moves = match kind {
            SamplerKind::Ddpm { .. } => chain(&leading(t_max, t_max)),
            SamplerKind::Ddim { steps, eta } => {
                in_range("DDIM's eta", eta, 0.0, 1.0, "0 (deterministic) to 1 (DDPM)")?;
                chain(&leading(count(steps)?, t_max))
            }
            SamplerKind::DpmSolver { steps } => chain(&trailing(count(steps)?, t_max)),
            SamplerKind::Langevin {
                levels,
                steps_per_level,
                epsilon,
            } => {
                langevin_steps("annealed Langevin's steps per level", steps_per_level, 1)?;
                in_range(
                    "annealed Langevin's epsilon",
                    epsilon,
                    1e-9,
                    1e-3,
                    "1e-9 to 1e-3",
                )?;
                let levels = leading(count(levels)?, t_max);
                let mut moves: Vec<Move> = levels
                    .iter()
                    .flat_map(|&t| std::iter::repeat_n(Move::Correct { t }, steps_per_level))
                    .collect();
                // Song & Ermon's samples keep the last level's noise; x̂_0 (Tweedie) removes it.
                moves.push(Move::Predict {
                    t: levels[levels.len() - 1],
                    to: None,
                });
                moves
            }
            SamplerKind::PredictorCorrector {
                steps,
                corrector_steps,
                snr,
            } => {
                langevin_steps("the corrector steps", corrector_steps, 0)?;
                in_range("the corrector's snr", snr, 1e-6, 1.0, "1e-6 to 1")?;
                chain(&leading(count(steps)?, t_max))
                    .into_iter()
                    .flat_map(|predict| {
                        let correct = Move::Correct { t: predict.t() };
                        std::iter::repeat_n(correct, corrector_steps)
                            .chain(std::iter::once(predict))
                    })
                    .collect()
            }
            // Trailing spacing: σ = (t + 1)/T runs 1, (S − 1)/S, …, 1/S, then 0.
            SamplerKind::Euler { steps } => chain(&trailing(count(steps)?, t_max)),
            SamplerKind::Heun { steps } => chain(&trailing(count(steps)?, t_max))
                .into_iter()
                .flat_map(|step| {
                    let correct = match step {
                        Move::Predict { t, to: Some(to) } => {
                            Some(Move::HeunCorrect { from: t, t: to })
                        }
                        _ => None,
                    };
                    std::iter::once(step).chain(correct)
                })
                .collect(),
        };
        Ok(Self {
            timesteps: moves.iter().map(|m| m.t()).collect(),
            schedule,
            kind,
            moves,
            next: 0,
            previous: None,
            heun_start: None,
            clip_sample: true,
        })
    }

    /// Use x̂_0 as the model predicts it, unclipped: Algorithm 2 of Ho et al. exactly.
    pub fn without_clipping(mut self) -> Self {
        self.clip_sample = false;
        self
    }

    /// Drops the steps above timestep `t`: the sampler then starts from an x_t that is a noised
    /// image (SDEdit) rather than pure noise, at [`next_timestep`](Self::next_timestep) ≤ t.
    pub fn starting_at(mut self, t: usize) -> Self {
        self.moves.retain(|m| m.t() <= t);
        // A Heun correction whose step began above t has nothing to correct.
        if let Some(Move::HeunCorrect { .. }) = self.moves.first() {
            self.moves.remove(0);
        }
        self.timesteps = self.moves.iter().map(|m| m.t()).collect();
        self.next = 0;
        self.previous = None;
        self.heun_start = None;
        self
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// Where the model is evaluated, one entry per step, from noisiest to cleanest; a Langevin
    /// step repeats its noise level.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    pub fn total_steps(&self) -> usize {
        self.moves.len()
    }

    pub fn steps_done(&self) -> usize {
        self.next
    }

    pub fn is_done(&self) -> bool {
        self.next >= self.moves.len()
    }

    /// The timestep of the next step's model evaluation, if any remain.
    pub fn next_timestep(&self) -> Option<usize> {
        self.timesteps.get(self.next).copied()
    }

    /// The next step from `sample` = x_t given ε_θ(x_t, t), drawing z ~ N(0, I) from `rng` where
    /// the step is stochastic.
    pub fn step(
        &mut self,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        rng: &mut NoiseRng,
    ) -> Result<StepOutput, SamplerError> {
        let step = *self.moves.get(self.next).ok_or(SamplerError::Finished)?;
        let noise = self
            .is_stochastic(step)
            .then(|| rng.normal_tensor(sample.dims(), &sample.device()));
        self.update(step, model_output, sample, noise)
    }

    /// [`step`](Self::step) with the noise z given (ignored where the step is deterministic;
    /// `None` means z = 0).
    pub fn step_with_noise(
        &mut self,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, SamplerError> {
        let step = *self.moves.get(self.next).ok_or(SamplerError::Finished)?;
        self.update(step, model_output, sample, noise)
    }

    fn update(
        &mut self,
        step: Move,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, SamplerError> {
        let s = &self.schedule;
        let t = step.t();

        // 1. x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (eq. 15 of Ho et al., eq. 9 of Song et al.), or
        //    x_σ + σ v on the flow's path.
        let mut pred_x0 = match s.objective() {
            Objective::Epsilon => {
                (sample.clone() - model_output.clone() * s.sqrt_one_minus_alphas_cumprod[t] as f32)
                    / s.sqrt_alphas_cumprod[t] as f32
            }
            Objective::Flow => {
                flow::pred_x0(s.noise_scale[t], sample.clone(), model_output.clone())
            }
        };
        if self.clip_sample {
            pred_x0 = pred_x0.clamp(-1.0, 1.0);
        }

        // 2. The sampler's own update.
        let prev_sample = match (self.kind, step) {
            (SamplerKind::Langevin { epsilon, .. }, Move::Correct { t }) => {
                let sigma_min = s.sqrt_one_minus_alphas_cumprod[*self.timesteps.last().unwrap()];
                let noise = noise.unwrap_or_else(|| sample.zeros_like());
                langevin::annealed_step(s, t, sigma_min, epsilon, sample, model_output, noise)
            }
            (SamplerKind::PredictorCorrector { snr, .. }, Move::Correct { t }) => {
                let noise = noise.unwrap_or_else(|| sample.zeros_like());
                langevin::corrector_step(s, t, snr, sample, model_output, noise)
            }
            (SamplerKind::DpmSolver { .. }, Move::Predict { t, to }) => {
                let previous = self.previous.take();
                self.previous = Some((dpm_solver::lambda(s, t), pred_x0.clone()));
                dpm_solver::update(s, t, to, sample, pred_x0.clone(), previous)
            }
            (SamplerKind::Euler { .. } | SamplerKind::Heun { .. }, Move::Predict { t, to }) => {
                let sigma = s.noise_scale[t];
                let velocity = flow::velocity_to(sigma, sample.clone(), pred_x0.clone());
                let sigma_next = to.map_or(0.0, |to| s.noise_scale[to]);
                if matches!(self.kind, SamplerKind::Heun { .. }) && to.is_some() {
                    self.heun_start = Some((sample.clone(), velocity.clone()));
                }
                flow::euler(sigma, sigma_next, sample, velocity)
            }
            (SamplerKind::Heun { .. }, Move::HeunCorrect { from, t }) => {
                let (start, velocity) = self
                    .heun_start
                    .take()
                    .expect("Heun's correction follows the step it corrects");
                let sigma_next = s.noise_scale[t];
                let velocity_next = flow::velocity_to(sigma_next, sample, pred_x0.clone());
                flow::heun(
                    s.noise_scale[from],
                    sigma_next,
                    start,
                    velocity,
                    velocity_next,
                )
            }
            (SamplerKind::Ddpm { variance }, Move::Predict { t, .. }) => {
                let sigma = ddpm::sigma(s, t, variance);
                with_noise(ddpm::mean(s, t, pred_x0.clone(), sample), noise, sigma)
            }
            (kind, Move::Predict { t, to }) => {
                // DDIM; the predictor–corrector's ancestral step is DDIM at η = 1, and annealed
                // Langevin's last step (to x_0) is DDIM's x̂_0.
                let eta = match kind {
                    SamplerKind::Ddim { eta, .. } => eta,
                    SamplerKind::PredictorCorrector { .. } => 1.0,
                    _ => 0.0,
                };
                let alpha_prev = to.map_or(1.0, |to| s.alphas_cumprod[to]);
                let sigma = ddim::sigma(s.alphas_cumprod[t], alpha_prev, eta);
                // ε re-derived from the (possibly clipped) x̂_0 so that both terms agree.
                let eps = if self.clip_sample {
                    (sample - pred_x0.clone() * s.sqrt_alphas_cumprod[t] as f32)
                        / s.sqrt_one_minus_alphas_cumprod[t] as f32
                } else {
                    model_output
                };
                with_noise(
                    ddim::mean(alpha_prev, sigma, pred_x0.clone(), eps),
                    noise,
                    sigma,
                )
            }
            (kind, Move::Correct { .. } | Move::HeunCorrect { .. }) => {
                unreachable!("{kind} plans no such step")
            }
        };
        self.next += 1;
        Ok(StepOutput {
            prev_sample,
            pred_x0,
        })
    }

    /// Whether `step` adds noise z (σ_t > 0 or a Langevin step).
    fn is_stochastic(&self, step: Move) -> bool {
        let s = &self.schedule;
        match (self.kind, step) {
            (_, Move::Correct { .. }) => true,
            (SamplerKind::Ddpm { variance }, Move::Predict { t, .. }) => {
                ddpm::sigma(s, t, variance) > 0.0
            }
            (SamplerKind::Ddim { eta, .. }, Move::Predict { to, .. }) => eta > 0.0 && to.is_some(),
            (SamplerKind::PredictorCorrector { .. }, Move::Predict { to, .. }) => to.is_some(),
            _ => false,
        }
    }
}

/// x = μ + σ z (3. of Algorithm 2), or μ where σ = 0 or no z is given.
fn with_noise(mean: Tensor<4>, noise: Option<Tensor<4>>, sigma: f64) -> Tensor<4> {
    match noise {
        Some(z) if sigma > 0.0 => mean + z * sigma as f32,
        _ => mean,
    }
}

/// `steps` of the T timesteps, evenly spaced from 0 ("leading" spacing): 0, T/S, 2T/S, …,
/// noisiest first. DDPM, DDIM and the Langevin samplers use it.
fn leading(steps: usize, t_max: usize) -> Vec<usize> {
    (0..steps).rev().map(|i| i * t_max / steps).collect()
}

/// `steps` of the T timesteps, evenly spaced down from T − 1 ("trailing" spacing, Lin et al.
/// 2023): T − 1, …, T/S − 1. DPM-Solver++ then takes its last step from T/S − 1 to x_0 instead of
/// spending a model evaluation on t = 0, as diffusers' DPMSolverMultistepScheduler does.
fn trailing(steps: usize, t_max: usize) -> Vec<usize> {
    (1..=steps).rev().map(|i| i * t_max / steps - 1).collect()
}

/// Reverse steps through `timesteps`, the last one to x_0.
fn chain(timesteps: &[usize]) -> Vec<Move> {
    timesteps
        .iter()
        .enumerate()
        .map(|(i, &t)| Move::Predict {
            t,
            to: timesteps.get(i + 1).copied(),
        })
        .collect()
}

fn in_range(
    setting: &'static str,
    value: f64,
    min: f64,
    max: f64,
    allowed: &'static str,
) -> Result<(), SamplerError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SamplerError::OutOfRange {
            setting,
            value,
            allowed,
        })
    }
}

fn langevin_steps(setting: &'static str, steps: usize, min: usize) -> Result<(), SamplerError> {
    let allowed = if min == 0 { "0 to 100" } else { "1 to 100" };
    in_range(
        setting,
        steps as f64,
        min as f64,
        MAX_LANGEVIN_STEPS as f64,
        allowed,
    )
}

/// Classifier-free guidance (Ho & Salimans 2021): ε = (1 + w) ε(x, t, y) − w ε(x, t, ∅).
pub fn guide(eps_cond: Tensor<4>, eps_uncond: Tensor<4>, guidance: f32) -> Tensor<4> {
    eps_cond * (1.0 + guidance) - eps_uncond * guidance
}
