//! The weights in www/weights are the ones that ship: they load through the same checks as the
//! page's, and a fixed seed gives digits that the evaluation classifier recognises as asked.
//!
//! `tests/fixtures/classifier.bpk` is `gendi eval`'s classifier (trained with seed 0 for 5
//! epochs, 99.17% on the MNIST test set), kept so this test does not spend minutes training it.

mod common;

use std::path::Path;

use gendi::native::classifier::{self, DigitClassifier};
use gendi::native::export::load_exported;
use gendi::native::generate_images;
use gendi::pipeline::{DEFAULT_GUIDANCE, Digits, GenerationRequest};
use gendi::sampler::{Sampler, SamplerKind};
use gendi::schedule::NoiseSchedule;
use gendi::weights::{MANIFEST_FILE, sha256_hex};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The weights in www/weights, loaded as the CLI loads them.
fn shipped(device: &burn::tensor::Device) -> (gendi::weights::Manifest, gendi::model::UNet) {
    load_exported(&root().join("www/weights"), device).unwrap()
}

/// `gendi eval`'s classifier, kept in tests/fixtures.
fn fixture_classifier(device: &burn::tensor::Device) -> classifier::Classifier {
    classifier::load(&root().join("tests/fixtures/classifier.bpk"), device).unwrap()
}

#[test]
fn shipped_manifest_matches_the_shipped_weights() {
    let dir = root().join("www/weights");
    let (manifest, _) = load_exported(&dir, &common::device()).expect("www/weights loads");
    let bytes = std::fs::read(dir.join(&manifest.weights.file)).unwrap();
    assert_eq!(sha256_hex(&bytes), manifest.weights.sha256);
    assert!(manifest.ema, "the page ships the EMA weights");
    assert!(dir.join(MANIFEST_FILE).exists());
}

#[test]
fn shipped_weights_draw_the_digits_asked_for() {
    let (right, predictions) = digits_drawn_as_asked(SamplerKind::Ddim {
        steps: 50,
        eta: 0.0,
    });
    eprintln!("DDIM 50: {right} of 20 digits classified as asked: {predictions:?}");
    // An untrained network scores ~2 of 20; the shipped weights must be far beyond chance.
    assert!(
        right >= 16,
        "only {right} of 20 digits were classified as the digit asked for: {predictions:?}"
    );
}

/// The shipped weights with `kind`, two images of each digit (guided): how many of 20 the
/// classifier reads as asked, and what it read.
fn digits_drawn_as_asked(kind: SamplerKind) -> (usize, Vec<usize>) {
    let device = common::device();
    let (manifest, model) = shipped(&device);
    let classifier = fixture_classifier(&device);
    let sampler = Sampler::new(NoiseSchedule::new(manifest.schedule), kind).unwrap();
    let mut images = Vec::new();
    for digit in 0..10 {
        images.extend(
            generate_images(
                &model,
                None,
                &sampler,
                &GenerationRequest::new(
                    2,
                    100 + digit as u64,
                    Digits::Only(digit),
                    DEFAULT_GUIDANCE,
                ),
                2,
                &device,
                || {},
            )
            .unwrap(),
        );
    }
    let predictions = classifier.score(&images, &device).predictions;
    let right = (0..20).filter(|&i| predictions[i] == i / 2).count();
    (right, predictions)
}

#[test]
fn every_sampler_draws_the_digits_asked_for_with_the_shipped_weights() {
    for kind in [
        SamplerKind::DpmSolver { steps: 10 },
        SamplerKind::PredictorCorrector {
            steps: 50,
            corrector_steps: 1,
            snr: gendi::sampler::defaults::SNR,
        },
        SamplerKind::Langevin {
            levels: 50,
            steps_per_level: 2,
            epsilon: gendi::sampler::defaults::EPSILON,
        },
    ] {
        let (right, predictions) = digits_drawn_as_asked(kind);
        eprintln!("{kind}: {right} of 20 as asked: {predictions:?}");
        // Chance is 2 of 20.
        assert!(
            right >= 16,
            "{kind}: only {right} of 20 as asked: {predictions:?}"
        );
    }
}

#[test]
fn sdedit_keeps_a_real_digit_from_t_300_and_redraws_it_as_asked_from_t_600() {
    use gendi::data::{Mnist, Split, normalize_to_neg_one_to_one};
    use gendi::pipeline::{Generation, noised};
    let device = common::device();
    let (manifest, model) = shipped(&device);
    let classifier = fixture_classifier(&device);
    let test = Mnist::load(&common::mnist_dir(), Split::Test).unwrap();
    let schedule = NoiseSchedule::new(manifest.schedule);
    let sampler = Sampler::new(schedule.clone(), SamplerKind::DpmSolver { steps: 20 }).unwrap();
    let run = |mut generation: Generation| {
        while generation.step(&model).unwrap().is_some() {}
        common::values(generation.sample().clone())
    };
    let (mut kept, mut redrawn) = (0, 0);
    for digit in 0..10 {
        // The first test image of each digit.
        let index = (0..test.len())
            .find(|&i| test.label(i) as usize == digit)
            .unwrap();
        let pixels: Vec<f32> = test
            .image(index)
            .iter()
            .map(|&p| normalize_to_neg_one_to_one(p))
            .collect();
        let image = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(pixels.clone(), [1, 1, 28, 28]),
            &device,
        );
        let request = |digit| GenerationRequest::new(1, 5, Digits::Only(digit), DEFAULT_GUIDANCE);
        let distance = |a: &[f32]| {
            a.iter()
                .zip(&pixels)
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / 784.0
        };

        // From t = 300 (√ᾱ = 0.63) as the same digit: the strokes stay.
        let from_300 = Generation::from_image(sampler.clone(), &request(digit), image.clone(), 300);
        // Trailing spacing of 20: …, 349, 299, …: the run starts from x_299 of the image.
        assert_eq!(from_300.next_timestep(), Some(299));
        assert_eq!(from_300.total_steps(), 6);
        assert_eq!(
            common::values(from_300.sample().clone()),
            common::values(noised(&schedule, image.clone(), 5, 299))
        );
        let near = distance(&run(from_300));
        let fresh = distance(&run(Generation::new(
            sampler.clone(),
            &request(digit),
            &device,
        )));
        eprintln!(
            "digit {digit}: from t = 300 moved by {near:.3}; a fresh sample is {fresh:.3} away"
        );
        kept += usize::from(near < 0.5 * fresh);

        // From t = 600 (√ᾱ = 0.16) as the next digit: redrawn as asked.
        let asked = (digit + 1) % 10;
        let result = run(Generation::from_image(
            sampler.clone(),
            &request(asked),
            image,
            600,
        ));
        let read = classifier.score(&result, &device).predictions[0];
        eprintln!("digit {digit} redrawn from t = 600 as {asked}: read as {read}");
        redrawn += usize::from(read == asked);
    }
    assert!(
        kept >= 9,
        "only {kept} of 10 digits kept their strokes from t = 300"
    );
    assert!(
        redrawn >= 8,
        "only {redrawn} of 10 digits were redrawn as asked from t = 600"
    );
}

#[test]
fn inpainting_keeps_the_unmasked_pixels_exactly_and_redraws_the_rest() {
    use gendi::data::{Mnist, Split, normalize_to_neg_one_to_one};
    use gendi::pipeline::Generation;
    let device = common::device();
    let (manifest, model) = shipped(&device);
    let test = Mnist::load(&common::mnist_dir(), Split::Test).unwrap();
    // A 7, whose right half is redrawn as a 1 might be; every sampler kind keeps the left half.
    let index = (0..test.len()).find(|&i| test.label(i) == 7).unwrap();
    let pixels: Vec<f32> = test
        .image(index)
        .iter()
        .map(|&p| normalize_to_neg_one_to_one(p))
        .collect();
    let keep: Vec<f32> = (0..784)
        .map(|i| if i % 28 < 14 { 1.0 } else { 0.0 })
        .collect();
    let tensor = |values: &[f32]| {
        burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(values.to_vec(), [1, 1, 28, 28]),
            &device,
        )
    };
    let request = GenerationRequest::new(1, 3, Digits::Only(1), DEFAULT_GUIDANCE);
    let schedule = NoiseSchedule::new(manifest.schedule);
    for kind in [
        SamplerKind::DpmSolver { steps: 20 },
        SamplerKind::Ddim {
            steps: 20,
            eta: 1.0,
        },
        SamplerKind::PredictorCorrector {
            steps: 10,
            corrector_steps: 1,
            snr: gendi::sampler::defaults::SNR,
        },
    ] {
        let sampler = Sampler::new(schedule.clone(), kind).unwrap();
        let mut generation =
            Generation::inpaint(sampler, &request, tensor(&pixels), tensor(&keep), 999);
        while generation.step(&model).unwrap().is_some() {}
        let result = common::values(generation.sample().clone());
        let (mut kept, mut changed) = (0, 0);
        for i in 0..784 {
            if keep[i] == 1.0 {
                assert_eq!(
                    result[i].to_bits(),
                    pixels[i].to_bits(),
                    "{kind}: kept pixel {i} changed"
                );
                kept += 1;
            } else if (result[i] - pixels[i]).abs() > 0.1 {
                changed += 1;
            }
        }
        assert_eq!(kept, 392);
        assert!(
            changed > 10,
            "{kind}: the masked half was not redrawn ({changed} pixels changed)"
        );
    }
}

#[test]
fn the_pages_real_digits_are_the_first_200_mnist_test_digits() {
    use gendi::data::{Mnist, Split, parse_idx_images, parse_idx_labels};
    let dir = root().join("www/digits");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (pixels, count) =
        parse_idx_images(&read("mnist-test-images-idx3-ubyte"), "images").unwrap();
    let labels = parse_idx_labels(&read("mnist-test-labels-idx1-ubyte"), "labels").unwrap();
    assert_eq!((count, labels.len()), (200, 200));
    let test = Mnist::load(&common::mnist_dir(), Split::Test).unwrap();
    for i in 0..count {
        assert_eq!(&pixels[i * 784..(i + 1) * 784], test.image(i), "digit {i}");
        assert_eq!(labels[i], test.label(i), "label {i}");
    }
}
