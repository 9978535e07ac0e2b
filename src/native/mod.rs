//! What only the native side does: training, checkpoints, PNG output, export, benchmarks and
//! evaluation. The CLI in `main.rs` is a thin layer over these.

pub mod bench;
pub mod checkpoint;
pub mod export;
pub mod images;
pub mod train;

use burn::tensor::Device;

/// The compute device a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// burn-flex on the CPU (all cores).
    Cpu,
    /// burn-wgpu: Vulkan, Metal or DX12 on the first GPU wgpu finds.
    Wgpu,
}

impl Backend {
    pub fn device(self) -> Result<Device, String> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => Device::wgpu_options()
                .init()
                .map_err(|e| format!("no usable GPU through wgpu ({e}); use --device cpu")),
        }
    }
}
