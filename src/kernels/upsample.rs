//! Nearest-neighbour ×2 upsampling followed by a 3×3 convolution (padding 1), computed without
//! the upsampled image: each of the four output phases (row parity, column parity) is a 2×2
//! convolution of the input with the 3×3 kernel's taps summed where they land on the same input
//! pixel. The same function with 32·C_in·C_out·H·W multiply-adds instead of 72, and no 4×
//! larger intermediate. The taps are folded by one matrix product, and the phases interleaved by
//! [`KernelBackend::interleave_phases`]; the gradients follow through burn's ops and that op's
//! inverse.

use burn::backend::Dispatch;
use burn::backend::ops::ConvOptions;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};

use super::{KernelBackend, conv2d, conv2d_tensors, parallel};

/// `conv(upsample_nearest_2x(x))` for a 3×3, stride-1, padding-1 convolution layer (any other
/// layer runs on the upsampled image as is). The phases pay at every batch size since the
/// interleave and the fold are single ops: batch 1 sampled 9.0 against 9.5 ms a step with the
/// upsampled image (4 alternated rounds, 2-core EPYC).
///
/// # Shapes
///   - x: [batch, channels_in, height, width]
///   - output: [batch, channels_out, 2·height, 2·width]
pub fn upsample_conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let plain = conv.kernel_size != [3, 3]
        || conv.stride != [1, 1]
        || conv.dilation != [1, 1]
        || conv.groups != 1
        || !matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1))
        || conv.bias.is_none();
    if plain {
        return conv2d(conv, upsample_nearest(x));
    }
    let weight = conv.weight.val();
    let bias = conv.bias.as_ref().expect("checked above").val();
    let [channels_out, channels_in, _, _] = weight.dims();
    // [O·I, 9] · [9, 16]: the four phases' 2×2 kernels side by side.
    let folded = weight
        .reshape([channels_out * channels_in, 9])
        .matmul(Tensor::from_data(fold_matrix(), &x.device()));
    let [p00, p01, p10, p11] = std::array::from_fn(|phase| {
        let (row_parity, column_parity) = (phase / 2, phase % 2);
        let weight =
            folded
                .clone()
                .narrow(1, 4 * phase, 4)
                .reshape([channels_out, channels_in, 2, 2]);
        let options = ConvOptions::new_with_padding(
            [1, 1],
            [phase_padding(row_parity), phase_padding(column_parity)],
            [1, 1],
            1,
        );
        conv2d_tensors(x.clone(), weight, bias.clone(), options) // [B, C, H, W]
    });
    interleave_phases(p00, p01, p10, p11)
}

/// Output row 2i (parity 0) reads upsampled rows 2i−1, 2i, 2i+1, which are input rows i−1, i, i:
/// taps 1 and 2 fall on the same input row. Row 2i+1 reads input rows i, i, i+1: taps 0 and 1 do.
/// The same along the columns. Row t·3 + u of the result is the 3×3 kernel's tap (t, u); column
/// 4·(2r + c) + 2a + b is tap (a, b) of phase (r, c)'s 2×2 kernel, 1 where (t, u) folds into it.
fn fold_matrix() -> TensorData {
    let folds = |parity: usize, tap: usize| match parity {
        0 => [0, 1, 1][tap],
        _ => [0, 0, 1][tap],
    };
    let mut matrix = vec![0f32; 9 * 16];
    for (t, u) in (0..3).flat_map(|t| (0..3).map(move |u| (t, u))) {
        for phase in 0..4 {
            let (a, b) = (folds(phase / 2, t), folds(phase % 2, u));
            matrix[(t * 3 + u) * 16 + 4 * phase + 2 * a + b] = 1.0;
        }
    }
    TensorData::new(matrix, [9, 16])
}

/// Four `[B, C, H, W]` phases into `[B, C, 2H, 2W]` through [`KernelBackend`].
fn interleave_phases(p00: Tensor<4>, p01: Tensor<4>, p10: Tensor<4>, p11: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as KernelBackend>::interleave_phases(
        p00.into_dispatch(),
        p01.into_dispatch(),
        p10.into_dispatch(),
        p11.into_dispatch(),
    ))
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

/// Values per piece of parallel work in the (de)interleave loops: whole planes, at least this
/// many values.
const VALUES_PER_PIECE: usize = 1 << 14;

/// The planes (of `plane` values) per piece of parallel work.
fn planes_per_piece(plane: usize) -> usize {
    VALUES_PER_PIECE.div_ceil(plane.max(1))
}

/// The CPU kernel of [`KernelBackend::interleave_phases`]: four phases of `[planes, H, W]`
/// values each, `phases[2r + c]` holding pixels (2i + r, 2j + c), into `[planes, 2H, 2W]`.
pub fn interleave(phases: [&[f32]; 4], height: usize, width: usize) -> Vec<f32> {
    let len = phases[0].len();
    let plane = height * width;
    assert!(
        phases.iter().all(|p| p.len() == len) && len.is_multiple_of(plane.max(1)),
        "interleave: the phases must be whole [H, W] planes of one size"
    );
    let mut image = parallel::zeroed(4 * len);
    let piece = planes_per_piece(plane);
    parallel::for_each_chunk(
        &mut image,
        4 * plane * piece,
        || (),
        |_, index, images| {
            for (k, out) in images.chunks_exact_mut(4 * plane).enumerate() {
                let first = (index * piece + k) * plane;
                // Output rows 2i and 2i + 1: phases 0, 1 and 2, 3 side by side.
                for (i, rows) in out.chunks_exact_mut(2 * width).enumerate() {
                    let (r, row) = (i % 2, (i / 2) * width);
                    let left = &phases[2 * r][first + row..][..width];
                    let right = &phases[2 * r + 1][first + row..][..width];
                    let (pairs, _) = rows.as_chunks_mut::<2>();
                    for (pair, (&l, &r)) in pairs.iter_mut().zip(left.iter().zip(right)) {
                        *pair = [l, r];
                    }
                }
            }
        },
    );
    image
}

/// The CPU kernel of [`KernelBackend::deinterleave_phases`]: `[planes, 2H, 2W]` into its four
/// phases of `[planes, H, W]`, in the order 00, 01, 10, 11.
pub fn deinterleave(image: &[f32], height: usize, width: usize) -> [Vec<f32>; 4] {
    let plane = height * width;
    assert!(
        image.len().is_multiple_of((4 * plane).max(1)),
        "deinterleave: the image must be whole [2H, 2W] planes"
    );
    let piece = planes_per_piece(plane);
    std::array::from_fn(|phase| {
        let (r, c) = (phase / 2, phase % 2);
        let mut out = parallel::zeroed(image.len() / 4);
        parallel::for_each_chunk(
            &mut out,
            plane * piece,
            || (),
            |_, index, planes| {
                for (k, out) in planes.chunks_exact_mut(plane).enumerate() {
                    let source = &image[(index * piece + k) * 4 * plane..][..4 * plane];
                    for (i, row) in out.chunks_exact_mut(width).enumerate() {
                        let line = &source[(2 * i + r) * 2 * width..][..2 * width];
                        let (pairs, _) = line.as_chunks::<2>();
                        for (value, pair) in row.iter_mut().zip(pairs) {
                            *value = pair[c];
                        }
                    }
                }
            },
        );
        out
    })
}
