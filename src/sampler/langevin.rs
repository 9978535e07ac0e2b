//! The score-based view of the same network: s_θ(x_t, t) = ∇ log p_t(x_t) = −ε_θ(x_t, t)/σ_t with
//! σ_t = √(1 − ᾱ_t), and Langevin dynamics on it, x ← x + δ s_θ(x, t) + √(2δ) z, which samples
//! p_t for small steps δ. Two step-size rules:
//! - annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): δ = (ε/2) σ_t²/σ_min², from the
//!   noisiest level down to the cleanest;
//! - the corrector of the predictor–corrector sampler (Song et al. 2021, Algorithm 5): δ set per
//!   image so that the signal-to-noise ratio ‖δ s‖/‖√(2δ) z‖ equals `snr`, scaled by α_t.

use burn::tensor::Tensor;

use crate::schedule::NoiseSchedule;

/// s_θ(x_t, t) = −ε/√(1 − ᾱ_t).
pub(super) fn score(schedule: &NoiseSchedule, t: usize, eps: Tensor<4>) -> Tensor<4> {
    eps * (-1.0 / schedule.sqrt_one_minus_alphas_cumprod[t]) as f32
}

/// One step of Song & Ermon's Algorithm 1, x + (α/2) s + √α z with α = ε σ_t²/σ_min².
pub(super) fn annealed_step(
    schedule: &NoiseSchedule,
    t: usize,
    sigma_min: f64,
    epsilon: f64,
    sample: Tensor<4>,
    eps: Tensor<4>,
    noise: Tensor<4>,
) -> Tensor<4> {
    let sigma = schedule.sqrt_one_minus_alphas_cumprod[t];
    let alpha = epsilon * (sigma / sigma_min).powi(2);
    sample + score(schedule, t, eps) * (alpha / 2.0) as f32 + noise * alpha.sqrt() as f32
}

/// One Langevin corrector step (Song et al. 2021, Algorithm 5, VP form):
/// δ = 2 α_t (r ‖z‖/‖s‖)² per image, x + δ s + √(2δ) z.
pub(super) fn corrector_step(
    schedule: &NoiseSchedule,
    t: usize,
    snr: f64,
    sample: Tensor<4>,
    eps: Tensor<4>,
    noise: Tensor<4>,
) -> Tensor<4> {
    let score = score(schedule, t, eps);
    // (B, 1, 1, 1): one step size per image, so an image's path does not depend on its batch.
    let ratio = per_image_norm(noise.clone()) / per_image_norm(score.clone()).clamp_min(1e-12);
    let step = ratio.powi_scalar(2) * (2.0 * schedule.alphas[t] * snr * snr) as f32;
    sample + score * step.clone() + noise * (step * 2.0).sqrt()
}

/// ‖x_b‖₂ of each image b, shaped (B, 1, 1, 1).
fn per_image_norm(x: Tensor<4>) -> Tensor<4> {
    x.powi_scalar(2).sum_dim(1).sum_dim(2).sum_dim(3).sqrt()
}
