//! The weights in www/weights are the ones that ship: they load through the same checks as the
//! page's, and a fixed seed gives digits that the evaluation classifier recognises as asked.
//!
//! `tests/fixtures/classifier.bpk` is `gendi eval`'s classifier (trained with seed 0 for 5
//! epochs, 99.17% on the MNIST test set), kept so this test does not spend minutes training it.

mod common;

use std::path::Path;

use gendi::native::classifier;
use gendi::native::export::load_exported;
use gendi::native::generate_images;
use gendi::pipeline::{DEFAULT_GUIDANCE, Digits};
use gendi::sampler::{Sampler, SamplerKind};
use gendi::schedule::NoiseSchedule;
use gendi::weights::{MANIFEST_FILE, sha256_hex};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
    let device = common::device();
    let (manifest, model) = load_exported(&root().join("www/weights"), &device).unwrap();
    let classifier =
        classifier::load(&root().join("tests/fixtures/classifier.bpk"), &device).unwrap();
    let sampler = Sampler::new(
        NoiseSchedule::new(manifest.schedule),
        SamplerKind::Ddim {
            steps: 50,
            eta: 0.0,
        },
    )
    .unwrap();
    let mut asked = Vec::new();
    let mut images = Vec::new();
    for digit in 0..10 {
        images.extend(
            generate_images(
                &model,
                &sampler,
                2,
                2,
                100 + digit as u64,
                Digits::Only(digit),
                DEFAULT_GUIDANCE,
                &device,
                || {},
            )
            .unwrap(),
        );
        asked.extend([digit, digit]);
    }
    let scores = classifier.score(&images, &device);
    let right = scores
        .predictions
        .iter()
        .zip(&asked)
        .filter(|(p, a)| p == a)
        .count();
    eprintln!(
        "weights of step {}: {right} of 20 digits classified as asked: {:?}",
        manifest.training_steps, scores.predictions
    );
    // An untrained network scores ~2 of 20; the shipped weights must be far beyond chance.
    assert!(
        right >= 16,
        "only {right} of 20 digits were classified as the digit asked for: {:?}",
        scores.predictions
    );
}
