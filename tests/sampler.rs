//! Each sampler's steps against hand-computed values, the samplers' error paths, and the labels
//! and starting noise of a generation.

mod common;

use gendi::pipeline::{Autoguide, Digits, DigitsError, Generation, GenerationRequest};
use gendi::rng::NoiseRng;
use gendi::sampler::{DdpmVariance, Sampler, SamplerError, SamplerKind, guide};
use gendi::schedule::{NoiseSchedule, Objective, ScheduleConfig};

const SHAPE: [usize; 4] = [2, 1, 3, 3];

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(Default::default())
}

fn sampler(kind: SamplerKind) -> Sampler {
    Sampler::new(schedule(), kind).unwrap()
}

/// Every value of `tensor` is `expected` (the inputs are constant images).
fn assert_all(tensor: burn::tensor::Tensor<4>, expected: f64, what: &str) {
    for v in common::values(tensor) {
        assert!(
            ((v as f64) - expected).abs() < 2e-6 * expected.abs().max(1.0),
            "{what}: {v}, expected {expected}"
        );
    }
}

const DDPM_BETA: SamplerKind = SamplerKind::Ddpm {
    variance: DdpmVariance::Beta,
};

#[test]
fn ddpm_step_matches_algorithm_2_by_hand() {
    // x_t = 0.5, ε = 0.1, z = 0.3, t = 500 (0-based), σ_t² = β_t. Python:
    // 1/√α_t (x − β_t/√(1−ᾱ_t) ε) + √β_t z = 0.5315710525332982; x̂0 = 1.4483286356851433.
    let mut ddpm = sampler(DDPM_BETA).without_clipping().starting_at(500);
    assert_eq!(ddpm.next_timestep(), Some(500));
    let out = ddpm
        .step_with_noise(
            common::filled(0.1, SHAPE),
            common::filled(0.5, SHAPE),
            Some(common::filled(0.3, SHAPE)),
        )
        .unwrap();
    assert_all(out.prev_sample, 0.531_571_052_533_298_2, "x_{t-1}");
    assert_all(out.pred_x0, 1.448_328_635_685_143_3, "x̂_0");
    assert_eq!(ddpm.next_timestep(), Some(499));
}

#[test]
fn ddim_step_matches_eq_12_by_hand() {
    // 10 steps: 900, 800, …, 0; from t = 500 to 400 with η = 0. Python: 0.7270198665167659.
    let ddim = sampler(SamplerKind::Ddim {
        steps: 10,
        eta: 0.0,
    })
    .without_clipping();
    assert_eq!(
        ddim.timesteps(),
        &[900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    );
    let mut ddim = ddim.starting_at(550);
    assert_eq!(ddim.timesteps(), &[500, 400, 300, 200, 100, 0]);
    let out = ddim
        .step_with_noise(common::filled(0.1, SHAPE), common::filled(0.5, SHAPE), None)
        .unwrap();
    assert_all(out.prev_sample, 0.727_019_866_516_765_9, "x_400");
}

#[test]
fn ddim_with_all_steps_and_eta_1_is_ddpm() {
    let ddpm_kind = SamplerKind::Ddpm {
        variance: DdpmVariance::PosteriorBeta,
    };
    let ddim_kind = SamplerKind::Ddim {
        steps: 1000,
        eta: 1.0,
    };
    assert_eq!(
        sampler(ddpm_kind).timesteps(),
        sampler(ddim_kind).timesteps()
    );
    let mut rng = NoiseRng::new(11);
    let device = common::device();
    for t in [999, 700, 250, 20, 1] {
        let x = rng.normal_tensor(SHAPE, &device);
        let eps = rng.normal_tensor(SHAPE, &device);
        let z = rng.normal_tensor(SHAPE, &device);
        let a = sampler(ddpm_kind)
            .starting_at(t)
            .step_with_noise(eps.clone(), x.clone(), Some(z.clone()))
            .unwrap();
        let b = sampler(ddim_kind)
            .starting_at(t)
            .step_with_noise(eps, x, Some(z))
            .unwrap();
        let diff = common::max_abs_diff(
            &common::values(a.prev_sample),
            &common::values(b.prev_sample),
        );
        assert!(diff < 1e-4, "t={t}: DDPM and DDIM(η=1) differ by {diff}");
    }
}

#[test]
fn the_last_ddpm_step_adds_no_noise() {
    let last = |noise| {
        let mut ddpm = sampler(DDPM_BETA).starting_at(0);
        let out = ddpm
            .step_with_noise(
                common::filled(0.1, SHAPE),
                common::filled(0.2, SHAPE),
                noise,
            )
            .unwrap();
        assert!(ddpm.is_done());
        common::values(out.prev_sample)
    };
    assert_eq!(last(Some(common::filled(5.0, SHAPE))), last(None));
}

#[test]
fn a_seed_fixes_the_stochastic_steps() {
    let run = |seed| {
        let mut rng = NoiseRng::new(seed);
        let mut ddpm = sampler(DDPM_BETA).starting_at(400);
        common::values(
            ddpm.step(
                common::filled(0.1, SHAPE),
                common::filled(0.2, SHAPE),
                &mut rng,
            )
            .unwrap()
            .prev_sample,
        )
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn dpm_solver_2m_matches_lu_et_al_by_hand() {
    // 10 steps, trailing spacing: 999, 899, …, 99; started at 499. x = 0.5, ε = 0.1 then −0.2.
    // Python (α = √ᾱ, σ = √(1 − ᾱ), λ = log α/σ):
    //   step 1 (first order): x' = σ_399/σ_499 x − α_399 (e^−h − 1) x̂_0 = 0.7263568895172012
    //   step 2: r = h_prev/h = 1.0484532846296286, D = (1 + 1/2r) x̂_0' − (1/2r) x̂_0,
    //           x'' = σ_299/σ_399 x' − α_299 (e^−h − 1) D = 1.2073920816811148
    let dpm = sampler(SamplerKind::DpmSolver { steps: 10 }).without_clipping();
    assert_eq!(
        dpm.timesteps(),
        &[999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    );
    let mut dpm = dpm.starting_at(500);
    let first = dpm
        .step_with_noise(common::filled(0.1, SHAPE), common::filled(0.5, SHAPE), None)
        .unwrap();
    assert_all(first.pred_x0, 1.441_172_023_300_988_6, "x̂_0 at 499");
    assert_all(first.prev_sample.clone(), 0.726_356_889_517_201_2, "x_399");
    let second = dpm
        .step_with_noise(common::filled(-0.2, SHAPE), first.prev_sample, None)
        .unwrap();
    assert_all(second.prev_sample, 1.207_392_081_681_114_8, "x_299");
}

#[test]
fn dpm_solvers_first_step_is_ddim_and_its_last_step_lands_on_x0() {
    let device = common::device();
    let mut rng = NoiseRng::new(3);
    let x = rng.normal_tensor(SHAPE, &device);
    let eps = rng.normal_tensor(SHAPE, &device);
    // DPM-Solver++ 10 starts at 999 and steps to 899; DDIM over 1000 steps started there too.
    let dpm = sampler(SamplerKind::DpmSolver { steps: 10 })
        .step_with_noise(eps.clone(), x.clone(), None)
        .unwrap();
    let mut ddim = sampler(SamplerKind::Ddim {
        steps: 1000,
        eta: 0.0,
    })
    .starting_at(999);
    let ddim_x0 = common::values(
        ddim.step_with_noise(eps.clone(), x.clone(), None)
            .unwrap()
            .pred_x0,
    );
    // DDIM's step goes to 998, not 899: compare x̂_0 and the DPM step's closed form instead.
    assert_eq!(common::values(dpm.pred_x0), ddim_x0);
    let mut last = sampler(SamplerKind::DpmSolver { steps: 10 }).starting_at(99);
    let out = last.step_with_noise(eps, x, None).unwrap();
    assert!(last.is_done());
    assert_eq!(common::values(out.prev_sample), common::values(out.pred_x0));
}

#[test]
fn annealed_langevin_matches_song_and_ermon_by_hand() {
    // 10 levels (900, …, 0), 2 steps each, ε = 2e-5: α = ε σ_900²/σ_0² = 0.1999459510961104;
    // x + α/2 · (−ε_θ/σ_900) + √α z with x = 0.5, ε_θ = 0.1, z = 0.3. Python: 0.6241473001854545.
    let mut langevin = sampler(SamplerKind::Langevin {
        levels: 10,
        steps_per_level: 2,
        epsilon: 2e-5,
    })
    .without_clipping();
    let mut expected: Vec<usize> = (0..10).rev().flat_map(|i| [i * 100, i * 100]).collect();
    expected.push(0); // the final denoising step to x̂_0
    assert_eq!(langevin.timesteps(), expected.as_slice());
    let out = langevin
        .step_with_noise(
            common::filled(0.1, SHAPE),
            common::filled(0.5, SHAPE),
            Some(common::filled(0.3, SHAPE)),
        )
        .unwrap();
    assert_all(
        out.prev_sample,
        0.624_147_300_185_454_5,
        "Langevin step at 900",
    );
    // The last step returns x̂_0 (Tweedie's denoiser), with no noise.
    let mut end = langevin.starting_at(0);
    for _ in 0..2 {
        end.step_with_noise(common::filled(0.1, SHAPE), common::filled(0.5, SHAPE), None)
            .unwrap();
    }
    let out = end
        .step_with_noise(common::filled(0.1, SHAPE), common::filled(0.5, SHAPE), None)
        .unwrap();
    assert!(end.is_done());
    assert_eq!(common::values(out.prev_sample), common::values(out.pred_x0));
}

#[test]
fn the_corrector_matches_song_et_al_algorithm_5_by_hand() {
    // snr r = 0.16 at t = 900, x = 0.5, ε_θ = 0.1, z = 0.3: s = −ε_θ/σ_900,
    // δ = 2 α_900 (r ‖z‖/‖s‖)² = 0.4523704471301693, x + δ s + √(2δ) z = 0.7401104475620437.
    let mut pc = sampler(SamplerKind::PredictorCorrector {
        steps: 10,
        corrector_steps: 1,
        snr: 0.16,
    })
    .without_clipping();
    assert_eq!(
        &pc.timesteps()[..6],
        &[900, 900, 800, 800, 700, 700],
        "a corrector step before each predictor step"
    );
    let corrected = pc
        .step_with_noise(
            common::filled(0.1, SHAPE),
            common::filled(0.5, SHAPE),
            Some(common::filled(0.3, SHAPE)),
        )
        .unwrap();
    assert_all(
        corrected.prev_sample.clone(),
        0.740_110_447_562_043_7,
        "corrected x_900",
    );
    // Then the predictor: DDIM at η = 1 from 900 to 800.
    let device = common::device();
    let mut rng = NoiseRng::new(4);
    let (eps, z) = (
        rng.normal_tensor(SHAPE, &device),
        rng.normal_tensor(SHAPE, &device),
    );
    let predicted = pc
        .step_with_noise(eps.clone(), corrected.prev_sample.clone(), Some(z.clone()))
        .unwrap();
    let ancestral = sampler(SamplerKind::Ddim {
        steps: 10,
        eta: 1.0,
    })
    .without_clipping()
    .step_with_noise(eps, corrected.prev_sample, Some(z))
    .unwrap();
    assert_eq!(
        common::values(predicted.prev_sample),
        common::values(ancestral.prev_sample)
    );
}

#[test]
fn a_corrector_step_size_is_set_per_image() {
    // The same image alone and beside a very different one moves the same way.
    let device = common::device();
    let mut rng = NoiseRng::new(9);
    let one = [1, 1, 4, 4];
    let (x, eps, z) = (
        rng.normal_tensor(one, &device),
        rng.normal_tensor(one, &device),
        rng.normal_tensor(one, &device),
    );
    let kind = SamplerKind::PredictorCorrector {
        steps: 10,
        corrector_steps: 1,
        snr: 0.16,
    };
    let alone = sampler(kind)
        .step_with_noise(eps.clone(), x.clone(), Some(z.clone()))
        .unwrap();
    let pair = |a: &burn::tensor::Tensor<4>, scale: f32| {
        burn::tensor::Tensor::cat(vec![a.clone(), a.clone() * scale], 0)
    };
    let together = sampler(kind)
        .step_with_noise(pair(&eps, 30.0), pair(&x, -2.0), Some(pair(&z, 0.1)))
        .unwrap();
    let first = common::values(together.prev_sample.narrow(0, 0, 1));
    let diff = common::max_abs_diff(&first, &common::values(alone.prev_sample));
    assert!(
        diff < 1e-6,
        "the other image changed this one's step by {diff}"
    );
}

#[test]
fn guidance_combines_as_one_plus_w() {
    let eps = guide(common::filled(1.0, SHAPE), common::filled(0.25, SHAPE), 3.0);
    // (1 + 3)·1 − 3·0.25 = 3.25
    assert!(common::values(eps).iter().all(|&v| (v - 3.25).abs() < 1e-6));
}

#[test]
fn guidance_applies_only_within_its_noise_interval() {
    let device = common::device();
    let model = gendi::model::UNetConfig::tiny().init(&device);
    let schedule = schedule();
    let kind = SamplerKind::DpmSolver { steps: 4 };
    // Trailing spacing: the steps run at t = 999, 749, 499, 249.
    let timesteps = Sampler::new(schedule.clone(), kind)
        .unwrap()
        .timesteps()
        .to_vec();
    assert_eq!(timesteps, [999, 749, 499, 249]);
    let sigma = |t: usize| schedule.noise_scale[t] / schedule.signal_scale[t];
    let run = |guidance: f32, guidance_sigma_max: f32| {
        let request = GenerationRequest {
            guidance_sigma_max,
            ..GenerationRequest::new(2, 5, Digits::Only(3), guidance)
        };
        let sampler = Sampler::new(schedule.clone(), kind).unwrap();
        let mut generation = Generation::new(sampler, &request, &device);
        (0..4)
            .map(|_| common::values(generation.step(&model).unwrap().unwrap().prev_sample))
            .collect::<Vec<_>>()
    };
    let conditional = run(0.0, f32::INFINITY);
    let everywhere = run(2.0, f32::INFINITY);
    // Between σ at t = 999 and at t = 749: the first step unguided, the rest guided.
    let from_second = run(2.0, ((sigma(999) + sigma(749)) / 2.0) as f32);
    assert_eq!(
        run(2.0, 0.0),
        conditional,
        "σ_max = 0: the conditional model alone"
    );
    assert_eq!(
        from_second[0], conditional[0],
        "t = 999 lies above σ_max: unguided"
    );
    let apart = |a: &[f32], b: &[f32]| common::max_abs_diff(a, b) > 1e-4;
    assert!(
        apart(&everywhere[0], &conditional[0]),
        "guidance changes the step"
    );
    assert!(
        apart(&from_second[1], &conditional[1]),
        "t = 749 lies within σ_max: guided"
    );
}

#[test]
fn autoguidance_steers_unconditional_samples_away_from_the_guide() {
    let device = common::device();
    let model = gendi::model::UNetConfig::tiny().init(&device);
    let bad = gendi::model::UNetConfig::tiny().init(&device);
    let kind = SamplerKind::Ddim { steps: 4, eta: 0.0 };
    let autoguide = |weight| Autoguide {
        model: &bad,
        weight,
    };
    let first_step = |request: &GenerationRequest, autoguide: Option<&Autoguide>| {
        let sampler = Sampler::new(schedule(), kind).unwrap();
        let mut generation = Generation::new(sampler, request, &device);
        let x = generation.sample().clone();
        let t = generation.next_timestep().unwrap();
        let step = generation.step_with(&model, autoguide).unwrap().unwrap();
        (x, t, common::values(step.prev_sample))
    };
    let unconditional = GenerationRequest::new(2, 5, Digits::Unconditional, 0.0);
    let (x, t, steered) = first_step(&unconditional, Some(&autoguide(1.5)));
    // By hand: (1 + w) ε_model − w ε_guide, then the sampler's own step.
    let labels = [None, None];
    let eps = guide(
        model.forward(x.clone(), &[t, t], &labels),
        bad.forward(x.clone(), &[t, t], &labels),
        1.5,
    );
    let expected = Sampler::new(schedule(), kind)
        .unwrap()
        .step(eps, x, &mut NoiseRng::new(0))
        .unwrap();
    let diff = common::max_abs_diff(&steered, &common::values(expected.prev_sample));
    assert!(
        diff < 1e-5,
        "autoguided step off the hand calculation by {diff}"
    );
    let (_, _, plain) = first_step(&unconditional, None);
    assert!(
        common::max_abs_diff(&steered, &plain) > 1e-4,
        "autoguidance changes the step"
    );
    assert_eq!(
        first_step(&unconditional, Some(&autoguide(0.0))).2,
        plain,
        "w = 0: the model alone"
    );
    // Digits with a label are left to classifier-free guidance: guided or not (t = 999 lies
    // above the default interval), autoguidance does not touch them.
    for guidance in [0.0, 2.0] {
        let labelled = GenerationRequest::new(2, 5, Digits::Only(3), guidance);
        assert_eq!(
            first_step(&labelled, Some(&autoguide(1.5))).2,
            first_step(&labelled, None).2,
            "a labelled digit at guidance {guidance} is not autoguided"
        );
    }
}

#[test]
fn sampler_errors_are_precise() {
    let refuse = |kind| Sampler::new(schedule(), kind).unwrap_err();
    assert_eq!(
        refuse(SamplerKind::Ddim {
            steps: 1001,
            eta: 0.0,
        }),
        SamplerError::TooManySteps {
            steps: 1001,
            timesteps: 1000
        }
    );
    assert_eq!(
        refuse(SamplerKind::Ddim { steps: 0, eta: 0.0 }),
        SamplerError::NoSteps
    );
    assert_eq!(
        refuse(SamplerKind::DpmSolver { steps: 0 }),
        SamplerError::NoSteps
    );
    for eta in [-1.0, 1.5, 1e300, f64::NAN] {
        let err = refuse(SamplerKind::Ddim { steps: 10, eta });
        assert!(
            matches!(
                err,
                SamplerError::OutOfRange {
                    setting: "DDIM's eta",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let pc = |corrector_steps, snr| SamplerKind::PredictorCorrector {
        steps: 10,
        corrector_steps,
        snr,
    };
    assert_eq!(
        refuse(pc(101, 0.16)).to_string(),
        "the corrector steps is 101, allowed 0 to 100"
    );
    assert!(refuse(pc(1, f64::INFINITY)).to_string().contains("snr"));
    assert!(refuse(pc(1, 0.0)).to_string().contains("snr"));
    let langevin = |steps_per_level, epsilon| SamplerKind::Langevin {
        levels: 10,
        steps_per_level,
        epsilon,
    };
    assert!(
        refuse(langevin(0, 2e-5))
            .to_string()
            .contains("steps per level")
    );
    assert!(
        refuse(langevin(1, 0.5))
            .to_string()
            .contains("epsilon is 0.5")
    );
    assert!(
        refuse(langevin(1, f64::NAN))
            .to_string()
            .contains("epsilon")
    );

    let mut ddim = sampler(SamplerKind::Ddim { steps: 1, eta: 0.0 });
    let step = |s: &mut Sampler| {
        s.step_with_noise(common::filled(0.0, SHAPE), common::filled(0.0, SHAPE), None)
    };
    assert!(step(&mut ddim).is_ok());
    assert_eq!(step(&mut ddim).err(), Some(SamplerError::Finished));
}

fn flow_sampler(kind: SamplerKind) -> Sampler {
    let schedule = NoiseSchedule::new(ScheduleConfig {
        objective: Objective::Flow,
        ..Default::default()
    });
    Sampler::new(schedule, kind).unwrap()
}

#[test]
fn euler_steps_along_the_straight_path_by_hand() {
    // 4 steps: t = 999, 749, 499, 249, σ = (t + 1)/T = 1, 0.75, 0.5, 0.25, then 0.
    let mut euler = flow_sampler(SamplerKind::Euler { steps: 4 }).without_clipping();
    assert_eq!(euler.timesteps(), &[999, 749, 499, 249]);
    // x = 0.5, v = 0.3 at σ = 1: x̂_0 = x + σ v = 0.8; x_0.75 = x + 0.25 v = 0.575.
    let out = euler
        .step_with_noise(common::filled(0.3, SHAPE), common::filled(0.5, SHAPE), None)
        .unwrap();
    assert_all(out.pred_x0, 0.8, "x̂_0");
    assert_all(out.prev_sample, 0.575, "x_0.75");
    // The last step, from σ = 0.25, lands on x̂_0: 0.2 + 0.25 · 1.2 = 0.5.
    let mut last = flow_sampler(SamplerKind::Euler { steps: 4 }).starting_at(300);
    assert_eq!(last.timesteps(), &[249]);
    let out = last
        .step_with_noise(common::filled(1.2, SHAPE), common::filled(0.2, SHAPE), None)
        .unwrap();
    assert_all(out.prev_sample, 0.5, "x_0");
    assert!(last.is_done());

    // Clipped: v = 0.8 at σ = 1 points at 1.3, clipped to 1; the step follows v = 0.5 instead:
    // 0.5 + 0.25 · 0.5 = 0.625.
    let mut clipped = flow_sampler(SamplerKind::Euler { steps: 4 });
    let out = clipped
        .step_with_noise(common::filled(0.8, SHAPE), common::filled(0.5, SHAPE), None)
        .unwrap();
    assert_all(out.pred_x0, 1.0, "clipped x̂_0");
    assert_all(out.prev_sample, 0.625, "x_0.75 after clipping");
}

#[test]
fn heun_averages_the_velocities_at_both_ends_by_hand() {
    let mut heun = flow_sampler(SamplerKind::Heun { steps: 4 }).without_clipping();
    // Two evaluations per step, one for the last: 7.
    assert_eq!(heun.timesteps(), &[999, 749, 749, 499, 499, 249, 249]);
    // From x = 0.5 at σ = 1 with v = 0.3: Euler's guess 0.575 at σ = 0.75.
    let guess = heun
        .step_with_noise(common::filled(0.3, SHAPE), common::filled(0.5, SHAPE), None)
        .unwrap();
    assert_all(guess.prev_sample.clone(), 0.575, "Euler's guess");
    // v' = 0.1 there: x̂_0 = 0.575 + 0.75 · 0.1 = 0.65, and the step is
    // 0.5 + 0.25 · (0.3 + 0.1)/2 = 0.55.
    let out = heun
        .step_with_noise(common::filled(0.1, SHAPE), guess.prev_sample, None)
        .unwrap();
    assert_all(out.pred_x0, 0.65, "x̂_0 at the guess");
    assert_all(out.prev_sample, 0.55, "x_0.75");
    assert_eq!(heun.next_timestep(), Some(749));

    // Starting below a step's beginning drops its correction: 499 (its own step), 249, 249.
    let from_600 = flow_sampler(SamplerKind::Heun { steps: 4 }).starting_at(600);
    assert_eq!(from_600.timesteps(), &[499, 249, 249]);
}

#[test]
fn the_exact_velocity_of_one_image_leads_euler_and_heun_to_it_in_any_step_count() {
    // For data that is one image x*, the flow's velocity at x_σ is (x* − x_σ)/σ: both solvers
    // then stay on the straight line to x* and end on it, whatever the steps.
    let target = 0.4_f32;
    for kind in [
        SamplerKind::Euler { steps: 1 },
        SamplerKind::Euler { steps: 7 },
        SamplerKind::Heun { steps: 3 },
        SamplerKind::Heun { steps: 20 },
    ] {
        let mut sampler = flow_sampler(kind);
        let mut x = common::filled(-1.3, SHAPE);
        while let Some(t) = sampler.next_timestep() {
            let sigma = (t + 1) as f32 / 1000.0;
            let velocity = (x.clone().neg() + target) / sigma;
            x = sampler
                .step_with_noise(velocity, x, None)
                .unwrap()
                .prev_sample;
        }
        assert_all(x, target as f64, &format!("{kind}'s end"));
    }
}

#[test]
fn samplers_refuse_weights_of_the_other_objective() {
    let flow = NoiseSchedule::new(ScheduleConfig {
        objective: Objective::Flow,
        ..Default::default()
    });
    let err = Sampler::new(flow, SamplerKind::DpmSolver { steps: 20 }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DPM-Solver++(2M) 20 runs ε-prediction (diffusion) weights, but these weights were \
         trained for flow matching (velocity): use euler or heun"
    );
    let err = Sampler::new(schedule(), SamplerKind::Heun { steps: 10 }).unwrap_err();
    assert_eq!(
        err,
        SamplerError::WrongObjective {
            sampler: SamplerKind::Heun { steps: 10 },
            weights: Objective::Epsilon
        }
    );
    assert!(
        err.to_string()
            .ends_with("use ddpm, ddim, dpm-solver, langevin or predictor-corrector")
    );
    assert_eq!(
        SamplerKind::default_for(Objective::Flow).objective(),
        Objective::Flow
    );
}

#[test]
fn mixed_digits_hold_each_digit_once_per_ten_images_in_a_seeded_order() {
    let labels = Digits::Mixed.labels(25, 7);
    assert_eq!(labels.len(), 25);
    for run in labels.chunks(10).filter(|run| run.len() == 10) {
        let mut digits: Vec<usize> = run.iter().map(|l| l.unwrap()).collect();
        digits.sort();
        assert_eq!(digits, (0..10).collect::<Vec<_>>());
    }
    assert_eq!(labels, Digits::Mixed.labels(25, 7));
    assert_ne!(labels, Digits::Mixed.labels(25, 8));
    assert_eq!(Digits::Only(4).labels(3, 7), vec![Some(4); 3]);
    assert_eq!(Digits::Unconditional.labels(3, 7), vec![None; 3]);
}

#[test]
fn the_seed_gives_the_same_starting_noise_whichever_digits_are_asked_for() {
    let device = common::device();
    let start = |digits| {
        let request = GenerationRequest::new(3, 11, digits, 2.0);
        let sampler = Sampler::new(schedule(), SamplerKind::Ddim { steps: 5, eta: 0.0 }).unwrap();
        common::values(Generation::new(sampler, &request, &device).sample().clone())
    };
    let unconditional = start(Digits::Unconditional);
    assert_eq!(unconditional, start(Digits::Mixed));
    assert_eq!(unconditional, start(Digits::Only(9)));
}

#[test]
fn digits_are_checked_against_the_model_classes() {
    assert_eq!(Digits::Unconditional.check(0), Ok(()));
    assert_eq!(Digits::Mixed.check(10), Ok(()));
    assert_eq!(Digits::Only(9).check(10), Ok(()));
    assert_eq!(
        Digits::Mixed.check(0),
        Err(DigitsError::UnconditionalWeights)
    );
    assert_eq!(
        Digits::Only(10).check(10),
        Err(DigitsError::UnknownDigit {
            digit: 10,
            classes: 10
        })
    );
    assert!(Digits::Mixed.check(5).is_err());
}

#[test]
fn generation_settings_out_of_range_are_refused_naming_the_setting() {
    use gendi::pipeline::{Digits, GenerationRequest};
    let ok = GenerationRequest::new(16, 1, Digits::Mixed, 1.0);
    assert!(ok.validate().is_ok());
    for (request, named) in [
        (
            GenerationRequest {
                count: 0,
                ..ok.clone()
            },
            "count",
        ),
        (
            GenerationRequest {
                count: 1 << 40,
                ..ok.clone()
            },
            "count",
        ),
        (
            GenerationRequest {
                guidance: -0.5,
                ..ok.clone()
            },
            "guidance",
        ),
        (
            GenerationRequest {
                guidance: f32::NAN,
                ..ok.clone()
            },
            "guidance",
        ),
        (
            GenerationRequest {
                guidance: 1e30,
                ..ok.clone()
            },
            "guidance",
        ),
        (
            GenerationRequest {
                guidance_sigma_max: f32::NAN,
                ..ok.clone()
            },
            "guidance_sigma_max",
        ),
        (
            GenerationRequest {
                guidance_sigma_max: -1.0,
                ..ok.clone()
            },
            "guidance_sigma_max",
        ),
    ] {
        let err = request.validate().unwrap_err();
        assert!(err.contains(named), "{err}");
    }
}
