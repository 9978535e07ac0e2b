//! Samplers of flow-matching weights: the ODE dx/dσ = −v_θ(x, σ) from σ = 1 (noise) to σ = 0
//! (data), integrated with Euler's method or Heun's (Karras et al. 2022, Algorithm 1, whose last
//! step, to σ = 0, is Euler's). The network predicts the velocity v = x_0 − ε of the straight
//! path x_σ = (1 − σ) x_0 + σ ε, so x̂_0 = x_σ + σ v.
//!
//! Clipping x̂_0 to the data range works as in DDIM: the velocity used is the one that points at
//! the clipped x̂_0, (x̂_0 − x_σ)/σ, which is v itself whenever nothing was clipped. An Euler step
//! is then DDIM's deterministic step on this path.

use burn::tensor::Tensor;

/// x̂_0 = x_σ + σ v: where the path through x_σ with velocity v meets the data.
pub(super) fn pred_x0(sigma: f64, sample: Tensor<4>, velocity: Tensor<4>) -> Tensor<4> {
    sample + velocity * sigma as f32
}

/// The velocity that leads from x_σ to `pred_x0` by σ = 0.
pub(super) fn velocity_to(sigma: f64, sample: Tensor<4>, pred_x0: Tensor<4>) -> Tensor<4> {
    (pred_x0 - sample) / sigma as f32
}

/// Euler's step from σ to σ_next < σ: x + (σ − σ_next) v.
pub(super) fn euler(
    sigma: f64,
    sigma_next: f64,
    sample: Tensor<4>,
    velocity: Tensor<4>,
) -> Tensor<4> {
    sample + velocity * (sigma - sigma_next) as f32
}

/// Heun's correction of the step from `start` at σ to σ_next: the mean of the velocity at the
/// start and at Euler's estimate of the end, x + (σ − σ_next)(v + v')/2.
pub(super) fn heun(
    sigma: f64,
    sigma_next: f64,
    start: Tensor<4>,
    velocity: Tensor<4>,
    velocity_next: Tensor<4>,
) -> Tensor<4> {
    start + (velocity + velocity_next) * (0.5 * (sigma - sigma_next)) as f32
}
