//! The noise schedule against closed forms and independently computed values.

mod common;

use gendi::schedule::{BetaSchedule, NoiseSchedule, Objective, ScheduleConfig};

fn linear() -> NoiseSchedule {
    NoiseSchedule::new(ScheduleConfig::default())
}

#[test]
fn linear_betas_run_from_1e4_to_002() {
    let s = linear();
    assert_eq!(s.len(), 1000);
    assert!((s.betas[0] - 1e-4).abs() < 1e-15);
    assert!((s.betas[999] - 0.02).abs() < 1e-15);
    // Constant increments.
    let step = s.betas[1] - s.betas[0];
    assert!(
        s.betas
            .windows(2)
            .all(|w| ((w[1] - w[0]) - step).abs() < 1e-15)
    );
}

#[test]
fn alphas_cumprod_match_pinned_values() {
    // Computed independently in Python (plain float products), 1-based t as in the paper.
    let s = linear();
    assert!((s.alphas_cumprod[0] - 0.9999).abs() < 1e-12);
    assert!((s.alphas_cumprod[499] - 0.07858724288177821).abs() < 1e-12);
    assert!((s.alphas_cumprod[999] - 4.0358297653756754e-05).abs() < 1e-15);
}

#[test]
fn derived_quantities_match_closed_forms() {
    let s = linear();
    for t in [0, 1, 10, 487, 999] {
        let b = s.betas[t];
        let ac = s.alphas_cumprod[t];
        let acp = if t == 0 { 1.0 } else { s.alphas_cumprod[t - 1] };
        assert!((s.alphas[t] - (1.0 - b)).abs() < 1e-15);
        assert!((s.alphas_cumprod_prev[t] - acp).abs() < 1e-15);
        assert!((s.sqrt_alphas_cumprod[t] - ac.sqrt()).abs() < 1e-15);
        assert!((s.sqrt_one_minus_alphas_cumprod[t] - (1.0 - ac).sqrt()).abs() < 1e-15);
        assert!((s.posterior_variance[t] - b * (1.0 - acp) / (1.0 - ac)).abs() < 1e-15);
        assert!((s.posterior_mean_coef_x0[t] - b * acp.sqrt() / (1.0 - ac)).abs() < 1e-15);
        assert!(
            (s.posterior_mean_coef_xt[t] - (1.0 - acp) * (1.0 - b).sqrt() / (1.0 - ac)).abs()
                < 1e-15
        );
    }
    // diffusers pins variance(487) ≈ 0.00979 for this schedule; Python gives 0.00979157198569004.
    assert!((s.posterior_variance[487] - 0.00979157198569004).abs() < 1e-14);
    assert_eq!(s.posterior_variance[0], 0.0);
}

#[test]
fn cosine_schedule_matches_nichol_dhariwal() {
    let s = NoiseSchedule::new(ScheduleConfig {
        timesteps: 1000,
        beta_schedule: BetaSchedule::Cosine { s: 0.008 },
        ..Default::default()
    });
    // Pinned from Python: ᾱ from f(t) = cos²((t/T + s)/(1 + s)·π/2) with β clipped at 0.999.
    assert!((s.alphas_cumprod[0] - 0.999958715775178).abs() < 1e-12);
    assert!((s.alphas_cumprod[499] - 0.4938435904406382).abs() < 1e-10);
    assert!((s.betas[999] - 0.999).abs() < 1e-12);
    // A cosine schedule with fractional steps must not collapse to integer arithmetic.
    assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 0.999));
    assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
}

#[test]
fn add_noise_has_the_moments_of_q_xt_given_x0() {
    let s = linear();
    let device = common::device();
    let mut rng = gendi::rng::NoiseRng::new(3);
    let shape = [4, 1, 64, 64];
    let x0 = common::filled(0.8, shape);
    let noise = rng.normal_tensor(shape, &device);
    let timesteps = [0, 100, 500, 999];
    let xt = common::values(s.add_noise(x0, noise, &timesteps));
    for (i, &t) in timesteps.iter().enumerate() {
        let chunk = &xt[i * 4096..(i + 1) * 4096];
        let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / 4096.0;
        let var = chunk
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / 4096.0;
        let expected_mean = 0.8 * s.sqrt_alphas_cumprod[t];
        let expected_var = 1.0 - s.alphas_cumprod[t];
        // 4096 samples: the standard error of the mean is σ/64.
        assert!(
            (mean - expected_mean).abs() < 4.0 * expected_var.sqrt() / 64.0 + 1e-6,
            "t={t}: mean {mean} vs {expected_mean}"
        );
        assert!(
            (var - expected_var).abs() < 0.1 * expected_var + 1e-8,
            "t={t}: var {var} vs {expected_var}"
        );
    }
}

#[test]
fn add_noise_at_t0_is_almost_the_image() {
    let s = linear();
    let x0 = common::filled(0.5, [1, 1, 4, 4]);
    let noise = common::filled(1.0, [1, 1, 4, 4]);
    let xt = common::values(s.add_noise(x0, noise, &[0]));
    let expected = (0.5 * 0.9999f64.sqrt() + (1e-4f64).sqrt()) as f32;
    assert!(xt.iter().all(|&v| (v - expected).abs() < 1e-6));
}

#[test]
fn the_flow_path_is_straight_from_the_image_to_the_noise_and_learns_the_velocity() {
    let s = NoiseSchedule::new(ScheduleConfig {
        objective: Objective::Flow,
        ..Default::default()
    });
    // σ_t = (t + 1)/T: x_999 is the noise itself, x_499 halfway.
    let x0 = common::filled(0.8, [1, 1, 2, 2]);
    let noise = common::filled(-0.4, [1, 1, 2, 2]);
    for (t, expected) in [(999, -0.4), (499, 0.2), (0, 0.9990 * 0.8 - 0.001 * 0.4)] {
        let xt = common::values(s.add_noise(x0.clone(), noise.clone(), &[t]));
        assert!(
            xt.iter().all(|v| (v - expected).abs() < 1e-6),
            "x_{t}: {xt:?}"
        );
    }
    // The target is the velocity x_0 − ε; for ε-prediction it is ε.
    let v = common::values(s.target(x0.clone(), noise.clone()));
    assert!(v.iter().all(|v| (v - 1.2).abs() < 1e-6), "{v:?}");
    let eps = common::values(linear().target(x0, noise));
    assert!(eps.iter().all(|v| (v + 0.4).abs() < 1e-6), "{eps:?}");
}

#[test]
fn manifests_and_checkpoints_without_an_objective_read_as_epsilon_prediction() {
    let old: ScheduleConfig = serde_json::from_str(
        r#"{"timesteps":1000,"beta_schedule":{"kind":"linear","beta_start":0.0001,"beta_end":0.02}}"#,
    )
    .unwrap();
    assert_eq!(old.objective, Objective::Epsilon);
    let flow: ScheduleConfig = serde_json::from_str(
        r#"{"timesteps":1000,"beta_schedule":{"kind":"linear","beta_start":0.0001,"beta_end":0.02},"objective":"flow"}"#,
    )
    .unwrap();
    assert_eq!(flow.objective, Objective::Flow);
}
