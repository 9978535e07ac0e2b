//! Nearest-neighbour ×2 upsampling followed by a 3×3 convolution (padding 1), computed without
//! the upsampled image: each of the four output phases (row parity, column parity) is a 2×2
//! convolution of the input with the 3×3 kernel's taps summed where they land on the same input
//! pixel. The same function with 32·C_in·C_out·H·W multiply-adds instead of 72, and no 4×
//! larger intermediate; the gradients follow through burn's ops (the tap sums, the interleave).

use burn::backend::ops::ConvOptions;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use super::{conv2d, conv2d_tensors};

/// From this batch size on the four phases pay: below it, folding the taps (a few dozen small
/// tensor ops) and four small GEMMs cost more than the FLOPs they save (batch 1 sampled 20–40%
/// slower through the phases on the 2-core EPYC).
const PHASES_FROM_BATCH: usize = 4;

/// `conv(upsample_nearest_2x(x))` for a 3×3, stride-1, padding-1 convolution layer (any other
/// layer, and small batches, run on the upsampled image as is).
///
/// # Shapes
///   - x: [batch, channels_in, height, width]
///   - output: [batch, channels_out, 2·height, 2·width]
pub fn upsample_conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [batch, _, height, width] = x.dims();
    let plain = conv.kernel_size != [3, 3]
        || conv.stride != [1, 1]
        || conv.dilation != [1, 1]
        || conv.groups != 1
        || !matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1))
        || conv.bias.is_none()
        || batch < PHASES_FROM_BATCH;
    if plain {
        return conv2d(conv, upsample_nearest(x));
    }
    let weight = conv.weight.val();
    let bias = conv.bias.as_ref().expect("checked above").val();
    let channels_out = weight.dims()[0];
    let rows: Vec<Tensor<5>> = [0, 1]
        .map(|row_parity| {
            let weight = fold_taps(weight.clone(), 2, row_parity);
            let columns = [0, 1].map(|column_parity| {
                let weight = fold_taps(weight.clone(), 3, column_parity);
                let options = ConvOptions::new_with_padding(
                    [1, 1],
                    [phase_padding(row_parity), phase_padding(column_parity)],
                    [1, 1],
                    1,
                );
                conv2d_tensors(x.clone(), weight, bias.clone(), options) // [B, C, H, W]
            });
            Tensor::stack(columns.to_vec(), 4) // [B, C, H, W, column parity]
        })
        .to_vec();
    Tensor::<5>::stack::<6>(rows, 3) // [B, C, H, row parity, W, column parity]
        .reshape([batch, channels_out, 2 * height, 2 * width])
}

/// Output row 2i (parity 0) reads upsampled rows 2i−1, 2i, 2i+1, which are input rows i−1, i, i:
/// taps 1 and 2 fall on the same input row. Row 2i+1 reads input rows i, i, i+1: taps 0 and 1 do.
/// Returns the kernel with those taps summed along `dim`, 3 → 2 taps.
fn fold_taps(weight: Tensor<4>, dim: usize, parity: usize) -> Tensor<4> {
    let tap = |i| weight.clone().narrow(dim, i, 1);
    let (first, second) = if parity == 0 {
        (tap(0), tap(1) + tap(2))
    } else {
        (tap(0) + tap(1), tap(2))
    };
    Tensor::cat(vec![first, second], dim)
}

/// The 2-tap kernel of parity 0 starts one input pixel before the output's; parity 1 at it.
fn phase_padding(parity: usize) -> (usize, usize) {
    if parity == 0 { (1, 0) } else { (0, 1) }
}

/// [B, C, H, W] → [B, C, 2H, 2W], each pixel repeated in a 2×2 block.
pub fn upsample_nearest(x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    x.reshape([batch, channels, height, 1, width, 1])
        .expand([batch, channels, height, 2, width, 2])
        .reshape([batch, channels, 2 * height, 2 * width])
}
