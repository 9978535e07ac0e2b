//! DDPM and DDIM steps against hand-computed values, the samplers' error paths, and the labels
//! and starting noise of a generation.

mod common;

use gendi::pipeline::{Digits, DigitsError, Generation, GenerationRequest};
use gendi::rng::NoiseRng;
use gendi::sampler::{DdpmVariance, Sampler, SamplerError, SamplerKind, guide};
use gendi::schedule::NoiseSchedule;

const SHAPE: [usize; 4] = [2, 1, 3, 3];

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(Default::default())
}

#[test]
fn ddpm_step_matches_algorithm_2_by_hand() {
    // x_t = 0.5, ε = 0.1, z = 0.3, t = 500 (0-based), σ_t² = β_t. Python:
    // 1/√α_t (x − β_t/√(1−ᾱ_t) ε) + √β_t z = 0.5315710525332982; x̂0 = 1.4483286356851433.
    let sampler = Sampler::new(
        schedule(),
        SamplerKind::Ddpm {
            variance: DdpmVariance::Beta,
        },
    )
    .unwrap()
    .without_clipping();
    let out = sampler
        .step_with_noise(
            common::filled(0.1, SHAPE),
            500,
            common::filled(0.5, SHAPE),
            Some(common::filled(0.3, SHAPE)),
        )
        .unwrap();
    for v in common::values(out.prev_sample) {
        assert!((v - 0.531_571_05).abs() < 2e-6, "{v}");
    }
    for v in common::values(out.pred_x0) {
        assert!((v - 1.448_328_6).abs() < 2e-6, "{v}");
    }
}

#[test]
fn ddim_step_matches_eq_12_by_hand() {
    // 10 steps: 900, 800, …, 0; from t = 500 to 400 with η = 0. Python: 0.7270198665167659.
    let sampler = Sampler::new(
        schedule(),
        SamplerKind::Ddim {
            steps: 10,
            eta: 0.0,
        },
    )
    .unwrap()
    .without_clipping();
    assert_eq!(
        sampler.timesteps(),
        &[900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    );
    let out = sampler
        .step_with_noise(
            common::filled(0.1, SHAPE),
            500,
            common::filled(0.5, SHAPE),
            None,
        )
        .unwrap();
    for v in common::values(out.prev_sample) {
        assert!((v - 0.727_019_87).abs() < 2e-6, "{v}");
    }
}

#[test]
fn ddim_with_all_steps_and_eta_1_is_ddpm() {
    let ddpm = Sampler::new(
        schedule(),
        SamplerKind::Ddpm {
            variance: DdpmVariance::PosteriorBeta,
        },
    )
    .unwrap();
    let ddim = Sampler::new(
        schedule(),
        SamplerKind::Ddim {
            steps: 1000,
            eta: 1.0,
        },
    )
    .unwrap();
    assert_eq!(ddpm.timesteps(), ddim.timesteps());
    let mut rng = NoiseRng::new(11);
    let device = common::device();
    for t in [999, 700, 250, 20, 1] {
        let x = rng.normal_tensor(SHAPE, &device);
        let eps = rng.normal_tensor(SHAPE, &device);
        let z = rng.normal_tensor(SHAPE, &device);
        let a = ddpm
            .step_with_noise(eps.clone(), t, x.clone(), Some(z.clone()))
            .unwrap();
        let b = ddim.step_with_noise(eps, t, x, Some(z)).unwrap();
        let diff = common::max_abs_diff(
            &common::values(a.prev_sample),
            &common::values(b.prev_sample),
        );
        assert!(diff < 1e-4, "t={t}: DDPM and DDIM(η=1) differ by {diff}");
    }
}

#[test]
fn the_last_ddpm_step_adds_no_noise() {
    let sampler = Sampler::new(
        schedule(),
        SamplerKind::Ddpm {
            variance: DdpmVariance::Beta,
        },
    )
    .unwrap();
    let a = sampler
        .step_with_noise(
            common::filled(0.1, SHAPE),
            0,
            common::filled(0.2, SHAPE),
            Some(common::filled(5.0, SHAPE)),
        )
        .unwrap();
    let b = sampler
        .step_with_noise(
            common::filled(0.1, SHAPE),
            0,
            common::filled(0.2, SHAPE),
            None,
        )
        .unwrap();
    assert_eq!(common::values(a.prev_sample), common::values(b.prev_sample));
}

#[test]
fn a_seed_fixes_the_stochastic_steps() {
    let sampler = Sampler::new(
        schedule(),
        SamplerKind::Ddpm {
            variance: DdpmVariance::Beta,
        },
    )
    .unwrap();
    let run = |seed| {
        let mut rng = NoiseRng::new(seed);
        common::values(
            sampler
                .step(
                    common::filled(0.1, SHAPE),
                    400,
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
fn guidance_combines_as_one_plus_w() {
    let eps = guide(common::filled(1.0, SHAPE), common::filled(0.25, SHAPE), 3.0);
    // (1 + 3)·1 − 3·0.25 = 3.25
    assert!(common::values(eps).iter().all(|&v| (v - 3.25).abs() < 1e-6));
}

#[test]
fn sampler_errors_are_precise() {
    let too_many = Sampler::new(
        schedule(),
        SamplerKind::Ddim {
            steps: 1001,
            eta: 0.0,
        },
    );
    assert_eq!(
        too_many.unwrap_err(),
        SamplerError::TooManySteps {
            steps: 1001,
            timesteps: 1000
        }
    );
    assert_eq!(
        Sampler::new(schedule(), SamplerKind::Ddim { steps: 0, eta: 0.0 }).unwrap_err(),
        SamplerError::NoSteps
    );
    assert!(matches!(
        Sampler::new(
            schedule(),
            SamplerKind::Ddim {
                steps: 10,
                eta: -1.0
            }
        )
        .unwrap_err(),
        SamplerError::EtaOutOfRange(_)
    ));
    for eta in [1.5, 1e300, f64::NAN] {
        assert!(matches!(
            Sampler::new(schedule(), SamplerKind::Ddim { steps: 10, eta }).unwrap_err(),
            SamplerError::EtaOutOfRange(_)
        ));
    }
    let ddim = Sampler::new(
        schedule(),
        SamplerKind::Ddim {
            steps: 10,
            eta: 0.0,
        },
    )
    .unwrap();
    let err = ddim.step_with_noise(
        common::filled(0.0, SHAPE),
        555,
        common::filled(0.0, SHAPE),
        None,
    );
    assert_eq!(
        err.err().map(|e| e.to_string()),
        Some("timestep 555 is not one of this sampler's timesteps".into())
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
        let request = GenerationRequest {
            count: 3,
            seed: 11,
            digits,
            guidance: 2.0,
        };
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
    let ok = GenerationRequest {
        count: 16,
        seed: 1,
        digits: Digits::Mixed,
        guidance: 1.0,
    };
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
    ] {
        let err = request.validate().unwrap_err();
        assert!(err.contains(named), "{err}");
    }
}
