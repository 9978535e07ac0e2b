//! DDIM's step (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 and 16) from
//! x_t to x_{t_prev} over a subsequence of the T timesteps. η = 0 is deterministic; η = 1 is the
//! ancestral (DDPM posterior) step over the subsequence, which the predictor–corrector sampler
//! uses as its predictor.

use burn::tensor::Tensor;

/// σ_t(η) = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev) (eq. 16).
pub(super) fn sigma(alpha: f64, alpha_prev: f64, eta: f64) -> f64 {
    eta * ((1.0 - alpha_prev) / (1.0 - alpha) * (1.0 - alpha / alpha_prev)).sqrt()
}

/// √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ_t²) ε (eq. 12), before σ_t z is added.
pub(super) fn mean(alpha_prev: f64, sigma: f64, pred_x0: Tensor<4>, eps: Tensor<4>) -> Tensor<4> {
    let direction = (1.0 - alpha_prev - sigma * sigma).max(0.0).sqrt();
    pred_x0 * alpha_prev.sqrt() as f32 + eps * direction as f32
}
