//! What only the native side does: training, checkpoints, PNG output, export, benchmarks and
//! evaluation. The CLI in `main.rs` is a thin layer over these.

pub mod bench;
pub mod chart;
pub mod checkpoint;
pub mod classifier;
pub mod eval;
pub mod export;
pub mod images;
pub mod params;
pub mod train;

use burn::tensor::Device;

/// The compute device a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// burn-flex on the CPU (all cores).
    Cpu,
    /// burn-wgpu: Vulkan, Metal or DX12 on the first GPU wgpu finds.
    #[cfg(feature = "wgpu")]
    Wgpu,
}

impl Backend {
    pub fn device(self) -> Result<Device, String> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu_options()
                .init()
                .map_err(|e| format!("no usable GPU through wgpu ({e}); use --device cpu")),
        }
    }
}

/// Generates `request.count` images in batches of at most `batch`, each batch seeded
/// `request.seed + index`, autoguided if `autoguide` is given. Returns the final x_0 values in
/// [−1, 1] (784 per image), and calls `on_step` after every step.
pub fn generate_images(
    model: &crate::model::UNet,
    autoguide: Option<&crate::pipeline::Autoguide>,
    sampler: &crate::sampler::Sampler,
    request: &crate::pipeline::GenerationRequest,
    batch: usize,
    device: &Device,
    mut on_step: impl FnMut(),
) -> Result<Vec<f32>, String> {
    use crate::pipeline::{Generation, GenerationRequest};
    let count = request.count;
    let mut values = Vec::with_capacity(count * crate::data::IMAGE_PIXELS);
    for (index, start) in (0..count).step_by(batch.max(1)).enumerate() {
        let n = (count - start).min(batch.max(1));
        let request = GenerationRequest {
            count: n,
            seed: request.seed + index as u64,
            ..request.clone()
        };
        request.validate()?;
        let mut generation = Generation::new(sampler.clone(), &request, device);
        while generation
            .step_with(model, autoguide)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            on_step();
        }
        let data: Vec<f32> = generation
            .sample()
            .clone()
            .into_data()
            .try_to_vec()
            .map_err(|e| format!("{e:?}"))?;
        values.extend(data);
    }
    Ok(values)
}
