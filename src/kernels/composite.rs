//! The kernels' ops written with burn's primitive tensor ops: what a backend without kernels of
//! its own (the GPU) runs, and the reference the fused CPU kernels are tested against.

use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Shape, TensorMetadata};
use burn::tensor::Slice;

use super::GroupNormOptions;

/// The gradients of a convolution with bias with respect to its input, weight and bias, through
/// burn's own backward ops.
pub fn conv2d_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    // Σ over batch and pixels: [B, C, H, W] → [C].
    let channels = output_grad.shape()[1];
    let summed = [0, 2, 3]
        .into_iter()
        .fold(output_grad.clone(), |grad, dim| B::float_sum_dim(grad, dim));
    let bias_grad = B::float_reshape(summed, Shape::from([channels]));
    let x_grad = B::conv2d_x_backward(
        x.clone(),
        weight.clone(),
        output_grad.clone(),
        options.clone(),
    );
    let weight_grad = B::conv2d_weight_backward(x, weight, output_grad, options);
    (x_grad, weight_grad, bias_grad)
}

/// x̂ = (x − μ_g)/σ_g over each group, and 1/σ_g.
///
/// # Shapes
///   - x: [batch, channels, ...]
///   - x̂: [batch, groups, channels/groups · pixels]; 1/σ: [batch, groups, 1]
fn normalize<B: Backend>(
    x: FloatTensor<B>,
    options: &GroupNormOptions,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let batch = shape[0];
    let grouped = [
        batch,
        options.groups,
        shape.num_elements() / (batch * options.groups),
    ];
    let x = B::float_reshape(x, Shape::from(grouped));
    let mean = B::float_mean_dim(x.clone(), 2);
    let centered = B::float_sub(x, mean);
    let variance = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 2);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(
        variance,
        options.epsilon.into(),
    )));
    (B::float_mul(centered, rstd.clone()), rstd)
}

/// `[C]` → `[1, C, 1, …]`, to broadcast over a tensor of `rank` dimensions.
fn per_channel<B: Backend>(values: FloatTensor<B>, rank: usize) -> FloatTensor<B> {
    let mut shape = vec![1; rank];
    shape[1] = values.shape()[0];
    B::float_reshape(values, Shape::from(shape))
}

/// z = γ·x̂ + β, and x̂ in x's shape.
fn affine<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    options: &GroupNormOptions,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let rank = shape.num_dims();
    let (xhat, rstd) = normalize::<B>(x, options);
    let xhat = B::float_reshape(xhat, shape);
    let z = B::float_add(
        B::float_mul(xhat.clone(), per_channel::<B>(gamma, rank)),
        per_channel::<B>(beta, rank),
    );
    (z, xhat, rstd)
}

/// GroupNorm, then SiLU if asked.
pub fn group_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    options: &GroupNormOptions,
) -> FloatTensor<B> {
    let (z, _, _) = affine::<B>(x, gamma, beta, options);
    if options.silu {
        B::float_mul(z.clone(), B::sigmoid(z))
    } else {
        z
    }
}

/// The gradients of [`group_norm`] with respect to x, γ and β: with dz the gradient before the
/// SiLU, dγ = Σ dz·x̂, dβ = Σ dz, dx = (dx̂ − mean_g(dx̂) − x̂·mean_g(dx̂·x̂))/σ_g, dx̂ = γ·dz.
pub fn group_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: &GroupNormOptions,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let rank = shape.num_dims();
    let (z, xhat, rstd) = affine::<B>(x, gamma.clone(), beta, options);
    let dz = if options.silu {
        // d silu(z)/dz = s·(1 + z·(1 − s)), s = sigmoid(z)
        let s = B::sigmoid(z.clone());
        let one_minus_s = B::float_add_scalar(B::float_neg(s.clone()), 1.0.into());
        let slope = B::float_add_scalar(B::float_mul(z, one_minus_s), 1.0.into());
        B::float_mul(output_grad, B::float_mul(s, slope))
    } else {
        output_grad
    };
    let sum_but_channels = |t: FloatTensor<B>| {
        let summed = (0..rank)
            .filter(|&d| d != 1)
            .fold(t, |t, d| B::float_sum_dim(t, d));
        B::float_reshape(summed, Shape::from([shape[1]]))
    };
    let gamma_grad = sum_but_channels(B::float_mul(dz.clone(), xhat.clone()));
    let beta_grad = sum_but_channels(dz.clone());

    let batch = shape[0];
    let grouped = Shape::from([
        batch,
        options.groups,
        shape.num_elements() / (batch * options.groups),
    ]);
    let dxhat = B::float_reshape(
        B::float_mul(dz, per_channel::<B>(gamma, rank)),
        grouped.clone(),
    );
    let xhat = B::float_reshape(xhat, grouped);
    let mean_dxhat = B::float_mean_dim(dxhat.clone(), 2);
    let mean_dxhat_xhat = B::float_mean_dim(B::float_mul(dxhat.clone(), xhat.clone()), 2);
    let dx = B::float_sub(
        B::float_sub(dxhat, mean_dxhat),
        B::float_mul(xhat, mean_dxhat_xhat),
    );
    let dx = B::float_reshape(B::float_mul(dx, rstd), shape);
    (dx, gamma_grad, beta_grad)
}

/// `[B, C, H, W]` × 4 → `[B, C, 2H, 2W]`, `phases[2r + c]` at pixels (2i + r, 2j + c): each phase
/// as `[B, C, H, 1, W, 1]`, joined along the column parity, then the row parity.
pub fn interleave_phases<B: Backend>(phases: [FloatTensor<B>; 4]) -> FloatTensor<B> {
    let shape = phases[0].shape();
    let [batch, channels, height, width] = [shape[0], shape[1], shape[2], shape[3]];
    let [p00, p01, p10, p11] = phases
        .map(|phase| B::float_reshape(phase, Shape::from([batch, channels, height, 1, width, 1])));
    let rows = [[p00, p01], [p10, p11]].map(|columns| B::float_cat(columns.to_vec(), 5));
    B::float_reshape(
        B::float_cat(rows.to_vec(), 3),
        Shape::from([batch, channels, 2 * height, 2 * width]),
    )
}

/// The inverse of [`interleave_phases`]: `[B, C, 2H, 2W]` → the phases 00, 01, 10, 11.
pub fn deinterleave_phases<B: Backend>(image: FloatTensor<B>) -> [FloatTensor<B>; 4] {
    let shape = image.shape();
    let [batch, channels, height, width] = [shape[0], shape[1], shape[2] / 2, shape[3] / 2];
    let split = B::float_reshape(image, Shape::from([batch, channels, height, 2, width, 2]));
    std::array::from_fn(|phase| {
        let mut slices = [Slice::full(); 6];
        slices[3] = Slice::index((phase / 2) as isize);
        slices[5] = Slice::index((phase % 2) as isize);
        B::float_reshape(
            B::float_slice(split.clone(), &slices),
            Shape::from([batch, channels, height, width]),
        )
    })
}
