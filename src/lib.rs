//! GENDI: a denoising diffusion model (DDPM) for MNIST digits. The same model, schedule and
//! samplers run natively (training, evaluation, export) and in the browser (the web page).

pub mod animation;
pub mod data;
pub mod kernels;
pub mod model;
pub mod pipeline;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod weights;

#[cfg(not(target_family = "wasm"))]
pub mod native;

#[cfg(target_family = "wasm")]
pub mod web;
