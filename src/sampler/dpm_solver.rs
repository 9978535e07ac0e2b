//! DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep
//! solver of the diffusion ODE written in the data prediction x̂_0, deterministic, good digits in
//! 10–20 steps.
//!
//! Notation map: α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), λ_t = log(α_t/σ_t) (half the log-SNR),
//! h = λ_{t_prev} − λ_t, `previous` = (λ, x̂_0) of the step before this one.

use burn::tensor::Tensor;

use crate::schedule::NoiseSchedule;

/// λ_t = log(√ᾱ_t / √(1 − ᾱ_t)).
pub(super) fn lambda(schedule: &NoiseSchedule, t: usize) -> f64 {
    (schedule.sqrt_alphas_cumprod[t] / schedule.sqrt_one_minus_alphas_cumprod[t]).ln()
}

/// x_{t_prev} from x_t and its x̂_0; `to` = None is the end (ᾱ = 1, σ = 0), where the update is
/// x̂_0 itself. Second order when the previous step's x̂_0 is given, first order (DDIM) without.
pub(super) fn update(
    schedule: &NoiseSchedule,
    t: usize,
    to: Option<usize>,
    sample: Tensor<4>,
    pred_x0: Tensor<4>,
    previous: Option<(f64, Tensor<4>)>,
) -> Tensor<4> {
    // At σ_prev = 0, h = ∞: every order gives x̂_0 (diffusers' "lower order final").
    let Some(to) = to else { return pred_x0 };
    let (lambda_t, lambda_to) = (lambda(schedule, t), lambda(schedule, to));
    let h = lambda_to - lambda_t;
    // D = x̂_0 for first order; (1 + 1/2r) x̂_0 − (1/2r) x̂_0' with r = h_prev/h for second.
    let data = match previous {
        Some((lambda_prev, previous_x0)) => {
            let half_over_r = 0.5 * h / (lambda_t - lambda_prev);
            pred_x0.clone() * (1.0 + half_over_r) as f32 - previous_x0 * half_over_r as f32
        }
        None => pred_x0,
    };
    // x_{t_prev} = (σ_prev/σ_t) x_t − α_prev (e^{−h} − 1) D   (eq. 7 of Lu et al. 2022b)
    let sigma_ratio =
        schedule.sqrt_one_minus_alphas_cumprod[to] / schedule.sqrt_one_minus_alphas_cumprod[t];
    let data_coef = -schedule.sqrt_alphas_cumprod[to] * (-h).exp_m1();
    sample * sigma_ratio as f32 + data * data_coef as f32
}
