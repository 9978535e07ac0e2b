//! The reverse process p_θ(x_{t−1} | x_t): DDPM ancestral sampling and DDIM, behind one API in the
//! shape of diffusers' schedulers. A pipeline calls [`Sampler::timesteps`], runs the model at each
//! one, and hands its output to [`Sampler::step`].
//!
//! Notation map: `model_output` → ε_θ(x_t, t), `sample` → x_t, `pred_x0` → x̂_0,
//! `prev_sample` → x_{t−1} (or x_{t_prev} for DDIM), `sigma` → σ_t.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::rng::NoiseRng;
use crate::schedule::NoiseSchedule;

/// The variance σ_t² of DDPM's reverse step (Ho et al. §3.2: both give similar results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DdpmVariance {
    /// σ_t² = β_t, optimal for x_0 ~ N(0, I).
    Beta,
    /// σ_t² = β̃_t, the posterior variance, optimal for a deterministic x_0.
    #[default]
    PosteriorBeta,
}

/// Which reverse process to run, with its settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SamplerKind {
    /// Ancestral sampling over all T steps (Ho et al. Algorithm 2).
    Ddpm { variance: DdpmVariance },
    /// DDIM (Song et al. 2021, eq. 12) over `steps` ≤ T timesteps; η = 0 is deterministic,
    /// η = 1 is DDPM's posterior.
    Ddim { steps: usize, eta: f64 },
}

/// What one reverse step produced.
pub struct StepOutput {
    /// x_{t_prev}: the input of the next step (the final image after the last one).
    pub prev_sample: Tensor<4>,
    /// x̂_0: the clean image the model predicts from x_t.
    pub pred_x0: Tensor<4>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SamplerError {
    TooManySteps { steps: usize, timesteps: usize },
    NoSteps,
    EtaOutOfRange(f64),
    UnknownTimestep(usize),
}

impl std::fmt::Display for SamplerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManySteps { steps, timesteps } => {
                write!(f, "DDIM needs at most T = {timesteps} steps, got {steps}")
            }
            Self::NoSteps => write!(f, "a sampler needs at least one step"),
            Self::EtaOutOfRange(eta) => write!(
                f,
                "DDIM's eta is {eta}, allowed 0 (deterministic) to 1 (DDPM's variance)"
            ),
            Self::UnknownTimestep(t) => {
                write!(f, "timestep {t} is not one of this sampler's timesteps")
            }
        }
    }
}

impl std::error::Error for SamplerError {}

#[derive(Debug, Clone)]
pub struct Sampler {
    schedule: NoiseSchedule,
    kind: SamplerKind,
    /// Descending; `timesteps[i + 1]` is the step after `timesteps[i]`.
    timesteps: Vec<usize>,
    /// Clip x̂_0 to [−1, 1], the data range, before using it (diffusers' `clip_sample`).
    clip_sample: bool,
}

impl Sampler {
    pub fn new(schedule: NoiseSchedule, kind: SamplerKind) -> Result<Self, SamplerError> {
        let t_max = schedule.len();
        let timesteps: Vec<usize> = match kind {
            SamplerKind::Ddpm { .. } => (0..t_max).rev().collect(),
            SamplerKind::Ddim { steps, eta } => {
                if steps == 0 {
                    return Err(SamplerError::NoSteps);
                }
                if steps > t_max {
                    return Err(SamplerError::TooManySteps {
                        steps,
                        timesteps: t_max,
                    });
                }
                if !(0.0..=1.0).contains(&eta) {
                    return Err(SamplerError::EtaOutOfRange(eta));
                }
                // Evenly spaced ("leading" spacing): 0, T/S, 2T/S, … run backwards.
                (0..steps).rev().map(|i| i * t_max / steps).collect()
            }
        };
        Ok(Self {
            schedule,
            kind,
            timesteps,
            clip_sample: true,
        })
    }

    /// Use x̂_0 as the model predicts it, unclipped: Algorithm 2 of Ho et al. exactly.
    pub fn without_clipping(mut self) -> Self {
        self.clip_sample = false;
        self
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// The timesteps to visit, from noisiest to cleanest.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// One reverse step from x_t, drawing z ~ N(0, I) from `rng` where the step is stochastic.
    pub fn step(
        &self,
        model_output: Tensor<4>,
        t: usize,
        sample: Tensor<4>,
        rng: &mut NoiseRng,
    ) -> Result<StepOutput, SamplerError> {
        Ok(self.step_at(self.index_of(t)?, model_output, sample, rng))
    }

    /// [`step`](Self::step) for the timestep at `index` in [`timesteps`](Self::timesteps): what a
    /// pipeline that walks the timesteps in order calls, with no search.
    pub(crate) fn step_at(
        &self,
        index: usize,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        rng: &mut NoiseRng,
    ) -> StepOutput {
        let sigma = self.sigma(index);
        let noise = (sigma > 0.0).then(|| rng.normal_tensor(sample.dims(), &sample.device()));
        self.update(index, sigma, model_output, sample, noise)
    }

    /// [`step`](Self::step) with the noise z given (ignored when σ_t = 0; `None` means z = 0).
    pub fn step_with_noise(
        &self,
        model_output: Tensor<4>,
        t: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, SamplerError> {
        let index = self.index_of(t)?;
        Ok(self.update(index, self.sigma(index), model_output, sample, noise))
    }

    /// The reverse step at `index`, whose σ_t is `sigma`.
    fn update(
        &self,
        index: usize,
        sigma: f64,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> StepOutput {
        let t = self.timesteps[index];
        let s = &self.schedule;

        // 1. x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (eq. 15 of Ho et al., eq. 9 of Song et al.)
        let mut pred_x0 = (sample.clone()
            - model_output.clone() * s.sqrt_one_minus_alphas_cumprod[t] as f32)
            / s.sqrt_alphas_cumprod[t] as f32;
        if self.clip_sample {
            pred_x0 = pred_x0.clamp(-1.0, 1.0);
        }

        let mean = match self.kind {
            // 2a. μ̃_t(x_t, x̂_0) of the posterior q(x_{t−1} | x_t, x̂_0) (eq. 7). With x̂_0
            // unclipped this is Algorithm 2's 1/√α_t (x_t − β_t/√(1 − ᾱ_t) ε).
            SamplerKind::Ddpm { .. } => {
                pred_x0.clone() * s.posterior_mean_coef_x0[t] as f32
                    + sample * s.posterior_mean_coef_xt[t] as f32
            }
            // 2b. √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ_t²) ε (eq. 12 of Song et al.), with ε re-derived
            // from the (possibly clipped) x̂_0 so that both terms agree.
            SamplerKind::Ddim { .. } => {
                let alpha_prev = self.alpha_cumprod_prev(index);
                let eps = if self.clip_sample {
                    (sample - pred_x0.clone() * s.sqrt_alphas_cumprod[t] as f32)
                        / s.sqrt_one_minus_alphas_cumprod[t] as f32
                } else {
                    model_output
                };
                let direction = (1.0 - alpha_prev - sigma * sigma).max(0.0).sqrt();
                pred_x0.clone() * alpha_prev.sqrt() as f32 + eps * direction as f32
            }
        };

        // 3. x_{t−1} = μ + σ_t z
        let prev_sample = match noise {
            Some(z) if sigma > 0.0 => mean + z * sigma as f32,
            _ => mean,
        };
        StepOutput {
            prev_sample,
            pred_x0,
        }
    }

    /// σ_t of the step at `index` in [`timesteps`](Self::timesteps).
    fn sigma(&self, index: usize) -> f64 {
        let t = self.timesteps[index];
        let s = &self.schedule;
        let last = index + 1 == self.timesteps.len();
        match self.kind {
            // No noise is added on the last step (t = 1 in the paper's 1-based count).
            SamplerKind::Ddpm { .. } if last => 0.0,
            SamplerKind::Ddpm {
                variance: DdpmVariance::Beta,
            } => s.betas[t].sqrt(),
            SamplerKind::Ddpm {
                variance: DdpmVariance::PosteriorBeta,
            } => s.posterior_variance[t].sqrt(),
            // σ_t(η) = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev) (eq. 16 of Song et al.)
            SamplerKind::Ddim { eta, .. } => {
                let alpha = s.alphas_cumprod[t];
                let alpha_prev = self.alpha_cumprod_prev(index);
                eta * ((1.0 - alpha_prev) / (1.0 - alpha) * (1.0 - alpha / alpha_prev)).sqrt()
            }
        }
    }

    /// ᾱ of the timestep after the one at `index`; 1 after the last (x_0 is noise-free).
    fn alpha_cumprod_prev(&self, index: usize) -> f64 {
        match self.timesteps.get(index + 1) {
            Some(&prev) => self.schedule.alphas_cumprod[prev],
            None => 1.0,
        }
    }

    fn index_of(&self, t: usize) -> Result<usize, SamplerError> {
        // Timesteps are descending and evenly spaced, but search to accept any caller order.
        self.timesteps
            .iter()
            .position(|&s| s == t)
            .ok_or(SamplerError::UnknownTimestep(t))
    }
}

/// Classifier-free guidance (Ho & Salimans 2021): ε = (1 + w) ε(x, t, y) − w ε(x, t, ∅).
pub fn guide(eps_cond: Tensor<4>, eps_uncond: Tensor<4>, guidance: f32) -> Tensor<4> {
    eps_cond * (1.0 + guidance) - eps_uncond * guidance
}
