//! The forward (noising) process: q(x_t | x_0) of DDPM, the β schedule and every quantity derived
//! from it, computed once in f64 at construction (Ho et al. 2020, §2 and eq. 4, 6, 7); or, for
//! flow-matching weights, the straight path from the data to the noise.
//!
//! Notation: `betas[t]` = β_t, `alphas[t]` = α_t = 1 − β_t, `alphas_cumprod[t]` = ᾱ_t = Π α_s.
//! Timesteps are 0-based, so `betas[0]` is the paper's β_1. Both processes are
//! x_t = a_t x_0 + b_t ε: `signal_scale[t]` = a_t, `noise_scale[t]` = b_t.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// How β_t grows from t = 1 to T.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BetaSchedule {
    /// β_t linear from `beta_start` to `beta_end` (Ho et al.: 1e-4 → 0.02).
    Linear { beta_start: f64, beta_end: f64 },
    /// ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2), β clipped at 0.999
    /// (Nichol & Dhariwal 2021, eq. 17).
    Cosine { s: f64 },
}

impl Default for BetaSchedule {
    fn default() -> Self {
        BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }
}

/// What the network learns to predict, and so which forward process it is trained on and which
/// samplers can run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// ε-prediction on DDPM's process x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Ho et al. 2020, L_simple).
    #[default]
    Epsilon,
    /// Conditional flow matching on straight paths (rectified flow; Lipman et al. 2023, Liu et
    /// al. 2023): x_t = (1 − σ_t) x_0 + σ_t ε with σ_t = (t + 1)/T, and the network predicts the
    /// velocity x_0 − ε, constant along each path from the noise to the data. (The papers write
    /// the noise as x_0 and the data as x_1; here x_0 is the data, as in DDPM.) The β schedule
    /// plays no part.
    Flow,
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Objective::Epsilon => "ε-prediction (diffusion)",
            Objective::Flow => "flow matching (velocity)",
        })
    }
}

/// The schedule's settings: what a manifest records and what rebuilds a [`NoiseSchedule`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Number of diffusion steps T.
    pub timesteps: usize,
    pub beta_schedule: BetaSchedule,
    /// Manifests and checkpoints written before flow matching existed read as ε-prediction,
    /// which is what they are.
    #[serde(default)]
    pub objective: Objective,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            timesteps: 1000,
            beta_schedule: BetaSchedule::default(),
            objective: Objective::Epsilon,
        }
    }
}

/// The most diffusion steps a schedule from outside may have: 10× the usual T, a few MB of
/// derived quantities.
pub const MAX_TIMESTEPS: usize = 10_000;

impl ScheduleConfig {
    /// Checks a schedule from a manifest, a checkpoint or the command line before anything is
    /// built from it: T within `1..=MAX_TIMESTEPS`, every β_t in (0, 1) and finite, so that ᾱ_t
    /// is finite, positive and decreasing. Each refusal names the field, the value and the range.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_TIMESTEPS).contains(&self.timesteps) {
            return Err(format!(
                "schedule.timesteps is {}, allowed 1 to {MAX_TIMESTEPS}",
                self.timesteps
            ));
        }
        match self.beta_schedule {
            BetaSchedule::Linear {
                beta_start,
                beta_end,
            } => {
                for (field, value) in [("beta_start", beta_start), ("beta_end", beta_end)] {
                    if !(value > 0.0 && value < 1.0) {
                        return Err(format!(
                            "schedule.beta_schedule.{field} is {value}, allowed 0 < β < 1"
                        ));
                    }
                }
            }
            BetaSchedule::Cosine { s } => {
                if !(0.0..=1.0).contains(&s) {
                    return Err(format!("schedule.beta_schedule.s is {s}, allowed 0 to 1"));
                }
            }
        }
        let schedule = NoiseSchedule::new(*self);
        if let Some((t, beta)) = schedule
            .betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(**b > 0.0 && **b < 1.0))
        {
            return Err(format!(
                "schedule gives β_{} = {beta}, allowed 0 < β < 1",
                t + 1
            ));
        }
        let decreasing = schedule.alphas_cumprod.windows(2).all(|w| w[1] < w[0]);
        if !decreasing
            || schedule
                .alphas_cumprod
                .iter()
                .any(|a| !(a.is_finite() && *a > 0.0))
        {
            return Err("schedule gives an ᾱ_t that is not finite, positive and decreasing".into());
        }
        Ok(())
    }
}

/// β_t and everything derived from it, indexed by 0-based timestep.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub config: ScheduleConfig,
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    /// ᾱ_{t−1}, with ᾱ_0 := 1 before the first step.
    pub alphas_cumprod_prev: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    /// β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, the variance of q(x_{t−1} | x_t, x_0) (eq. 7).
    pub posterior_variance: Vec<f64>,
    /// μ̃_t(x_t, x_0) = `posterior_mean_coef_x0[t]` · x_0 + `posterior_mean_coef_xt[t]` · x_t (eq. 7).
    pub posterior_mean_coef_x0: Vec<f64>,
    pub posterior_mean_coef_xt: Vec<f64>,
    /// a_t of x_t = a_t x_0 + b_t ε: √ᾱ_t, or 1 − σ_t on the flow's straight path.
    pub signal_scale: Vec<f64>,
    /// b_t of x_t = a_t x_0 + b_t ε: √(1 − ᾱ_t), or σ_t = (t + 1)/T on the flow's path.
    pub noise_scale: Vec<f64>,
}

impl NoiseSchedule {
    pub fn new(config: ScheduleConfig) -> Self {
        let t_max = config.timesteps;
        assert!(t_max >= 1, "a noise schedule needs at least one timestep");
        let betas: Vec<f64> = match config.beta_schedule {
            BetaSchedule::Linear {
                beta_start,
                beta_end,
            } => (0..t_max)
                .map(|i| {
                    let frac = if t_max == 1 {
                        0.0
                    } else {
                        i as f64 / (t_max - 1) as f64
                    };
                    beta_start + (beta_end - beta_start) * frac
                })
                .collect(),
            BetaSchedule::Cosine { s } => {
                let f = |t: f64| {
                    ((t / t_max as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..t_max)
                    .map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999))
                    .collect()
            }
        };
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let alphas_cumprod: Vec<f64> = alphas
            .iter()
            .scan(1.0, |acc, a| {
                *acc *= a;
                Some(*acc)
            })
            .collect();
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..t_max - 1].iter().copied())
            .collect();
        let zip3 = |f: &dyn Fn(f64, f64, f64) -> f64| -> Vec<f64> {
            (0..t_max)
                .map(|t| f(betas[t], alphas_cumprod[t], alphas_cumprod_prev[t]))
                .collect()
        };
        let sqrt_alphas_cumprod: Vec<f64> = alphas_cumprod.iter().map(|a| a.sqrt()).collect();
        let sqrt_one_minus_alphas_cumprod: Vec<f64> =
            alphas_cumprod.iter().map(|a| (1.0 - a).sqrt()).collect();
        let (signal_scale, noise_scale) = match config.objective {
            Objective::Epsilon => (
                sqrt_alphas_cumprod.clone(),
                sqrt_one_minus_alphas_cumprod.clone(),
            ),
            Objective::Flow => (0..t_max)
                .map(|t| {
                    let sigma = (t + 1) as f64 / t_max as f64;
                    (1.0 - sigma, sigma)
                })
                .unzip(),
        };
        Self {
            sqrt_alphas_cumprod,
            sqrt_one_minus_alphas_cumprod,
            signal_scale,
            noise_scale,
            posterior_variance: zip3(&|b, ac, acp| b * (1.0 - acp) / (1.0 - ac)),
            posterior_mean_coef_x0: zip3(&|b, ac, acp| b * acp.sqrt() / (1.0 - ac)),
            posterior_mean_coef_xt: (0..t_max)
                .map(|t| {
                    (1.0 - alphas_cumprod_prev[t]) * alphas[t].sqrt() / (1.0 - alphas_cumprod[t])
                })
                .collect(),
            config,
            betas,
            alphas,
            alphas_cumprod,
            alphas_cumprod_prev,
        }
    }

    /// Number of diffusion steps T.
    pub fn len(&self) -> usize {
        self.config.timesteps
    }

    pub fn is_empty(&self) -> bool {
        self.config.timesteps == 0
    }

    pub fn objective(&self) -> Objective {
        self.config.objective
    }

    /// x_t = a_t · x_0 + b_t · ε, one t per sample: for ε-prediction a sample of q(x_t | x_0)
    /// (eq. 4, a_t = √ᾱ_t, b_t = √(1 − ᾱ_t)); for flow matching the point σ_t of the way along
    /// the straight path from x_0 to ε.
    ///
    /// # Shapes
    ///   - `x0`, `noise`: [batch, channels, height, width]
    ///   - `timesteps`: one per batch entry, each < T
    pub fn add_noise(&self, x0: Tensor<4>, noise: Tensor<4>, timesteps: &[usize]) -> Tensor<4> {
        let [batch, _, _, _] = x0.dims();
        assert_eq!(
            batch,
            timesteps.len(),
            "add_noise needs one timestep per sample"
        );
        let device = x0.device();
        let signal = self.per_sample(&self.signal_scale, timesteps, &device);
        let noise_scale = self.per_sample(&self.noise_scale, timesteps, &device);
        x0 * signal + noise * noise_scale
    }

    /// What the network learns to output for the x_t that `x0` and `noise` make: ε itself, or
    /// the flow's velocity x_0 − ε.
    pub fn target(&self, x0: Tensor<4>, noise: Tensor<4>) -> Tensor<4> {
        match self.config.objective {
            Objective::Epsilon => noise,
            Objective::Flow => x0 - noise,
        }
    }

    /// `values[t_i]` for each sample i, as a [batch, 1, 1, 1] tensor that broadcasts over images.
    fn per_sample(&self, values: &[f64], timesteps: &[usize], device: &Device) -> Tensor<4> {
        let picked: Vec<f32> = timesteps.iter().map(|&t| values[t] as f32).collect();
        Tensor::from_data(TensorData::new(picked, [timesteps.len(), 1, 1, 1]), device)
    }
}
