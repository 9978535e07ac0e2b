//! Generation: x_T ~ N(0, I) from a seed, then the sampler's reverse steps, one call at a time
//! so that a caller (the CLI, the page) can show every x_t and x̂_0 as it goes.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{DIGITS, IMAGE_SIDE};
use crate::kernels;
use crate::model::UNet;
use crate::rng::NoiseRng;
use crate::sampler::{Sampler, SamplerError, StepOutput, guide};
use crate::schedule::NoiseSchedule;

/// The guidance scale w used when none is given (the page's slider starts here too). Measured on
/// the step-3,500 weights, 200 per-digit samples: w = 0.5 / 1 / 2 keep 97.5% / 99.0% / 100% of
/// digits recognised as asked, with classifier-feature Fréchet distances 135 / 190 / ~260 (lower
/// is more varied); w = 1 trades a little accuracy for much more natural variety than 2.
pub const DEFAULT_GUIDANCE: f32 = 1.0;

/// Guidance applies only at steps whose noise-to-signal ratio σ_t = b_t / a_t (of x_t = a_t x_0 +
/// b_t ε; the same scale for ε-prediction and flow weights) is at most this: a limited interval
/// (Kynkäänniemi et al. 2024). The noisier steps before it run the conditional model alone, on
/// half the batch: guidance there narrows the variety of shapes and adds nothing to their
/// legibility. On the ε weights (linear β, T = 1000), σ_t = 7 lies between t = 619 and 649, so
/// DPM-Solver++ 20 guides from t = 599 and skips its first 8 of 20 steps' unconditional half.
/// Measured there (1000 per-digit images, w = 1, README "Guidance interval"): Fréchet distance
/// 58.4 → 34.6 (the unconditional samples': 33.1), per-digit accuracy 100% both.
pub const DEFAULT_GUIDANCE_SIGMA_MAX: f32 = 7.0;

/// Which digits a generation draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Digits {
    /// No label: the model's unconditional distribution, without guidance.
    Unconditional,
    /// Every image this digit, with classifier-free guidance.
    Only(usize),
    /// Each image one of 0–9, as evenly as the count allows (every run of ten images holds each
    /// digit once, in an order drawn from the seed), with classifier-free guidance.
    Mixed,
}

/// Salt of the random stream that orders [`Digits::Mixed`]: separate from the noise, so a seed
/// gives the same x_T whichever digits are asked for.
const MIXED_LABELS_STREAM: u64 = 0x6c61_6265_6c73;

/// Digits a model cannot draw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigitsError {
    #[error("these weights are unconditional: they can only draw without a label")]
    UnconditionalWeights,
    #[error("digit {digit} is not one of this model's {classes} classes")]
    UnknownDigit { digit: usize, classes: usize },
}

impl Digits {
    /// Checks that a model with `classes` labels (0: unconditional) can draw these digits.
    pub fn check(self, classes: usize) -> Result<(), DigitsError> {
        match self {
            Digits::Unconditional => Ok(()),
            _ if classes == 0 => Err(DigitsError::UnconditionalWeights),
            Digits::Only(digit) if digit >= classes => {
                Err(DigitsError::UnknownDigit { digit, classes })
            }
            Digits::Mixed if classes < DIGITS => Err(DigitsError::UnknownDigit {
                digit: DIGITS - 1,
                classes,
            }),
            _ => Ok(()),
        }
    }

    /// Whether the model is conditioned on a label (and guidance applies).
    pub fn is_conditional(self) -> bool {
        self != Digits::Unconditional
    }

    /// The label of each of `count` images, for a generation seeded with `seed`.
    pub fn labels(self, count: usize, seed: u64) -> Vec<Option<usize>> {
        match self {
            Digits::Unconditional => vec![None; count],
            Digits::Only(digit) => vec![Some(digit); count],
            Digits::Mixed => {
                let mut rng = NoiseRng::new(seed ^ MIXED_LABELS_STREAM);
                let mut labels = Vec::with_capacity(count + DIGITS);
                while labels.len() < count {
                    labels.extend(rng.permutation(DIGITS).into_iter().map(Some));
                }
                labels.truncate(count);
                labels
            }
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub count: usize,
    pub seed: u64,
    pub digits: Digits,
    /// Classifier-free guidance scale w; ignored for unconditional samples.
    pub guidance: f32,
    /// Guidance applies at steps with σ_t ≤ this only ([`DEFAULT_GUIDANCE_SIGMA_MAX`]);
    /// infinity guides every step, 0 none (the conditional model alone).
    #[serde(default = "default_guidance_sigma_max")]
    pub guidance_sigma_max: f32,
}

pub(crate) fn default_guidance_sigma_max() -> f32 {
    DEFAULT_GUIDANCE_SIGMA_MAX
}

/// The largest guidance scale accepted, far past any use (w = 2 already draws prototypes).
pub const MAX_GUIDANCE: f32 = 20.0;
/// The most images one generation holds at once (a batch of the U-Net, twice that with guidance).
pub const MAX_COUNT: usize = 4096;

impl GenerationRequest {
    /// `count` images from `seed`, guided by `guidance` over the default interval.
    pub fn new(count: usize, seed: u64, digits: Digits, guidance: f32) -> Self {
        Self {
            count,
            seed,
            digits,
            guidance,
            guidance_sigma_max: DEFAULT_GUIDANCE_SIGMA_MAX,
        }
    }

    /// Checks settings from the command line or the page before anything is allocated; a
    /// refusal names the setting, the value and the range.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_COUNT).contains(&self.count) {
            return Err(format!("count is {}, allowed 1 to {MAX_COUNT}", self.count));
        }
        if !(self.guidance.is_finite() && (0.0..=MAX_GUIDANCE).contains(&self.guidance)) {
            return Err(format!(
                "guidance is {}, allowed 0 to {MAX_GUIDANCE}",
                self.guidance
            ));
        }
        if self.guidance_sigma_max.is_nan() || self.guidance_sigma_max < 0.0 {
            return Err(format!(
                "guidance_sigma_max is {}, allowed 0 to infinity",
                self.guidance_sigma_max
            ));
        }
        Ok(())
    }
}

/// x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε of `image` with the ε that `seed` starts a generation from: what
/// [`Generation::from_image`] starts from, for showing the forward process as t moves.
pub fn noised(schedule: &NoiseSchedule, image: Tensor<4>, seed: u64, t: usize) -> Tensor<4> {
    let noise = NoiseRng::new(seed).normal_tensor(image.dims(), &image.device());
    let count = image.dims()[0];
    schedule.add_noise(image, noise, &vec![t; count])
}

/// Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself")
/// of unconditional samples: a worse model of the same noise (fewer training steps, or a smaller
/// network; see [`crate::weights::check_guide`]) whose errors every step steers away from,
/// ε = (1 + w) ε_model − w ε_guide. Samples with a label have classifier-free guidance instead,
/// and ignore it.
pub struct Autoguide<'a> {
    pub model: &'a UNet,
    pub weight: f32,
}

/// A reverse process in progress.
pub struct Generation {
    sampler: Sampler,
    /// One label per image; with guidance, followed by as many "no label"s for the
    /// unconditional half of the batch.
    labels: Vec<Option<usize>>,
    count: usize,
    guidance: f32,
    guidance_sigma_max: f32,
    sample: Tensor<4>,
    rng: NoiseRng,
    /// Inpainting: the image whose pixels are kept, and where.
    known: Option<Known>,
}

/// What inpainting keeps: x_0 of the original and a mask, 1 where its pixels stay and 0 where
/// the model redraws them, with its complement made once rather than every step.
struct Known {
    image: Tensor<4>,
    keep: Tensor<4>,
    redraw: Tensor<4>,
}

impl Generation {
    /// Draws x_T for `request.count` images from `request.seed` on the CPU and puts it on `device`.
    pub fn new(sampler: Sampler, request: &GenerationRequest, device: &Device) -> Self {
        let mut rng = NoiseRng::new(request.seed);
        let sample = rng.normal_tensor([request.count, 1, IMAGE_SIDE, IMAGE_SIDE], device);
        let guidance = if request.digits.is_conditional() {
            request.guidance
        } else {
            0.0
        };
        let mut labels = request.digits.labels(request.count, request.seed);
        if guidance != 0.0 {
            labels.extend(std::iter::repeat_n(None, request.count));
        }
        Self {
            sampler,
            labels,
            count: request.count,
            guidance,
            guidance_sigma_max: request.guidance_sigma_max,
            sample,
            rng,
            known: None,
        }
    }

    /// SDEdit (Meng et al. 2022): the reverse process from `image` (x_0: `request.count` images,
    /// (N, 1, 28, 28) in [−1, 1]) noised to the sampler's first timestep at or below `t`, with
    /// the seed's ε (the noise [`new`](Self::new) starts from; see [`noised`]). The rest of the
    /// steps then redraw what that much noise hid.
    pub fn from_image(
        sampler: Sampler,
        request: &GenerationRequest,
        image: Tensor<4>,
        t: usize,
    ) -> Self {
        let mut generation = Self::new(sampler.starting_at(t), request, &image.device());
        generation.sample = match generation.next_timestep() {
            Some(start) => generation.sampler.schedule().add_noise(
                image,
                generation.sample.clone(),
                &vec![start; request.count],
            ),
            // Below the sampler's last timestep: nothing to redraw.
            None => image,
        };
        generation
    }

    /// Inpainting (RePaint, Lugmayr et al. 2022, without resampling): like
    /// [`from_image`](Self::from_image), and after every step the pixels where `keep` is 1 are
    /// replaced by the original noised to the level of the next step (fresh noise from the seed's
    /// stream), so the model redraws only where `keep` is 0 and fits it to the rest. After the
    /// last step the kept pixels equal `image` exactly. `keep` is (N, 1, 28, 28) of 0s and 1s.
    pub fn inpaint(
        sampler: Sampler,
        request: &GenerationRequest,
        image: Tensor<4>,
        keep: Tensor<4>,
        t: usize,
    ) -> Self {
        let mut generation = Self::from_image(sampler, request, image.clone(), t);
        let redraw = keep.clone().neg() + 1.0;
        generation.known = Some(Known {
            image,
            keep,
            redraw,
        });
        generation.sample = generation.with_known(generation.sample.clone());
        generation
    }

    /// `sample` with the kept pixels replaced by the original at the next step's noise level.
    fn with_known(&mut self, sample: Tensor<4>) -> Tensor<4> {
        let Some(known) = &self.known else {
            return sample;
        };
        let original = match self.sampler.next_timestep() {
            Some(t) => {
                let noise = self.rng.normal_tensor(sample.dims(), &sample.device());
                self.sampler
                    .schedule()
                    .add_noise(known.image.clone(), noise, &vec![t; self.count])
            }
            None => known.image.clone(),
        };
        original * known.keep.clone() + sample * known.redraw.clone()
    }

    pub fn total_steps(&self) -> usize {
        self.sampler.total_steps()
    }

    pub fn steps_done(&self) -> usize {
        self.sampler.steps_done()
    }

    pub fn is_done(&self) -> bool {
        self.sampler.is_done()
    }

    /// The timestep of the next step's model evaluation, if any remain.
    pub fn next_timestep(&self) -> Option<usize> {
        self.sampler.next_timestep()
    }

    /// The current x_t (the final images once [`is_done`](Self::is_done)).
    pub fn sample(&self) -> &Tensor<4> {
        &self.sample
    }

    /// Whether the step at timestep `t` is guided: guidance is on and σ_t is within its
    /// interval (σ_t is infinite where a_t = 0, the flow's pure noise).
    fn guided_at(&self, t: usize) -> bool {
        let schedule = self.sampler.schedule();
        let sigma = schedule.noise_scale[t] / schedule.signal_scale[t];
        self.guidance != 0.0 && sigma <= f64::from(self.guidance_sigma_max)
    }

    /// Runs the model and one reverse step. Returns x_{t_prev} and x̂_0, or `None` when done.
    pub fn step(&mut self, model: &UNet) -> Result<Option<StepOutput>, SamplerError> {
        self.step_with(model, None)
    }

    /// [`step`](Self::step), steered by `autoguide` if the images have no label.
    pub fn step_with(
        &mut self,
        model: &UNet,
        autoguide: Option<&Autoguide>,
    ) -> Result<Option<StepOutput>, SamplerError> {
        let device = self.sample.device();
        kernels::on_cpu_pool(&device, || self.step_here(model, autoguide))
    }

    fn step_here(
        &mut self,
        model: &UNet,
        autoguide: Option<&Autoguide>,
    ) -> Result<Option<StepOutput>, SamplerError> {
        let Some(t) = self.next_timestep() else {
            return Ok(None);
        };
        let count = self.count;
        let eps = if self.guided_at(t) {
            // Conditional and unconditional predictions in one batch of 2·count.
            let doubled = Tensor::cat(vec![self.sample.clone(), self.sample.clone()], 0);
            let eps = model.forward(doubled, &vec![t; 2 * count], &self.labels);
            let cond = eps.clone().narrow(0, 0, count);
            let uncond = eps.narrow(0, count, count);
            guide(cond, uncond, self.guidance)
        } else {
            // The images' own labels (or none): the first `count`.
            let timesteps = vec![t; count];
            let labels = &self.labels[..count];
            let eps = model.forward(self.sample.clone(), &timesteps, labels);
            match autoguide {
                // Only images without a label: the others have classifier-free guidance.
                Some(bad) if bad.weight != 0.0 && labels.iter().all(Option::is_none) => {
                    let eps_bad = bad.model.forward(self.sample.clone(), &timesteps, labels);
                    guide(eps, eps_bad, bad.weight)
                }
                _ => eps,
            }
        };
        let mut output = self.sampler.step(eps, self.sample.clone(), &mut self.rng)?;
        output.prev_sample = self.with_known(output.prev_sample);
        self.sample = output.prev_sample.clone();
        Ok(Some(output))
    }
}
