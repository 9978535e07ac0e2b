//! DDPM's ancestral step (Ho et al. 2020, Algorithm 2): x_{t−1} ~ q(x_{t−1} | x_t, x̂_0).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

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

/// σ_t of the step from `t`; no noise is added on the last step (t = 1 in the paper's count).
pub(super) fn sigma(schedule: &NoiseSchedule, t: usize, variance: DdpmVariance) -> f64 {
    match variance {
        _ if t == 0 => 0.0,
        DdpmVariance::Beta => schedule.betas[t].sqrt(),
        DdpmVariance::PosteriorBeta => schedule.posterior_variance[t].sqrt(),
    }
}

/// μ̃_t(x_t, x̂_0), the mean of the posterior q(x_{t−1} | x_t, x̂_0) (eq. 7). With x̂_0 unclipped
/// this is Algorithm 2's 1/√α_t (x_t − β_t/√(1 − ᾱ_t) ε).
pub(super) fn mean(
    schedule: &NoiseSchedule,
    t: usize,
    pred_x0: Tensor<4>,
    sample: Tensor<4>,
) -> Tensor<4> {
    pred_x0 * schedule.posterior_mean_coef_x0[t] as f32
        + sample * schedule.posterior_mean_coef_xt[t] as f32
}
