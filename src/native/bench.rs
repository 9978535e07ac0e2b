//! `gendi bench`: training throughput and sampling latency of the default model.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;

use super::train::{TrainConfig, Trainer};
use crate::data::{IMAGE_PIXELS, Mnist};
use crate::model::UNetConfig;
use crate::pipeline::{Digits, Generation, GenerationRequest};
use crate::rng::NoiseRng;
use crate::sampler::{DdpmVariance, Sampler, SamplerKind};
use crate::schedule::NoiseSchedule;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub parameters: usize,
    /// Threads the CPU kernels run on (rayon's pool: every core, or `RAYON_NUM_THREADS`).
    pub threads: usize,
    /// "gendi" (src/kernels/), "gendi-im2col" (without Winograd) or "burn" (burn-flex's own ops).
    pub kernels: &'static str,
    pub train_batch: usize,
    pub train_steps_timed: usize,
    pub train_images_per_s: f64,
    /// GEMM work of a training step (the convolutions' products) per second of the step.
    pub train_gemm_gflops: f64,
    /// The machine's f32 GEMM rate (512³ products on all threads), and the fraction of it a
    /// training step reaches.
    pub peak_gemm_gflops: f64,
    pub train_fraction_of_peak: f64,
    pub sample_steps_timed: usize,
    /// One U-Net forward + one DDPM step + reading x_t back, batch 1 (no guidance).
    pub sample_ms_per_step_b1: f64,
    pub sample_ms_per_step_b16: f64,
}

/// Random images: the speed of a step does not depend on what the pixels show.
fn synthetic_mnist(count: usize) -> Mnist {
    let mut rng = NoiseRng::new(7);
    let pixels = (0..count * IMAGE_PIXELS)
        .map(|_| rng.below(256) as u8)
        .collect();
    let labels = (0..count).map(|i| (i % 10) as u8).collect();
    Mnist::from_parts(pixels, labels).expect("consistent sizes")
}

pub fn run(
    device: &Device,
    device_name: &str,
    train_steps: usize,
    batch: usize,
    sample_steps: usize,
) -> BenchReport {
    let data = synthetic_mnist(batch * 4);
    let config = TrainConfig {
        batch_size: batch,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, device).expect("the default config is valid");
    let indices: Vec<usize> = (0..batch).collect();
    // Warm-up: first-call allocations, kernel compilation on GPUs.
    for _ in 0..2 {
        trainer.train_step(&data, &indices);
    }
    let flops_before = crate::kernels::gemm_flops();
    let start = Instant::now();
    for _ in 0..train_steps {
        trainer.train_step(&data, &indices); // reads the loss back, so each step is complete
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let train_images_per_s = (train_steps * batch) as f64 / train_seconds;
    let train_gemm_gflops =
        (crate::kernels::gemm_flops() - flops_before) as f64 / train_seconds / 1e9;
    let peak_gemm_gflops = crate::kernels::measure_peak_gflops(512, 5);

    let model = UNetConfig::default().init(device);
    let schedule = NoiseSchedule::new(Default::default());
    let sampler = Sampler::new(
        schedule,
        SamplerKind::Ddpm {
            variance: DdpmVariance::PosteriorBeta,
        },
    )
    .expect("DDPM over T steps is valid");
    let per_step = |count: usize| {
        let request = GenerationRequest::new(count, 1, Digits::Unconditional, 0.0);
        let mut generation = Generation::new(sampler.clone(), &request, device);
        let mut run = |steps: usize| {
            for _ in 0..steps {
                let out = generation
                    .step(&model)
                    .expect("valid step")
                    .expect("steps remain");
                let _ = out.prev_sample.into_data();
            }
        };
        run(2);
        let start = Instant::now();
        run(sample_steps);
        start.elapsed().as_secs_f64() * 1000.0 / sample_steps as f64
    };
    let b1 = per_step(1);
    let b16 = per_step(16);

    BenchReport {
        device: device_name.to_string(),
        parameters: model.num_params(),
        threads: crate::kernels::threads(),
        kernels: if !crate::kernels::gendi_kernels_enabled() {
            "burn"
        } else if crate::kernels::winograd_enabled() {
            "gendi"
        } else {
            "gendi-im2col"
        },
        train_batch: batch,
        train_steps_timed: train_steps,
        train_images_per_s,
        train_gemm_gflops,
        peak_gemm_gflops,
        train_fraction_of_peak: train_gemm_gflops / peak_gemm_gflops,
        sample_steps_timed: sample_steps,
        sample_ms_per_step_b1: b1,
        sample_ms_per_step_b16: b16,
    }
}
