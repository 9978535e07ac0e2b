//! CPU kernels for the ops the U-Net spends its time in, forward and backward, used through one
//! backend extension so that the model code calls the same function on every backend:
//!
//! - on burn-flex (native CPU, and the page's CPU fallback in wasm) the kernels of this module
//!   run, on slices, with the images spread over rayon's threads natively;
//! - on the GPU backends (`Cube`: wgpu/WebGPU) burn's own ops run, through the trait's default
//!   bodies;
//! - under autodiff (training) [`autodiff`] records one backward step that calls the backend's
//!   fused backward.
//!
//! One file per op family: [`conv`], [`norm`] (GroupNorm with SiLU fused), `upsample` (nearest
//! ×2 then a 3×3 convolution, as four 2×2 convolutions whose outputs are interleaved). The GEMM
//! and the threading loops live apart from them ([`matmul`], [`parallel`]).

#[cfg(not(target_family = "wasm"))]
mod autodiff;
mod composite;
pub mod conv;
mod flex;
mod matmul;

pub use matmul::{gemm_flops, measure_peak_gflops};
pub use parallel::threads;
pub mod norm;
mod parallel;
pub mod upsample;
pub mod winograd;

pub use upsample::upsample_conv3x3;
pub use winograd::KeptTiles;
mod simd;

use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// The ops GENDI runs through its own kernels. The default bodies are burn's ops, so a backend
/// without kernels of its own (the GPU) only needs an empty `impl`; under burn's fusion
/// (`#[fusion(default)]`) those bodies are recorded lazily and fused like any other burn ops.
#[backend_extension(
    Flex,
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "fusion"),
    Autodiff: cfg(not(target_family = "wasm"))
)]
pub trait KernelBackend: Backend {
    /// A 2-D convolution with bias; see [`conv2d`].
    #[fusion(default)]
    fn conv2d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }

    /// [`conv2d_with_bias`](Self::conv2d_with_bias) for training: also returns what the
    /// backward can reuse instead of computing it again from `x` (Winograd's transformed input
    /// tiles on the CPU; nothing on burn's own ops).
    #[fusion(default)]
    fn conv2d_with_bias_keeping(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, Option<KeptTiles>) {
        (Self::conv2d_with_bias(x, weight, bias, options), None)
    }

    /// The gradients of [`conv2d_with_bias`](Self::conv2d_with_bias) with respect to the input,
    /// the weight and the bias, given the output's gradient and what
    /// [`conv2d_with_bias_keeping`](Self::conv2d_with_bias_keeping) kept, if anything.
    #[fusion(default)]
    fn conv2d_with_bias_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        kept: Option<KeptTiles>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = kept;
        composite::conv2d_backward::<Self>(x, weight, output_grad, options)
    }

    /// Four phase images `[B, C, H, W]` interleaved into one `[B, C, 2H, 2W]`: `phase_rc` holds
    /// the pixels (2i + r, 2j + c). The last step of [`upsample_conv3x3`].
    #[fusion(default)]
    fn interleave_phases(
        phase_00: FloatTensor<Self>,
        phase_01: FloatTensor<Self>,
        phase_10: FloatTensor<Self>,
        phase_11: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composite::interleave_phases::<Self>([phase_00, phase_01, phase_10, phase_11])
    }

    /// The inverse of [`interleave_phases`](Self::interleave_phases), and so its gradient:
    /// `[B, C, 2H, 2W]` into the four phases `[B, C, H, W]`, in the order 00, 01, 10, 11.
    #[fusion(default)]
    fn deinterleave_phases(
        image: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let [a, b, c, d] = composite::deinterleave_phases::<Self>(image);
        (a, b, c, d)
    }

    /// GroupNorm with affine γ and β, then SiLU when `options.silu`; see [`group_norm_silu`].
    #[fusion(default)]
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        options: GroupNormOptions,
    ) -> FloatTensor<Self> {
        composite::group_norm::<Self>(x, gamma, beta, &options)
    }

    /// The gradients of [`group_norm`](Self::group_norm) with respect to x, γ and β.
    #[fusion(default)]
    fn group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: GroupNormOptions,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composite::group_norm_backward::<Self>(x, gamma, beta, output_grad, &options)
    }
}

/// A GroupNorm's settings, and whether SiLU follows it.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupNormOptions {
    pub groups: usize,
    pub epsilon: f64,
    pub silu: bool,
}

#[cfg(feature = "wgpu")]
impl KernelBackend for burn::backend::Cube {}

/// The kernel switches of one thread ([`use_gendi_kernels`], [`use_winograd`]), kept together so
/// that a step handed to the pool ([`on_cpu_pool`]) takes them along in one copy.
#[derive(Clone, Copy)]
struct Settings {
    gendi: bool,
    winograd: bool,
}

std::thread_local! {
    static SETTINGS: std::cell::Cell<Settings> =
        const { std::cell::Cell::new(Settings { gendi: true, winograd: true }) };
}

/// Switches 3×3 stride-1 convolutions called from this thread, forward and backward, between
/// Winograd's F(4×4, 3×3) or F(2×2, 3×3) (the default) and im2col + GEMM, as every other
/// convolution runs: for benchmarks and tests that compare the two (`gendi bench --kernels
/// im2col`).
pub fn use_winograd(enabled: bool) {
    update_settings(|settings| settings.winograd = enabled);
}

/// Whether 3×3 stride-1 convolutions run by Winograd on this thread (see [`use_winograd`]).
pub fn winograd_enabled() -> bool {
    SETTINGS.with(|cell| cell.get().winograd)
}

/// Switches burn-flex, for ops called from this thread, between this module's kernels (the
/// default) and burn's own ops: for benchmarks and profiles that compare the two in one binary
/// (`gendi bench --kernels burn`), and tests of the composite ops the GPU runs.
pub fn use_gendi_kernels(enabled: bool) {
    update_settings(|settings| settings.gendi = enabled);
}

fn update_settings(change: impl FnOnce(&mut Settings)) {
    SETTINGS.with(|cell| {
        let mut settings = cell.get();
        change(&mut settings);
        cell.set(settings);
    });
}

/// Whether burn-flex runs this module's kernels on this thread (see [`use_gendi_kernels`]).
pub fn gendi_kernels_enabled() -> bool {
    SETTINGS.with(|cell| cell.get().gendi)
}

/// `work(0)` … `work(count − 1)` at once on the kernels' thread pool (one after another without
/// threads), each with this thread's kernel settings; results in task order. For a step that
/// splits into independent parts, such as a training batch's shards: each part's kernel loops
/// are shared out by work stealing, so a thread that finishes its share of one loop goes on with
/// the other part instead of waiting for the slowest thread at every loop's end.
pub fn concurrently<R: Send>(count: usize, work: impl Fn(usize) -> R + Send + Sync) -> Vec<R> {
    let settings = SETTINGS.with(|cell| cell.get());
    parallel::tasks(count, |i| with_settings(settings, || work(i)))
}

/// Runs `work` (a training or sampling step) on the kernels' thread pool when `device` is the
/// CPU, and waits for it; on other devices runs it here. From inside the pool each kernel's loop
/// starts on the calling thread instead of waking it from outside: natively, steps alternated
/// in one process took 1–8% less time (training at batch 64, sampling at batch 1 and 16). The
/// settings of [`use_gendi_kernels`] and [`use_winograd`] go along. `device` is the one a step is
/// given (a trainer's, a generation's), never an autodiff device: those run here.
pub fn on_cpu_pool<R: Send>(device: &Device, work: impl FnOnce() -> R + Send) -> R {
    if *device != Device::flex() {
        return work();
    }
    let settings = SETTINGS.with(|cell| cell.get());
    parallel::in_pool(move || with_settings(settings, work))
}

/// Runs `work` with this thread's kernel settings set to `settings`, then puts back the ones it
/// had, also when `work` panics: while a pool thread waits inside one step it may run another
/// caller's (rayon steals work), whose settings must not outlast it.
fn with_settings<R>(settings: Settings, work: impl FnOnce() -> R) -> R {
    struct Restore(Settings);
    impl Drop for Restore {
        fn drop(&mut self) {
            SETTINGS.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(SETTINGS.with(|cell| cell.replace(settings)));
    work()
}

/// Runs a convolution layer (with bias) through [`KernelBackend`]; the drop-in for
/// `Conv2d::forward`.
///
/// # Shapes
///   - x: [batch, channels_in, height, width]
///   - output: [batch, channels_out, out_h, out_w]
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let bias = conv
        .bias
        .as_ref()
        .expect("GENDI's convolutions all have a bias")
        .val();
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        // Padding that depends on the input size: burn's layer works it out.
        PaddingConfig2d::Same => return conv.forward(x),
    };
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    );
    conv2d_tensors(x, conv.weight.val(), bias, options)
}

/// A convolution with bias from its tensors, through [`KernelBackend`].
///
/// # Shapes
///   - x: [batch, channels_in, height, width]
///   - weight: [channels_out, channels_in, kernel_h, kernel_w]
///   - bias: [channels_out]
pub fn conv2d_tensors(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let output = <Dispatch as KernelBackend>::conv2d_with_bias(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        options,
    );
    Tensor::from_dispatch(output)
}

/// `silu(norm(x))`: a GroupNorm layer (with affine parameters) and SiLU, fused on the CPU.
///
/// # Shapes
///   - x, output: [batch, channels, height, width]
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    run_group_norm(norm, x, true)
}

/// `norm(x)`: a GroupNorm layer (with affine parameters) through the kernels.
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    run_group_norm(norm, x, false)
}

fn run_group_norm(norm: &GroupNorm, x: Tensor<4>, silu: bool) -> Tensor<4> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        let y = norm.forward(x);
        return if silu {
            burn::tensor::activation::silu(y)
        } else {
            y
        };
    };
    let options = GroupNormOptions {
        groups: norm.num_groups,
        epsilon: norm.epsilon,
        silu,
    };
    let output = <Dispatch as KernelBackend>::group_norm(
        x.into_dispatch(),
        gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        options,
    );
    Tensor::from_dispatch(output)
}
