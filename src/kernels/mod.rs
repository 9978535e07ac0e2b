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
//! One file per op family: [`conv`]. The GEMM and the threading loops live apart from them
//! ([`matmul`], [`parallel`]).

#[cfg(not(target_family = "wasm"))]
mod autodiff;
pub mod conv;
mod flex;
mod matmul;
pub mod norm;
mod parallel;
mod simd;

use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

/// The ops GENDI runs through its own kernels. The default bodies are burn's ops, so a backend
/// without kernels of its own (the GPU) only needs an empty `impl`.
#[backend_extension(Flex, Cube, Autodiff: cfg(not(target_family = "wasm")))]
pub trait KernelBackend: Backend {
    /// A 2-D convolution with bias; see [`conv2d`].
    fn conv2d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }

    /// The gradients of [`conv2d_with_bias`](Self::conv2d_with_bias) with respect to the input,
    /// the weight and the bias, given the output's gradient.
    fn conv2d_with_bias_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let bias_grad = bias_gradient::<Self>(output_grad.clone());
        let x_grad = Self::conv2d_x_backward(
            x.clone(),
            weight.clone(),
            output_grad.clone(),
            options.clone(),
        );
        let weight_grad = Self::conv2d_weight_backward(x, weight, output_grad, options);
        (x_grad, weight_grad, bias_grad)
    }
}

impl KernelBackend for burn::backend::Cube {}

/// Σ over batch and pixels of a convolution's output gradient: `[B, C, H, W]` → `[C]`.
fn bias_gradient<B: Backend>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    let channels = output_grad.shape()[1];
    let summed = [0, 2, 3]
        .into_iter()
        .fold(output_grad, |grad, dim| B::float_sum_dim(grad, dim));
    B::float_reshape(summed, [channels].into())
}

static USE_GENDI_KERNELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Switches burn-flex between this module's kernels (the default) and burn's own ops, for
/// benchmarks and profiles that compare the two in one binary (`gendi bench --kernels burn`).
pub fn use_gendi_kernels(enabled: bool) {
    USE_GENDI_KERNELS.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// Whether burn-flex runs this module's kernels (see [`use_gendi_kernels`]).
pub fn gendi_kernels_enabled() -> bool {
    USE_GENDI_KERNELS.load(std::sync::atomic::Ordering::Relaxed)
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
    let output = <Dispatch as KernelBackend>::conv2d_with_bias(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.into_dispatch(),
        options,
    );
    Tensor::from_dispatch(output)
}
